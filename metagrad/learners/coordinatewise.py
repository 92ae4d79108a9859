"""Helpers shared by the coordinate-wise learned optimisers (TURTLE, the LSTM meta-learner).

Both apply one small network to every base-learner parameter *coordinate* (004 section 2.3.3
and 3.3): the per-coordinate inputs of all parameter tensors are flattened into one matrix
``[n, features]``, the network runs once on it, and its output is split back into tensors of
the parameters' shapes. Flattening keeps it to a handful of matrix products per step instead
of one set per parameter tensor, and it is a pure function, so it vmaps over tasks.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError, check_positive
from ..params import Params

__all__ = ["preprocess", "check_p", "flat", "unflat"]

P_MAX = 80.0   # e^p multiplies the small inputs: it must stay a finite float32 (whose largest is about e^88.7)


def check_p(where: str, p: object) -> float:
    """``preprocess``'s exponent ``p`` as a number in ``(0, 80]``, else an ``InputError`` naming it."""
    v = check_positive(where, "p", p, error=InputError)
    if v > P_MAX:
        raise InputError(f"{where}: p must be at most {P_MAX:g} (e^p must stay a finite float32; 004 uses 10), got {p!r}")
    return v


def preprocess(x: Tensor, p: float = 10.0) -> Tensor:
    """004 eq. (11) (Andrychowicz et al. 2016; Ravi & Larochelle 2017): squash ``x`` into two features.

    ``x -> (log|x| / p, sign(x))`` if ``|x| >= e^-p``, else ``(-1, e^p x)``; returns
    ``[..., 2]``. The logarithm is taken of ``max(|x|, e^-p)`` so that the branch that
    ``torch.where`` discards never produces ``inf``/``nan`` gradients.
    """
    check_p("preprocess", p)
    thresh = math.exp(-p)
    big = x.abs() >= thresh
    log_part = torch.log(torch.clamp(x.abs(), min=thresh)) / p
    first = torch.where(big, log_part, torch.full_like(x, -1.0))
    second = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([first, second], dim=-1)


def flat(tensors: Params, keys: list[str]) -> Tensor:
    """Concatenate ``tensors[k]`` for ``k in keys`` into one vector ``[n]``."""
    return torch.cat([tensors[k].reshape(-1) for k in keys])


def unflat(vector: Tensor, like: Params, keys: list[str]) -> Params:
    """Split ``vector [n]`` (or ``[n, ...]``) back into tensors shaped like ``like[k]``."""
    sizes = [like[k].numel() for k in keys]
    parts = torch.split(vector, sizes, dim=0)
    return {k: part.reshape(*like[k].shape, *vector.shape[1:]) for k, part in zip(keys, parts)}
