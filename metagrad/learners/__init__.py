"""Inner-loop update rules: one file per rule, all subclasses of ``Learner``."""
from .base import Clipped, Learner
from .sgd import SGD

__all__ = ["Learner", "Clipped", "SGD"]
