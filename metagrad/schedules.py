"""Outer-loop step-size schedules for ``fit``: ``schedule(it, module, draw) -> lr``.

``constant_schedule`` and ``cosine_schedule`` depend on the iteration alone; 002's adaptive meta
step size needs the module and its own batch of tasks (``Draw.beta``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.func import vmap

from .errors import ConfigError, check_positive
from .exact import exact_call

__all__ = ["Schedule", "constant_schedule", "cosine_schedule", "adaptive_meta_step_size", "AdaptiveMetaStep",
           "THEOREM_C"]

Schedule = Callable[[int, Any, Any], Optional[float]]   # (iteration, module, draw) -> lr, or None: keep it


def constant_schedule(lr: float) -> Schedule:
    """``lr`` at every iteration (set each time, so a resumed run may be given another rate)."""
    return lambda it, module, draw: lr


def cosine_schedule(lr: float, iterations: int) -> Schedule:
    """``lr_t = lr/2 (1 + cos(pi t / iterations))``, from ``lr`` to 0 (Loshchilov & Hutter 2017)."""
    return lambda it, module, draw: 0.5 * lr * (1 + math.cos(math.pi * it / max(iterations, 1)))

# 002's constant c in beta = c / (4 L + 2 rho a mean ||grad f||) per mode: Theorems 4.10 (MAML),
# 4.15 (FO-MAML) and 4.17 (HF-MAML).
THEOREM_C = {"second_order": 1 / 12, "first_order": 1 / 18, "hessian_free": 1 / 25}


def adaptive_meta_step_size(algo: Any, batch: Any, L: float, rho: float, c: Optional[float] = None) -> float:
    """002's adaptive meta step size, eq. (16)-(17): ``beta = c / (4 L + 2 rho a mean_j ||grad f_j(w, D_beta)||)``.

    ``batch`` is a separate batch of ``B'`` tasks; each task's gradient is taken on its support
    set at the current meta-parameters ``w`` (no adaptation). ``a`` is the learner's nominal step
    size, ``L`` the gradient's and ``rho`` the Hessian's Lipschitz constants (002 Assumptions
    4.3-4.4; given, or estimated by ``metagrad.smoothness.estimate_smoothness``); ``c`` defaults to
    the theorem's constant for ``algo.mode``: ``1/12`` (MAML), ``1/18`` (FO-MAML), ``1/25`` (HF-MAML).
    """
    if c is None:
        c = THEOREM_C[algo.mode]
    alpha = algo.learner.nominal_lr
    if alpha is None:
        raise ConfigError(f"adaptive_meta_step_size: learner {algo.learner.name!r} has no nominal step size a")
    for name, v in (("L", L), ("rho", rho), ("c", c)):
        check_positive("adaptive_meta_step_size", name, v)
    params = {k: v.detach() for k, v in algo.params().items()}

    def grad_norm(x: Tensor, y: Tensor) -> Tensor:
        g = torch.func.grad(lambda p: algo.loss(exact_call(algo.model, p, (x,)), y))(params)
        return torch.sqrt(sum((t * t).sum() for t in g.values()))

    mean_norm = vmap(grad_norm)(batch.support_x, batch.support_y).mean()
    return float(c / (4 * L + 2 * rho * alpha * mean_norm))


class AdaptiveMetaStep:
    """``schedule`` for ``fit``: 002's ``beta_k`` (eq. 16-17) from each iteration's ``D_beta``
    (``SampledStream(..., beta=True)``), for plain SGD as in 002's theorems. ``c=None``: the
    theorem's constant for the module's mode (``THEOREM_C``); ``estimate``: the
    ``metagrad.smoothness.Smoothness`` that ``L`` and ``rho`` came from, if they were estimated."""

    def __init__(self, L: float, rho: float, c: Optional[float] = None, estimate: Any = None) -> None:
        self.L, self.rho, self.c, self.estimate = L, rho, c, estimate

    def __call__(self, it: int, module: Any, draw: Any) -> float:
        if draw.beta is None:
            raise ConfigError("AdaptiveMetaStep: the task stream draws no D_beta batch; build it with beta=True")
        return adaptive_meta_step_size(module, draw.beta, self.L, self.rho, self.c)
