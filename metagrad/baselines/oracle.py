"""The task-conditioned model of Finn & Levine (000, section 7): the "oracle" of Figs. 2 and 5.

A feed-forward network ``f_theta([x; tau]) -> y`` reads the input ``x`` and the task description
``tau`` (sine: amplitude, frequency and phase; polynomial: the coefficients; ``TaskBatch.task_params``).
It is trained by plain supervised learning on the meta-training tasks, over their support and
query points together (no inner loop)::

    L(theta) = 1/B sum_i 1/(Ks + Kq) sum_{(x, y) in S_i u Q_i} (f_theta([x; tau_i]) - y)^2

Like MAML's initialisation it can be fine-tuned on a new task's support set with gradient steps,
``theta_{t+1} = theta_t - a grad_theta L_support(theta_t)`` (000 Fig. 2 compares exactly this), which is
what ``adaptation_curve`` reports after ``0..steps`` steps. With the description at hand it needs no
adaptation in distribution; out of distribution its description is outside the range it was trained on.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..algorithm import MAML
from ..batch import TaskBatch
from ..errors import InputError
from ..exact import exact_call

__all__ = ["TaskConditioned", "conditioned_inputs", "description_size"]


def description_size(task: object) -> int:
    """Length of ``task``'s description ``tau`` (one drawn task's ``task_params``)."""
    b = task.sample(1, torch.Generator().manual_seed(0))
    if b.task_params is None:
        raise InputError(f"task-conditioned model: task {type(task).__name__} gives no task_params "
                         "(its description); use a task family that does, such as sine or polynomial")
    return int(b.task_params.reshape(1, -1).shape[1])


def conditioned_inputs(x: Tensor, task_params: Optional[Tensor]) -> Tensor:
    """``[x; tau]`` for every example: ``x [B, K, D]``, ``task_params [B, P]`` -> ``[B, K, D + P]``."""
    if task_params is None:
        raise InputError("task-conditioned model: the batch has no task_params (the task description "
                         "it reads); draw tasks from a family that records them (sine, polynomial)")
    tau = task_params.reshape(task_params.shape[0], 1, -1).to(x.dtype)
    return torch.cat([x, tau.expand(x.shape[0], x.shape[1], tau.shape[-1])], dim=-1)


def conditioned(batch: TaskBatch) -> TaskBatch:
    """``batch`` with every input replaced by ``[x; tau]`` (what the network reads)."""
    return TaskBatch(conditioned_inputs(batch.support_x, batch.task_params), batch.support_y,
                     conditioned_inputs(batch.query_x, batch.task_params), batch.query_y, batch.task_params)


class TaskConditioned(MAML):
    """000's oracle: supervised ``f([x; tau])``, fine-tuned at test time by SGD on the support set.

    Args:
        model: the network; its first layer takes ``D + P`` inputs (``P = description_size(task)``).
        inner_lr: fine-tuning step size ``a`` at test time (000 Fig. 2: MAML's 0.001).
        inner_steps: fine-tuning steps ``evaluate`` takes by default (``0``: the oracle as trained).
        loss: ``"mse"`` (the regression families that carry a description).

    ``meta_loss(batch)`` is ``L(theta)`` of the module docstring (the support and query points are
    training data alike); ``adaptation_curve(batch, steps)`` is MAML's, on ``[x; tau]`` inputs.
    """

    def __init__(self, model: nn.Module, inner_lr: float = 0.001, inner_steps: int = 0, loss: str = "mse",
                 vectorize: bool | str = "auto") -> None:
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, mode="first_order", loss=loss,
                         vectorize=vectorize)

    def meta_loss(self, batch: TaskBatch, hvp_batch: Optional[TaskBatch] = None) -> Tensor:
        """Supervised loss over every support and query point of ``batch`` (a scalar)."""
        self.check_batch(batch, "TaskConditioned.meta_loss")
        if hvp_batch is not None:
            raise InputError("TaskConditioned.meta_loss: no Hessian batch (it has no inner loop); set outer.hvp_batch=false")
        x = conditioned_inputs(torch.cat([batch.support_x, batch.query_x], 1), batch.task_params)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        # every task has the same number of points, so the mean over all is the mean of the task means
        return self.loss(exact_call(self.model, self.params(), (x,)), y)

    @torch.no_grad()
    def adaptation_curve(self, batch: TaskBatch, steps: Optional[int] = None) -> Tensor:
        """Query metric after ``0..steps`` SGD steps on the support set, ``[B, steps + 1]``."""
        self.check_batch(batch, "TaskConditioned.adaptation_curve")
        return super().adaptation_curve(conditioned(batch), steps)
