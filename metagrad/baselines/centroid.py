"""Centroid (cosine) finetuning for classification (004 section 2.2.2; Chen et al. 2019, Baseline++).

The output layer holds one centroid ``w_c`` per class and predicts with the scaled cosine
similarity (004 eq. (2)-(3))::

    logits_c(x) = s * <f(x), w_c> / (||f(x)|| ||w_c||),      y_hat = argmax_c logits_c(x)

Pre-training learns the body ``f`` with a cosine head over all training classes on flat
batches; at test time the body is frozen and new centroids are trained on each task's
support set with the protocol of 004 appendix A.1. Not applicable to regression.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from ..errors import InputError, InputTypeError, check_int
from ..batch import TaskBatch
from ..losses import accuracy, cross_entropy
from ..params import Params
from .finetuning import embed
from .protocol import fit_on_support, pretrain

__all__ = ["CentroidFinetuning", "cosine_logits"]


def cosine_logits(features: Tensor, centroids: Tensor, scale: float) -> Tensor:
    """``scale * cos(features [K, d], centroids [C, d])`` -> ``[K, C]`` (004 eq. (3))."""
    return scale * F.normalize(features, dim=-1, eps=1e-8) @ F.normalize(centroids, dim=-1, eps=1e-8).T


class CentroidFinetuning(nn.Module):
    """Centroid-based finetuning (CFT) of 004: a frozen pre-trained ``body`` and new cosine centroids.

    Args:
        body: the feature extractor ``f`` (``[K, ...] -> [K, d]``).
        feature_dim: ``d``.
        n_train_classes: classes of the flat pre-training data.
        scale: the cosine scale ``s``; ``None`` uses Chen et al.'s 2 (up to 200 classes) or 10.
        steps, batch_size, eval_every, lr: the test protocol (100, 4, 25, 1e-3).
    """

    def __init__(self, body: nn.Module, feature_dim: int, n_train_classes: int, *,
                 scale: Optional[float] = None, steps: int = 100, batch_size: int = 4,
                 eval_every: int = 25, lr: float = 1e-3) -> None:
        super().__init__()
        for name, v in (("feature_dim", feature_dim), ("n_train_classes", n_train_classes)):
            check_int("CentroidFinetuning", name, v, 1, InputError)
        if scale is not None and not scale > 0:
            raise InputError(f"CentroidFinetuning: scale must be positive, got {scale}")
        self.body = body
        self.feature_dim = feature_dim
        bound = 1.0 / feature_dim ** 0.5
        self.centroids = nn.Parameter((torch.rand(n_train_classes, feature_dim) * 2 - 1) * bound)
        self.scale = scale
        self.protocol = dict(steps=steps, batch_size=batch_size, eval_every=eval_every, lr=lr)

    def _scale(self, n_classes: int) -> float:
        return self.scale if self.scale is not None else (2.0 if n_classes <= 200 else 10.0)

    def forward(self, x: Tensor) -> Tensor:
        return cosine_logits(self.body(x), self.centroids, self._scale(self.centroids.shape[0]))

    def pretrain(self, x: Tensor, y: Tensor, steps: int, generator: torch.Generator, *,
                 batch_size: int = 16, lr: float = 1e-3) -> list[float]:
        """Cross-entropy on flat batches of ``(x, y)`` with global class labels; returns the losses."""
        if y.is_floating_point():
            raise InputTypeError(f"CentroidFinetuning.pretrain: y must hold integer class labels, got {y.dtype}")
        return pretrain(self, x, y, cross_entropy, steps, generator, batch_size=batch_size, lr=lr)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, generator: torch.Generator, n_way: Optional[int] = None) -> Tensor:
        """Query accuracy of every task after training new centroids: ``[B]``.

        ``n_way`` defaults to ``1 + max`` support label.
        """
        if not isinstance(batch, TaskBatch):
            raise InputTypeError(f"CentroidFinetuning.evaluate: expected a TaskBatch, got {type(batch).__name__}")
        if batch.support_y.is_floating_point():
            raise InputTypeError("CentroidFinetuning.evaluate: support_y holds floats; centroid finetuning is for "
                            "classification (integer labels) only")
        n = int(batch.support_y.max()) + 1 if n_way is None else n_way
        es, eq = embed(self.body, batch.support_x), embed(self.body, batch.query_x)
        s = self._scale(n)
        bound = 1.0 / self.feature_dim ** 0.5
        start = {"centroids": ((torch.rand(n, self.feature_dim, generator=generator, dtype=es.dtype) * 2 - 1)
                               * bound).to(es.device)}

        def fwd(p: Params, frozen: Params, e: Tensor) -> Tensor:
            return cosine_logits(e, p["centroids"], s)

        best = fit_on_support(fwd, start, {}, es, batch.support_y, cross_entropy, generator, **self.protocol)
        logits = vmap(lambda p, e: fwd(p, {}, e))(best, eq)
        return vmap(accuracy)(logits, batch.query_y)
