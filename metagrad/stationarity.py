"""``||grad F(w)||`` of MAML's meta-objective, estimated with a very large batch (002's measure of
stationarity, for task families without a closed form).

002 (Fallah, Mokhtari and Ozdaglar 2020), eq. (2): ``F(w) = E_i f_i(w - a grad f_i(w))``; MAML's
objective with ``T`` inner steps of its learner on ``D_in`` and the query loss on ``D_o`` is

    F(w) = E_i L(U_i(w; D_in_i); D_o_i),     U_i = T updates of the learner from w,

which for one SGD step tends to 002's ``F`` as ``D_in`` and ``D_o`` grow. ``meta_gradient_norm``
draws ``n_tasks`` tasks with ``k`` fresh support and ``k`` fresh query examples each (``task.resample``),
from a generator seeded by ``seed`` (so every state measured sees the same sample: a smooth curve),
and returns the norm of the exact (second-order) gradient of their mean query loss, with the
standard error of that mean gradient, ``sqrt(sum_c ||g_c - g||^2 / (C (C - 1)))`` over ``C`` chunks:
the level below which the estimate cannot resolve ``||grad F||``.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from .errors import ConfigError, InputError, check_int

__all__ = ["meta_gradient_norm"]


def meta_gradient_norm(algo: Any, task: Any, n_tasks: int = 2000, k: int = 100, seed: int = 0,
                       chunks: int = 8) -> tuple[float, float]:
    """``(||grad F(w)||, its standard error)`` at ``algo``'s parameters (module docstring): the
    exact MAML meta-gradient (``inner_steps`` of ``algo``'s learner) averaged over ``n_tasks`` tasks of
    ``k`` support and ``k`` query examples, computed in ``chunks`` groups of tasks."""
    check_int("meta_gradient_norm", "n_tasks", n_tasks, 2, InputError)
    check_int("meta_gradient_norm", "k", k, 1, InputError)
    check_int("meta_gradient_norm", "chunks", chunks, 2, InputError)
    if chunks > n_tasks:
        raise InputError(f"meta_gradient_norm: chunks must be at most n_tasks={n_tasks}, got {chunks}")
    if not hasattr(task, "resample"):
        raise ConfigError(f"meta_gradient_norm: task {type(task).__name__} cannot draw fresh examples of a task "
                          "(no resample); it needs a task family such as sine, polynomial or quadratic")
    exact = copy.copy(algo)                        # the same parameters, differentiated exactly
    exact.mode, exact.compile, exact.vectorize = "second_order", False, True
    params = {n: p.detach().requires_grad_() for n, p in algo.params().items()}
    meta = {n: p.detach() for n, p in algo.meta_params().items()}
    dtype = next(iter(params.values())).dtype
    g = torch.Generator().manual_seed(seed)
    tasks = task.sample(n_tasks, g, dtype)
    support, query = task.resample(tasks, k, g, dtype), task.resample(tasks, k, g, dtype)
    sums = []
    for idx in torch.arange(n_tasks).tensor_split(chunks):
        losses = exact.vmapped_losses(params, meta, support.support_x[idx], support.support_y[idx],
                                      query.support_x[idx], query.support_y[idx])
        grads = torch.autograd.grad(losses.sum(), list(params.values()))
        sums.append((torch.cat([t.flatten() for t in grads]).double(), len(idx)))
    mean = sum(s for s, _ in sums) / n_tasks
    per_chunk = [s / n for s, n in sums]
    var = sum(float(((c - mean) ** 2).sum()) for c in per_chunk) / (chunks * (chunks - 1))
    return float(mean.norm()), var ** 0.5
