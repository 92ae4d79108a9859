"""Quadratic tasks with an exact meta-objective: 002's setting, measurable (Fallah et al. 2020).

Task ``i`` is a linear regression in ``d`` dimensions whose expected loss is a quadratic::

    A_i = diag(l_i),   l_ij ~ U[curvature]  (iid)          # the task's Hessian
    w_i = mean + spread * (l_i - E l) / sd(l)                # its optimum, tied to its curvature
    x ~ N(0, A_i / 2),  y = x^T w_i + noise * N(0, 1)       # its examples
    f_i(w) = E (x^T w - y)^2 = 1/2 (w - w_i)^T A_i (w - w_i) + noise^2

so a model ``y = x^T w`` under the MSE loss has ``grad f_i(w) = A_i (w - w_i)`` in expectation,
and a ``K``-example estimate of it (002's ``D_in``, ``D_o``, ``D_h``) has a variance that falls
like ``1/K`` (``noise`` is the label noise behind 002's ``sigma~``). ``spread`` sets how far the
tasks' gradients lie from their mean (002's ``sigma``, Assumption 4.5: at ``w = mean`` the tasks'
gradient variance is ``spread^2 d E[l^2 zeta^2]``, ``zeta = (l - E l)/sd(l)``). Because each
optimum moves with its curvature, FO-MAML's fixed point is not MAML's: its floor in
``||grad F||`` is of order ``a * spread`` (002, Theorem 4.15).

MAML's meta-objective, 002 eq. (2), and its gradient are exact (``meta_objective``,
``meta_gradient``): with ``m(l) = l (1 - a l)^2`` and coordinates independent,

    F(w) = E_i f_i(w - a grad f_i(w)) = sum_j E[ 1/2 m(l) (w_j - w_ij)^2 ] + noise^2
    grad F(w)_j = E[m] (w_j - mean) - spread E[m zeta]

where the expectations are polynomial moments of ``U[curvature]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..batch import TaskBatch
from ..errors import InputError, InputTypeError
from .base import check_n_tasks, check_range, check_shots, data_batch, task_params_of, uniform

__all__ = ["Quadratic", "meta_objective", "meta_gradient", "first_order_fixed_point"]


@dataclass(frozen=True)
class Quadratic:
    """Linear-regression tasks with Hessians ``A_i`` and exact ``F``, ``grad F`` (module docstring).

    ``task_params [B, d]`` holds each task's curvatures ``l_i`` (which also fix ``w_i``);
    ``resample`` draws fresh examples of the same tasks (002's ``D_h``, ``D_beta``).
    """

    dim: int = 10
    k_shot: int = 10
    k_query: int = 10
    curvature: tuple[float, float] = (0.5, 2.0)
    spread: float = 1.0
    noise: float = 0.0
    mean: float = 1.0
    loss: str = "mse"

    def __post_init__(self) -> None:
        check_shots("Quadratic", k_shot=self.k_shot, k_query=self.k_query, dim=self.dim)
        lo, hi = check_range("Quadratic", "curvature", self.curvature)
        if not 0 < lo < hi:
            raise InputError(f"Quadratic: curvature must satisfy 0 < lo < hi, got {self.curvature!r}")
        object.__setattr__(self, "curvature", (lo, hi))
        for name in ("spread", "noise", "mean"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                    (name != "mean" and v < 0):
                raise InputError(f"Quadratic: {name} must be a finite number{' >= 0' if name != 'mean' else ''}, "
                                 f"got {v!r}")

    @property
    def in_features(self) -> int:
        return self.dim

    def moments(self, k: int) -> float:
        """``E[l^k]`` for ``l ~ U[curvature]``."""
        lo, hi = self.curvature
        return (hi ** (k + 1) - lo ** (k + 1)) / ((k + 1) * (hi - lo))

    def optimum(self, curv: Tensor) -> Tensor:
        """Each task's ``w_i`` from its curvatures ``l_i`` (``[B, d]``)."""
        m1 = self.moments(1)
        return self.mean + self.spread * (curv - m1) / math.sqrt(self.moments(2) - m1 ** 2)

    def _examples(self, curv: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        z = torch.randn((curv.shape[0], k, self.dim), generator=generator, dtype=torch.float64)
        x = z * torch.sqrt(curv / 2).unsqueeze(1)
        eps = torch.randn((curv.shape[0], k, 1), generator=generator, dtype=torch.float64)
        y = (x * self.optimum(curv).unsqueeze(1)).sum(-1, keepdim=True) + self.noise * eps
        return x, y

    def sample(self, n_tasks: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """Draw ``n_tasks`` tasks, each with ``k_shot`` support (``D_in``) and ``k_query`` query (``D_o``) examples."""
        check_n_tasks("Quadratic.sample", n_tasks, generator)
        curv = uniform((n_tasks, self.dim), *self.curvature, generator, torch.float64)
        x, y = self._examples(curv, self.k_shot + self.k_query, generator)
        k = self.k_shot
        return TaskBatch(support_x=x[:, :k].to(dtype), support_y=y[:, :k].to(dtype), query_x=x[:, k:].to(dtype),
                         query_y=y[:, k:].to(dtype), task_params=curv.to(dtype))

    def resample(self, tasks: TaskBatch | Tensor, k: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> TaskBatch:
        """``k`` fresh examples of each task of ``tasks`` (a batch or its ``task_params [B, d]``)."""
        curv = task_params_of("Quadratic.resample", tasks, self.dim, k, generator).to(torch.float64)
        x, y = self._examples(curv, k, generator)
        return data_batch(x, y, curv, dtype)


def _m_moments(task: Quadratic, alpha: float) -> tuple[float, float]:
    """``(E[m], E[m zeta])`` for ``m(l) = l (1 - a l)^2``."""
    M = [task.moments(k) for k in range(5)]
    em = M[1] - 2 * alpha * M[2] + alpha ** 2 * M[3]
    eml = M[2] - 2 * alpha * M[3] + alpha ** 2 * M[4]
    return em, (eml - M[1] * em) / math.sqrt(M[2] - M[1] ** 2)


def _weights(w: Tensor | dict[str, Tensor], task: Quadratic, where: str) -> Tensor:
    if isinstance(w, dict):
        if len(w) != 1:
            raise InputError(f"{where}: expected the parameters of a linear model (one tensor), got keys {list(w)}")
        w = next(iter(w.values()))
    if not isinstance(w, Tensor):
        raise InputTypeError(f"{where}: expected a tensor w of {task.dim} numbers, got {type(w).__name__}")
    if w.numel() != task.dim:
        raise InputError(f"{where}: w has {w.numel()} numbers but the tasks have dim={task.dim}")
    return w.reshape(task.dim)


def meta_objective(w: Tensor | dict[str, Tensor], alpha: float, task: Quadratic) -> Tensor:
    """002 eq. (2) exactly: ``F(w) = E_i f_i(w - a grad f_i(w))`` (module docstring), from
    ``E[m (c - spread zeta)^2] = E[m] c^2 - 2 c spread E[m zeta] + spread^2 E[m zeta^2]``, ``c = w - mean``."""
    w = _weights(w, task, "meta_objective")
    em, emz = _m_moments(task, alpha)
    M = [task.moments(k) for k in range(6)]
    var = M[2] - M[1] ** 2
    coef = (0.0, 1.0, -2 * alpha, alpha ** 2)   # m(l) = l - 2a l^2 + a^2 l^3
    emz2 = sum(ck * (M[k + 2] - 2 * M[1] * M[k + 1] + M[1] ** 2 * M[k]) / var for k, ck in enumerate(coef))
    c = w - task.mean
    return 0.5 * (em * c * c - 2 * task.spread * emz * c + task.spread ** 2 * emz2).sum() + task.noise ** 2


def meta_gradient(w: Tensor | dict[str, Tensor], alpha: float, task: Quadratic) -> Tensor:
    """``grad F(w)`` of 002 eq. (2) exactly: ``E[m] (w - mean) - spread E[m zeta]`` per coordinate."""
    w = _weights(w, task, "meta_gradient")
    em, emz = _m_moments(task, alpha)
    return em * (w - task.mean) - task.spread * emz


def first_order_fixed_point(alpha: float, task: Quadratic) -> Tensor:
    """Where FO-MAML's expected direction ``E_i A_i (I - a A_i)(w - w_i)`` (002 eq. (6)) vanishes:
    ``w_j = mean + spread E[n zeta] / E[n]``, ``n(l) = l (1 - a l)``. ``||grad F||`` there is FO-MAML's
    floor, of order ``a * spread`` (002, Theorem 4.15), whatever the batch sizes."""
    M = [task.moments(k) for k in range(4)]
    en = M[1] - alpha * M[2]
    enz = (M[2] - alpha * M[3] - M[1] * en) / math.sqrt(M[2] - M[1] ** 2)
    return torch.full((task.dim,), task.mean + task.spread * enz / en, dtype=torch.float64)
