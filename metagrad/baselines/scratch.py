"""TrainFromScratch: learn every test task from a random initialisation (004 section 4.1, Table 2)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import vmap

from ..errors import InputTypeError
from ..batch import TaskBatch
from ..exact import exact_call
from ..losses import get_loss, metric_for
from ..params import Params
from .protocol import fit_on_support

__all__ = ["TrainFromScratch"]


class TrainFromScratch:
    """No transfer: every parameter of ``model`` is trained on each task's support set.

    All tasks start from the model's current (random) initialisation, as in the thesis's code,
    and follow the test protocol of 004 appendix A.1 (``fit_on_support``: 100 Adam steps of
    lr 1e-3 on mini-batches of 4 support examples, the best of every 25 steps by support loss).

    Example::

        tfs = TrainFromScratch(MLP([1, 40, 40, 1]))
        mse = tfs.evaluate(test_batch, torch.Generator().manual_seed(0))   # [B]
    """

    def __init__(self, model: nn.Module, loss: str | Callable[[Tensor, Tensor], Tensor] = "mse", *,
                 steps: int = 100, batch_size: int = 4, eval_every: int = 25, lr: float = 1e-3) -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"TrainFromScratch: model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.loss = get_loss(loss)
        self.metric_name, self.metric = metric_for(loss)
        self.protocol = dict(steps=steps, batch_size=batch_size, eval_every=eval_every, lr=lr)

    def _forward(self, p: Params, frozen: Params, x: Tensor) -> Tensor:
        return exact_call(self.model, {**p, **frozen}, (x,))

    def adapt(self, support_x: Tensor, support_y: Tensor, generator: torch.Generator) -> Params:
        """The chosen parameters for every task of ``support_x [B, K, ...]`` (leading dim ``B``)."""
        params = {k: v.detach() for k, v in self.model.named_parameters()}
        return fit_on_support(self._forward, params, {}, support_x, support_y, self.loss, generator, **self.protocol)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, generator: torch.Generator) -> Tensor:
        """Query metric (MSE or accuracy) of every task after the protocol: ``[B]``."""
        if not isinstance(batch, TaskBatch):
            raise InputTypeError(f"TrainFromScratch.evaluate: expected a TaskBatch, got {type(batch).__name__}")
        best = self.adapt(batch.support_x, batch.support_y, generator)
        preds = vmap(lambda p, x: self._forward(p, {}, x))(best, batch.query_x)
        return vmap(self.metric)(preds, batch.query_y)
