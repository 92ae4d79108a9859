"""``Params``: a flat ``dict[str, Tensor]`` of named tensors.

Model weights, gradients, updates and per-parameter meta-parameters all share this form, so
every update rule is written with plain dictionary comprehensions (as in optax / torchopt,
where an update is a pytree of the parameters' shape) and no helper library is needed.
"""
from __future__ import annotations

from torch import Tensor

Params = dict[str, Tensor]

__all__ = ["Params"]
