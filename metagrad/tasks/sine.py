"""Sine-wave regression (Finn et al. 2017; 000; 001; 004)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..batch import TaskBatch
from .base import check_n_tasks, check_range, check_shots, data_batch, task_params_of, uniform

__all__ = ["Sinusoid"]


@dataclass(frozen=True)
class Sinusoid:
    """Tasks ``y = A sin(w x - p)`` with ``A``, ``w``, ``p`` uniform in their ranges, ``x ~ U[x_range]``.

    * Finn et al. 2017 (and 004): ``amplitude=(0.1, 5)``, ``phase=(0, pi)``, ``frequency=(1, 1)``,
      ``x_range=(-5, 5)`` (the defaults).
    * Lee & Choi (001): ``y = A sin(w x + b)`` with ``w ~ U[0.8, 1.2]``, ``b ~ U[0, pi]``: use
      ``frequency=(0.8, 1.2)``, ``phase=(-pi, 0)`` (``b = -p``).
    * Finn & Levine (000), out of distribution: ``amplitude=(5, 10)``, ``phase=(pi, 2 pi)``.

    ``task_params`` of a batch holds ``(A, w, p)`` per task; ``resample`` draws fresh examples of
    those same tasks (002's independent ``D_h`` of each sampled task).
    """

    k_shot: int = 10
    k_query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    frequency: tuple[float, float] = (1.0, 1.0)
    x_range: tuple[float, float] = (-5.0, 5.0)
    loss: str = "mse"

    def __post_init__(self) -> None:
        check_shots("Sinusoid", k_shot=self.k_shot, k_query=self.k_query)
        for name in ("amplitude", "phase", "frequency", "x_range"):
            object.__setattr__(self, name, check_range("Sinusoid", name, getattr(self, name)))

    def sample(self, n_tasks: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """Draw ``n_tasks`` tasks, each with ``k_shot`` support and ``k_query`` query points."""
        check_n_tasks("Sinusoid.sample", n_tasks, generator)
        a = uniform((n_tasks, 1, 1), *self.amplitude, generator, torch.float64)
        w = uniform((n_tasks, 1, 1), *self.frequency, generator, torch.float64)
        p = uniform((n_tasks, 1, 1), *self.phase, generator, torch.float64)
        x = uniform((n_tasks, self.k_shot + self.k_query, 1), *self.x_range, generator, torch.float64)
        y = a * torch.sin(w * x - p)
        k = self.k_shot
        return TaskBatch(support_x=x[:, :k].to(dtype), support_y=y[:, :k].to(dtype),
                         query_x=x[:, k:].to(dtype), query_y=y[:, k:].to(dtype),
                         task_params=torch.cat([a, w, p], dim=-1).reshape(n_tasks, 3).to(dtype))

    def resample(self, tasks: TaskBatch | torch.Tensor, k: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> TaskBatch:
        """``k`` fresh examples ``x ~ U[x_range]`` of each task of ``tasks`` (a batch or its
        ``task_params [B, 3]``), as a data-only batch (support = query = the ``k`` examples)."""
        params = task_params_of("Sinusoid.resample", tasks, 3, k, generator).to(torch.float64)
        a, w, p = (params[:, i].reshape(-1, 1, 1) for i in range(3))
        x = uniform((params.shape[0], k, 1), *self.x_range, generator, torch.float64)
        return data_batch(x, a * torch.sin(w * x - p), params, dtype)
