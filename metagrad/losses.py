"""Per-task losses and metrics: ``loss(pred [K, ...], y [K, ...]) -> scalar``."""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor
from .errors import InputError

__all__ = ["mse", "cross_entropy", "accuracy", "get_loss", "metric_for"]


def mse(pred: Tensor, y: Tensor) -> Tensor:
    """Mean squared error ``mean((pred - y)^2)`` (the sine and polynomial benchmarks).

    ``pred`` and ``y`` must have the same shape: targets ``[K]`` against predictions ``[K, 1]``
    would broadcast to ``[K, K]`` and give a wrong loss without any error, so that is refused.
    """
    if pred.shape != y.shape:
        raise InputError(f"mse: predictions have shape {tuple(pred.shape)} but targets have shape "
                         f"{tuple(y.shape)} (per task); give targets the model's output shape, "
                         f"e.g. y.unsqueeze(-1) for [K] targets of a [K, 1] model")
    return ((pred - y) ** 2).mean()


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits [K, N]`` against integer labels ``y [K]``."""
    return F.cross_entropy(logits, y)


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of ``argmax(logits) == y``."""
    return (logits.argmax(-1) == y).to(logits.dtype).mean()


_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse, "cross_entropy": cross_entropy}
_METRICS: dict[str, tuple[str, Callable[[Tensor, Tensor], Tensor]]] = {
    "mse": ("mse", mse), "cross_entropy": ("accuracy", accuracy)}


def get_loss(loss: str | Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """Resolve a loss name (``mse``, ``cross_entropy``) or pass a callable through."""
    if callable(loss):
        return loss
    if loss not in _LOSSES:
        raise InputError(f"get_loss: unknown loss {loss!r}; choose one of {', '.join(_LOSSES)} or pass a callable")
    return _LOSSES[loss]


def metric_for(loss: str | Callable) -> tuple[str, Callable[[Tensor, Tensor], Tensor]]:
    """The evaluation metric reported for a loss: MSE for ``mse``, accuracy for ``cross_entropy``."""
    if callable(loss):
        return "loss", loss
    return _METRICS[loss]
