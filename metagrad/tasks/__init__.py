"""Task distributions: ``sample(n_tasks, generator) -> TaskBatch``."""
from .base import TaskDistribution
from .polynomial import Polynomial
from .sine import Sinusoid

__all__ = ["TaskDistribution", "Sinusoid", "Polynomial"]
