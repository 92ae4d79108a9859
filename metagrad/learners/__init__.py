"""Inner-loop update rules: one file per rule, all subclasses of ``Learner``."""
from .base import Learner
from .combine import Chain, Clip, GradientTransform, Masked, chain, clip, masked
from .sgd import SGD
from .meta_sgd import MetaSGD
from .tnet import MTNet, TNet, update_fraction, update_fractions
from .lstm import LSTMMetaLearner
from .turtle import Turtle

__all__ = ["Learner", "SGD", "GradientTransform", "Clip", "Chain", "Masked", "chain", "clip", "masked"]
__all__ += ["MetaSGD", "TNet", "MTNet", "update_fraction", "update_fractions"]
__all__ += ["Turtle", "LSTMMetaLearner"]
