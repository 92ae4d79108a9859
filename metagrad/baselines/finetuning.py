"""Finetuning (004 section 2.2.1): pre-train on the merged meta-training data, retrain the output layer.

Pre-training minimises the loss on flat mini-batches of 16 examples drawn from all support
and query sets of the meta-training tasks together (``pretrain``). At test time the hidden
layers (``body``) are frozen and only the output layer (``head``) is trained on the support
set with the protocol of 004 appendix A.1 (``fit_on_support``). The body's features of the
support and query sets are computed once per task, so the protocol only runs the head.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.func import vmap

from ..errors import InputError, InputTypeError
from ..batch import TaskBatch
from ..losses import get_loss, metric_for
from ..params import Params
from .protocol import fit_on_support, pretrain

__all__ = ["Finetuning", "split_head", "merge_tasks", "embed"]


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """``(body, head)`` of a sequential network whose last layer is ``nn.Linear`` (e.g. ``MLP``)."""
    seq = getattr(model, "net", model)
    if not isinstance(seq, nn.Sequential) or not isinstance(seq[-1], nn.Linear):
        raise InputTypeError(f"split_head: expected an nn.Sequential (or an MLP) ending in nn.Linear, got "
                        f"{type(model).__name__}; pass body and head explicitly")
    return seq[:-1], seq[-1]


def merge_tasks(batch: TaskBatch) -> tuple[Tensor, Tensor]:
    """All support and query examples of ``batch`` as one flat data set ``(x [N, ...], y [N, ...])``."""
    xs = torch.cat([batch.support_x, batch.query_x], dim=1)
    ys = torch.cat([batch.support_y, batch.query_y], dim=1)
    return xs.reshape(-1, *xs.shape[2:]), ys.reshape(-1, *ys.shape[2:])


def embed(body: nn.Module, x: Tensor) -> Tensor:
    """``body`` applied to ``x [B, K, ...]`` as one flat batch: ``[B, K, d]``."""
    out = body(x.reshape(-1, *x.shape[2:]))
    return out.reshape(x.shape[0], x.shape[1], -1)


def _linear(p: Params, frozen: Params, x: Tensor) -> Tensor:
    return x @ p["weight"].T + p["bias"]


class Finetuning(nn.Module):
    """Transfer baseline of 004 (Chen et al. 2019): pre-trained ``body`` + a retrained linear ``head``.

    Args:
        body, head: the network is ``head(body(x))``; build them from an ``MLP`` with
            ``Finetuning.from_model(model)``.
        loss: ``"mse"``, ``"cross_entropy"`` or a callable.
        new_head: for classification with other classes at test time: the number of test
            classes; a new head (uniform ``+-1/sqrt(d)`` weights, zero bias) is trained per task.
            ``None`` keeps the pre-trained head as the starting point (regression).
        steps, batch_size, eval_every, lr: the test protocol (100, 4, 25, 1e-3).
    """

    def __init__(self, body: nn.Module, head: nn.Linear, loss: str | Callable[[Tensor, Tensor], Tensor] = "mse",
                 *, new_head: Optional[int] = None, steps: int = 100, batch_size: int = 4,
                 eval_every: int = 25, lr: float = 1e-3) -> None:
        super().__init__()
        if not isinstance(head, nn.Linear) or head.bias is None:
            raise InputTypeError(f"Finetuning: head must be an nn.Linear with a bias, got {head!r}")
        if new_head is not None and (isinstance(new_head, bool) or not isinstance(new_head, int) or new_head < 1):
            raise InputError(f"Finetuning: new_head must be None or an integer >= 1, got {new_head!r}")
        self.body, self.head = body, head
        self.loss = get_loss(loss)
        self.metric_name, self.metric = metric_for(loss)
        self.new_head = new_head
        self.protocol = dict(steps=steps, batch_size=batch_size, eval_every=eval_every, lr=lr)

    @classmethod
    def from_model(cls, model: nn.Module, loss: str | Callable = "mse", **kwargs) -> "Finetuning":
        """Split ``model`` (an ``MLP`` or ``nn.Sequential``) into body and last linear layer."""
        body, head = split_head(model)
        return cls(body, head, loss, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def pretrain(self, x: Tensor, y: Tensor, steps: int, generator: torch.Generator, *,
                 batch_size: int = 16, lr: float = 1e-3) -> list[float]:
        """Adam on flat batches of ``(x, y)`` (see ``merge_tasks``); returns the training losses."""
        return pretrain(self, x, y, self.loss, steps, generator, batch_size=batch_size, lr=lr)

    def _start(self, generator: torch.Generator, like: Tensor) -> Params:
        if self.new_head is None:
            return {"weight": self.head.weight.detach(), "bias": self.head.bias.detach()}
        d = self.head.in_features
        w = (torch.rand(self.new_head, d, generator=generator, dtype=like.dtype) * 2 - 1) / d ** 0.5
        return {"weight": w.to(like.device), "bias": torch.zeros(self.new_head, dtype=like.dtype, device=like.device)}

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, generator: torch.Generator) -> Tensor:
        """Query metric (MSE or accuracy) of every task after retraining the head: ``[B]``."""
        if not isinstance(batch, TaskBatch):
            raise InputTypeError(f"Finetuning.evaluate: expected a TaskBatch, got {type(batch).__name__}")
        es, eq = embed(self.body, batch.support_x), embed(self.body, batch.query_x)
        best = fit_on_support(_linear, self._start(generator, es), {}, es, batch.support_y, self.loss,
                              generator, **self.protocol)
        preds = vmap(lambda p, e: _linear(p, {}, e))(best, eq)
        return vmap(self.metric)(preds, batch.query_y)
