"""A black-box (recurrent) meta-learner: a sequence model reads the support set and predicts the query.

000 section 7 compares MAML with SNAIL (Mishra et al. 2018), which learns to learn without gradients:
for task ``i`` and each query point ``x*``, the sequence

    s = ((x_1, y_1, 0), ..., (x_K, y_K, 0), (x*, 0, 1))          # the last flag marks the masked label

goes through the network ``g_phi`` and the prediction is its output at the last position,
``y* = g_phi(s)_{K+1}``. Meta-training minimises the query loss
``1/B sum_i 1/Kq sum_j l(g_phi(s_ij)_{K+1}, y_ij)`` by ordinary backpropagation (``fit`` runs it like any
meta-learner). Each query point gets its own sequence, so query points never see each other. At test
time it takes no gradient steps: ``adaptation_curve`` is flat (the same value after every "step").
Labels enter as they are (regression) or one-hot (classification, ``cross_entropy``). Images are first
mapped to features by an ``embed`` network (Mishra et al.: a conv4 embedding, trained jointly), run
once on a batch's support and query images together.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batch import TaskBatch
from ..errors import InputError, InputTypeError
from ..losses import get_loss, metric_for

__all__ = ["BlackBox", "sequences"]


def _labels(y: Tensor, loss: str, classes: int) -> Tensor:
    """``y`` as per-step features ``[B, K, classes]`` (one-hot) or ``[B, K, O]`` (regression)."""
    if loss == "cross_entropy":
        return F.one_hot(y.long(), classes).to(torch.get_default_dtype())
    return y


def sequences(sx: Tensor, sy: Tensor, qx: Tensor, loss: str = "mse", classes: int = 1) -> Tensor:
    """One sequence per query point, ``[B * Kq, Ks + 1, D + O + 1]`` (module docstring), from flat
    inputs ``sx [B, Ks, D]``, ``qx [B, Kq, D]`` and support labels ``sy``."""
    B, Ks, Kq = sx.shape[0], sx.shape[1], qx.shape[1]
    if sx.dim() != 3:
        raise InputError(f"BlackBox: expected flat inputs [tasks, examples, features], got support_x of shape "
                         f"{tuple(sx.shape)} (images need an embedding: build it with an image task)")
    sy = _labels(sy, loss, classes).to(sx.dtype)
    support = torch.cat([sx, sy, torch.zeros_like(sy[..., :1])], -1)                       # [B, Ks, D + O + 1]
    query = torch.cat([qx, torch.zeros(B, Kq, sy.shape[-1] + 1, dtype=sy.dtype, device=sy.device)], -1)
    query[..., -1] = 1.0                                                                  # the label is masked
    seq = torch.cat([support[:, None].expand(B, Kq, Ks, support.shape[-1]), query[:, :, None]], dim=2)
    return seq.reshape(B * Kq, Ks + 1, seq.shape[-1])


class BlackBox(nn.Module):
    """Train a sequence network ``net`` ([N, T, D + O + 1] -> [N, T, O]) as a black-box meta-learner.

    Args:
        net: e.g. ``metagrad.models.SNAIL(D + O + 1, O)``; its output at the last position is the prediction.
        loss: ``"mse"`` or ``"cross_entropy"`` (then ``O`` is the number of classes).
        embed: maps ``[N, C, H, W]`` images to ``[N, D]`` features (``None``: inputs are flat already).
    """

    mode = "black_box"     # no inner loop: no Hessian batch, nothing to differentiate through

    def __init__(self, net: nn.Module, loss: str = "mse", inner_steps: int = 0,
                 embed: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.embed = embed
        if loss not in ("mse", "cross_entropy"):
            raise InputError(f"BlackBox: loss must be 'mse' or 'cross_entropy', got {loss!r}")
        self.net = net
        self.loss_name, self.loss = loss, get_loss(loss)
        self.metric_name, self.metric = metric_for(loss)
        self.inner_steps = inner_steps   # the default length of its (flat) evaluation curve
        self.classes = getattr(net, "out_features", 1)

    def predict(self, batch: TaskBatch) -> Tensor:
        """Query predictions ``[B, Kq, O]``, each from the support set and that query input alone."""
        if not isinstance(batch, TaskBatch):
            raise InputTypeError(f"BlackBox: expected a TaskBatch, got {type(batch).__name__}")
        sx, qx = batch.support_x, batch.query_x
        if self.embed is not None:
            B, Ks = sx.shape[:2]
            feats = self.embed(torch.cat([sx, qx], 1).flatten(0, 1)).reshape(B, Ks + qx.shape[1], -1)
            sx, qx = feats[:, :Ks], feats[:, Ks:]
        out = self.net(sequences(sx, batch.support_y, qx, self.loss_name, self.classes))[:, -1]
        return out.reshape(batch.n_tasks, batch.query_x.shape[1], -1)

    def task_losses(self, batch: TaskBatch) -> Tensor:
        pred, qy = self.predict(batch), batch.query_y
        if self.loss_name == "cross_entropy":
            return torch.stack([self.loss(p, y) for p, y in zip(pred, qy)])
        return ((pred - qy) ** 2).flatten(1).mean(1)

    def meta_loss(self, batch: TaskBatch, hvp_batch: Optional[TaskBatch] = None) -> Tensor:
        """Mean query loss over the tasks of ``batch`` (a scalar)."""
        if hvp_batch is not None:
            raise InputError("BlackBox.meta_loss: no Hessian batch (it has no inner loop); set outer.hvp_batch=false")
        return self.task_losses(batch).mean()

    @torch.no_grad()
    def adaptation_curve(self, batch: TaskBatch, steps: Optional[int] = None) -> Tensor:
        """Query metric ``[B, steps + 1]``, the same after every step: it takes no gradient steps."""
        steps = self.inner_steps if steps is None else steps
        pred = self.predict(batch)
        m = torch.stack([self.metric(p, y) for p, y in zip(pred, batch.query_y)])
        return m[:, None].expand(-1, steps + 1).clone()
