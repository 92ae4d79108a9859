"""Inner-loop update rules: one file per rule, all subclasses of ``Learner``."""
from .base import Clipped, Learner
from .sgd import SGD
from .meta_sgd import MetaSGD
from .tnet import MTNet, TNet, update_fraction, update_fractions
from .lstm import LSTMMetaLearner
from .turtle import Turtle

__all__ = ["Learner", "Clipped", "SGD"]
__all__ += ["MetaSGD", "TNet", "MTNet", "update_fraction", "update_fractions"]
__all__ += ["Turtle", "LSTMMetaLearner"]
