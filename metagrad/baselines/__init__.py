"""Transfer baselines of 004 (section 2.2): train-from-scratch, finetuning, centroid finetuning."""
from .centroid import CentroidFinetuning, cosine_logits
from .finetuning import Finetuning, embed, merge_tasks, split_head
from .protocol import fit_on_support, pretrain, sample_minibatches
from .scratch import TrainFromScratch

__all__ = ["TrainFromScratch", "Finetuning", "CentroidFinetuning", "fit_on_support", "pretrain",
           "sample_minibatches", "merge_tasks", "split_head", "embed", "cosine_logits"]
