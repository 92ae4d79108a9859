"""Polynomial regression (000's depth study; 001's mask-fraction study)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError, check_int
from ..batch import TaskBatch
from .base import check_n_tasks, check_range, check_shots, data_batch, task_params_of, uniform

__all__ = ["Polynomial"]


@dataclass(frozen=True)
class Polynomial:
    """Tasks ``y = sum_{j=0..degree} c_j x^j`` with ``c_j ~ U[coef_range]``, ``x ~ U[x_range]``.

    000: ``degree=3``, ``coef_range=(-1, 1)``, ``x_range=(-3, 3)``, 40 points per task.
    001: orders 0..3 with coefficients ``U[-1, 1]``, 10-shot. ``task_params`` holds
    ``(c_0, ..., c_degree)`` per task (the input of 000's task-conditioned oracle); ``resample``
    draws fresh examples of those same tasks (002's independent ``D_h`` of each sampled task).
    """

    k_shot: int = 10
    k_query: int = 10
    degree: int = 3
    coef_range: tuple[float, float] = (-1.0, 1.0)
    x_range: tuple[float, float] = (-3.0, 3.0)
    loss: str = "mse"

    def __post_init__(self) -> None:
        check_shots("Polynomial", k_shot=self.k_shot, k_query=self.k_query)
        check_int("Polynomial", "degree", self.degree, 0, InputError)
        for name in ("coef_range", "x_range"):
            object.__setattr__(self, name, check_range("Polynomial", name, getattr(self, name)))

    def sample(self, n_tasks: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """Draw ``n_tasks`` polynomials, each with ``k_shot`` support and ``k_query`` query points."""
        check_n_tasks("Polynomial.sample", n_tasks, generator)
        c = uniform((n_tasks, self.degree + 1), *self.coef_range, generator, torch.float64)
        x = uniform((n_tasks, self.k_shot + self.k_query, 1), *self.x_range, generator, torch.float64)
        powers = x ** torch.arange(self.degree + 1, dtype=torch.float64)  # [B, K, degree+1]
        y = (powers * c[:, None, :]).sum(-1, keepdim=True)
        k = self.k_shot
        return TaskBatch(support_x=x[:, :k].to(dtype), support_y=y[:, :k].to(dtype),
                         query_x=x[:, k:].to(dtype), query_y=y[:, k:].to(dtype), task_params=c.to(dtype))

    def resample(self, tasks: TaskBatch | torch.Tensor, k: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> TaskBatch:
        """``k`` fresh examples ``x ~ U[x_range]`` of each task of ``tasks`` (a batch or its
        ``task_params [B, degree + 1]``), as a data-only batch (support = query = the ``k`` examples)."""
        c = task_params_of("Polynomial.resample", tasks, self.degree + 1, k, generator).to(torch.float64)
        x = uniform((c.shape[0], k, 1), *self.x_range, generator, torch.float64)
        y = ((x ** torch.arange(self.degree + 1, dtype=torch.float64)) * c[:, None, :]).sum(-1, keepdim=True)
        return data_batch(x, y, c, dtype)
