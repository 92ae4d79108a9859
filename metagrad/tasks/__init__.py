"""Task distributions: ``sample(n_tasks, generator) -> TaskBatch``."""
from .base import TaskDistribution
from .polynomial import Polynomial
from .quadratic import Quadratic
from .sine import Sinusoid

__all__ = ["TaskDistribution", "Sinusoid", "Polynomial", "Quadratic"]
from .episodic import EpisodicImages
from .omniglot import Omniglot
from .images import CUB, MiniImageNet

__all__ += ["EpisodicImages", "Omniglot", "MiniImageNet", "CUB"]
