"""Transfer baselines of 004 (section 2.2): train-from-scratch, finetuning, centroid finetuning; 000's
task-conditioned oracle and black-box (SNAIL-style) meta-learner (section 7)."""
from .blackbox import BlackBox
from .centroid import CentroidFinetuning, cosine_logits
from .finetuning import Finetuning, embed, merge_tasks, split_head
from .protocol import fit_on_support, pretrain, sample_minibatches
from .oracle import TaskConditioned
from .scratch import TrainFromScratch

__all__ = ["TrainFromScratch", "Finetuning", "CentroidFinetuning", "fit_on_support", "pretrain",
           "sample_minibatches", "merge_tasks", "split_head", "embed", "cosine_logits", "TaskConditioned", "BlackBox"]
