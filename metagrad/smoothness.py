"""Estimates of 002's smoothness constants ``L`` and ``rho`` (for its adaptive meta step size).

002 (Fallah, Mokhtari and Ozdaglar 2020), Assumptions 4.3-4.4: every task loss ``f_i`` has an
``L``-Lipschitz gradient and a ``rho``-Lipschitz Hessian,

    ||grad f_i(w) - grad f_i(u)|| <= L ||w - u||,      ||H_i(w) - H_i(u)|| <= rho ||w - u||,

and its adaptive meta step size, eq. (16)-(17), is
``beta_k = c / (4 L + 2 rho a mean_j ||grad f_j(w_k, D_beta)||)``. ``estimate_smoothness`` measures
both at the algorithm's current parameters ``w`` (all of the model's parameters, 002's ``w``) on
``n_tasks`` tasks drawn from the task distribution, each task's loss on its own examples:

    L   = max_i ||H_i(w)||_2
    rho = max_{i, p} ||H_i(w + r xi_p) - H_i(w + r xi'_p)||_2 / ||r xi_p - r xi'_p||

where ``||.||_2`` (largest eigenvalue magnitude) comes from ``steps`` Lanczos iterations (power
iteration's Krylov refinement: the extreme eigenvalues of the Krylov space, exact once ``steps``
reaches the number of parameters) on Hessian-vector products (``torch.func.grad`` of
``grad L . v``: the Hessian is never formed; for ``rho`` on ``v -> H_i(w1) v - H_i(w2) v``), and
``xi``, ``xi'`` are independent directions uniform on the unit sphere of all parameters, so each
pair lies in the ball of radius ``r`` around ``w``.
``quantile < 1`` takes that quantile over the tasks (and pairs) instead of the maximum. Both are
estimates from below of the global constants: a maximum over finitely many tasks and points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.func import grad, vmap

from .batch import TaskBatch
from .errors import ConfigError, InputError, check_int, check_positive
from .exact import exact_call
from .params import Params

__all__ = ["Smoothness", "estimate_smoothness"]


@dataclass(frozen=True)
class Smoothness:
    """``L`` and ``rho`` (see the module docstring), with the per-task (``L_tasks [n_tasks]``) and
    per-pair (``rho_pairs [n_tasks, pairs]``) values they summarise."""

    L: float
    rho: float
    L_tasks: Tensor
    rho_pairs: Tensor


def _flat(v: Params) -> Tensor:
    return torch.cat([t.flatten(1) for t in v.values()], 1)          # [batch, P]


def _unflat(f: Tensor, like: Params) -> Params:
    out, o = {}, 0
    for k, t in like.items():
        out[k] = f[:, o:o + t.numel()].view(f.shape[0], *t.shape)
        o += t.numel()
    return out


def _lanczos(op: Callable[[Tensor], Tensor], v: Tensor, steps: int, generator: torch.Generator) -> Tensor:
    """Largest eigenvalue magnitude of the symmetric operators ``op`` (one per row of ``v [batch, P]``)
    from ``steps`` Lanczos iterations started at ``v`` (full reorthogonalisation; an exhausted Krylov
    space, e.g. ``op = 0``, restarts from a random vector orthogonal to it)."""
    n, P = v.shape
    steps = min(steps, P)
    q = v / v.norm(dim=1, keepdim=True)
    Q: list[Tensor] = []
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    for j in range(steps):
        z = op(q)
        alphas.append((q * z).sum(1))
        Q.append(q)
        if j == steps - 1:
            break
        basis = torch.stack(Q, 1)                                        # [batch, j + 1, P]
        for _ in range(2):
            z = z - torch.einsum("bkp,bk->bp", basis, torch.einsum("bkp,bp->bk", basis, z))
        b = z.norm(dim=1)
        scale = torch.stack(alphas, 1).abs().max(1).values.clamp(min=1e-300)
        small = b <= 1e-10 * scale
        if bool(small.any()):
            r = torch.randn(z.shape, generator=generator, dtype=z.dtype)
            for _ in range(2):
                r = r - torch.einsum("bkp,bk->bp", basis, torch.einsum("bkp,bp->bk", basis, r))
            z = torch.where(small.unsqueeze(1), r, z)
            b = torch.where(small, torch.zeros_like(b), b)
            q = z / z.norm(dim=1, keepdim=True)
        else:
            q = z / b.unsqueeze(1)
        betas.append(b)
    k = len(alphas)
    T = torch.diag_embed(torch.stack(alphas, 1))
    if k > 1:
        off = torch.diag_embed(torch.stack(betas, 1), offset=1)
        T = T + off + off.transpose(1, 2)
    return torch.linalg.eigvalsh(T).abs().max(1).values


def _examples(task: Any, n_tasks: int, k: Optional[int], generator: torch.Generator,
              dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    batch: TaskBatch = task.sample(n_tasks, generator, dtype)
    if k is not None:
        if not hasattr(task, "resample"):
            raise ConfigError(f"estimate_smoothness: task {type(task).__name__} cannot draw k={k} fresh examples "
                              "of a task (no resample); pass k=None to use each task's support and query sets")
        fresh = task.resample(batch, k, generator, dtype)
        return fresh.support_x, fresh.support_y
    return torch.cat([batch.support_x, batch.query_x], 1), torch.cat([batch.support_y, batch.query_y], 1)


def estimate_smoothness(algo: Any, task: Any, n_tasks: int = 25, *, k: Optional[int] = None,
                        pairs: int = 4, radius: float = 0.1, steps: int = 40, quantile: float = 1.0,
                        generator: Optional[torch.Generator] = None) -> Smoothness:
    """``L`` and ``rho`` of 002's Assumptions 4.3-4.4 at ``algo``'s parameters (module docstring).

    ``task``: a task distribution (``sample``; ``resample`` when ``k`` is given: ``k`` fresh examples
    per task, else each task's support and query sets together). ``pairs`` point pairs per task at
    ``radius`` around ``w``; ``steps`` Lanczos iterations (Hessian-vector products) per operator;
    ``quantile`` in (0, 1] (1: the maximum). ``generator`` (default seeded 0) draws the tasks, the
    start vectors and the points, so the estimate is reproducible.
    """
    check_int("estimate_smoothness", "n_tasks", n_tasks, 1, InputError)
    check_int("estimate_smoothness", "pairs", pairs, 1, InputError)
    check_int("estimate_smoothness", "steps", steps, 1, InputError)
    check_positive("estimate_smoothness", "radius", radius, error=InputError)
    if not 0 < quantile <= 1:
        raise InputError(f"estimate_smoothness: quantile must be in (0, 1], got {quantile!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    w = {n: p.detach() for n, p in algo.params().items()}
    dtype = next(iter(w.values())).dtype
    P = sum(t.numel() for t in w.values())
    x, y = _examples(task, n_tasks, k, g, dtype)

    def loss(p: Params, xb: Tensor, yb: Tensor) -> Tensor:
        return algo.loss(exact_call(algo.model, p, (xb,)), yb)

    def hvp(p: Params, v: Params, xb: Tensor, yb: Tensor) -> Params:   # H v = grad (grad L . v)
        def directional(q: Params) -> Tensor:
            g = grad(loss)(q, xb, yb)
            return sum((g[k] * v[k]).sum() for k in g)
        return grad(directional)(p)

    shared, each = vmap(hvp, in_dims=(None, 0, 0, 0)), vmap(hvp)
    L_tasks = _lanczos(lambda v: _flat(shared(w, _unflat(v, w), x, y)),
                       torch.randn((n_tasks, P), generator=g, dtype=dtype), steps, g)

    # rho: pairs per task, as one batch of n_tasks * pairs operators H(w1) - H(w2)
    n = n_tasks * pairs
    xs, ys = x.repeat_interleave(pairs, 0), y.repeat_interleave(pairs, 0)
    xi1, xi2 = (torch.randn((n, P), generator=g, dtype=dtype) for _ in range(2))
    xi1, xi2 = radius * xi1 / xi1.norm(dim=1, keepdim=True), radius * xi2 / xi2.norm(dim=1, keepdim=True)
    base = _flat({k_: t.unsqueeze(0) for k_, t in w.items()})
    w1, w2 = _unflat(base + xi1, w), _unflat(base + xi2, w)

    def diff(v: Tensor) -> Tensor:
        vd = _unflat(v, w)
        return _flat(each(w1, vd, xs, ys)) - _flat(each(w2, vd, xs, ys))
    dist = (xi1 - xi2).norm(dim=1)
    rho_pairs = (_lanczos(diff, torch.randn((n, P), generator=g, dtype=dtype), steps, g) / dist).view(n_tasks, pairs)

    def summary(t: Tensor) -> float:
        t = t.flatten().double()
        return float(t.max() if quantile == 1 else torch.quantile(t, quantile))
    return Smoothness(summary(L_tasks), summary(rho_pairs), L_tasks, rho_pairs)
