"""Helpers for ``Params``: a flat ``dict[str, Tensor]`` of named tensors.

Model weights, gradients, updates and per-parameter meta-parameters all share this
form, so that every update rule is written with plain dictionary comprehensions
(as in optax / torchopt, where an update is a pytree of the parameters' shape).
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor

Params = dict[str, Tensor]

__all__ = ["Params", "tree_map", "add", "sub", "scale", "axpy", "vdot", "norm",
           "zeros_like", "detach", "flatten", "check_same_keys"]


def check_same_keys(fn: str, a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> None:
    """Raise a one-line error naming ``fn`` when two dicts hold different keys."""
    if a.keys() != b.keys():
        missing = sorted(set(a) ^ set(b))
        raise KeyError(f"{fn}: parameter dicts disagree on keys {missing}")


def tree_map(fn: Callable[..., Tensor], first: Mapping[str, Tensor], *rest: Mapping[str, Tensor]) -> Params:
    """Apply ``fn`` key by key: ``{k: fn(first[k], *(r[k] for r in rest))}``."""
    return {k: fn(v, *(r[k] for r in rest)) for k, v in first.items()}


def add(a: Params, b: Params) -> Params:
    """``a + b`` key by key."""
    return {k: v + b[k] for k, v in a.items()}


def sub(a: Params, b: Params) -> Params:
    """``a - b`` key by key."""
    return {k: v - b[k] for k, v in a.items()}


def scale(a: Params, s: float | Tensor) -> Params:
    """``s * a`` key by key."""
    return {k: s * v for k, v in a.items()}


def axpy(alpha: float | Tensor, x: Params, y: Params) -> Params:
    """``y + alpha * x`` key by key (the BLAS name)."""
    return {k: y[k] + alpha * v for k, v in x.items()}


def vdot(a: Params, b: Params) -> Tensor:
    """Inner product ``sum_k <a_k, b_k>`` as a scalar tensor."""
    return sum((v * b[k]).sum() for k, v in a.items())  # type: ignore[return-value]


def norm(a: Params) -> Tensor:
    """Euclidean norm of all tensors taken together."""
    return torch.sqrt(sum((v * v).sum() for v in a.values()))  # type: ignore[arg-type]


def zeros_like(a: Params) -> Params:
    """A dict of zeros with the keys, shapes and dtypes of ``a``."""
    return {k: torch.zeros_like(v) for k, v in a.items()}


def detach(a: Params) -> Params:
    """Detach every tensor (cuts the graph: used by first-order meta-gradients)."""
    return {k: v.detach() for k, v in a.items()}


def flatten(a: Mapping[str, Tensor], keys: Iterable[str] | None = None) -> Tensor:
    """Concatenate the tensors (in ``keys`` order) into one vector."""
    ks = list(a) if keys is None else list(keys)
    return torch.cat([a[k].reshape(-1) for k in ks])
