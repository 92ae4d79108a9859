"""Shared fixtures: small float64 problems for exact gradient checks."""
from __future__ import annotations

import os
from pathlib import Path

from typing import Callable, Sequence

import pytest
import torch

# Tests read real data from ../shared/data unless METAGRAD_DATA says otherwise.
_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "METAGRAD_DATA" not in os.environ and _SHARED.is_dir():
    os.environ["METAGRAD_DATA"] = str(_SHARED)


@pytest.fixture(autouse=True)
def _one_thread():
    """Run every test on one intra-op thread: the problems are tiny, and on a shared 2-core
    machine torch's OpenMP threads spin against other processes (measured: a sine
    meta-iteration 28 ms on one thread against 437 ms on two under contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def fd_grad(f, tensors: list[torch.Tensor], eps: float = 1e-6) -> list[torch.Tensor]:
    """Central finite differences of the scalar ``f()`` with respect to each tensor (in place)."""
    out = []
    for t in tensors:
        g = torch.zeros_like(t)
        flat, gflat = t.data.view(-1), g.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            fp = f().item()
            flat[i] = old - eps
            fm = f().item()
            flat[i] = old
            gflat[i] = (fp - fm) / (2 * eps)
        out.append(g)
    return out


def rel_err(a: list[torch.Tensor] | torch.Tensor, b: list[torch.Tensor] | torch.Tensor) -> float:
    """``||a - b|| / ||b||`` over lists of tensors."""
    if isinstance(a, torch.Tensor):
        a, b = [a], [b]
    num = torch.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b)))
    den = torch.sqrt(sum((y ** 2).sum() for y in b))
    return float(num / den)


def directional_fd_errors(loss: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], directions: int = 1,
                          eps: float = 1e-7, seed: int = 1) -> list[float]:
    """Relative errors of ``<grad loss, v>`` (autograd) against the central difference
    ``(loss(p + eps v) - loss(p - eps v)) / (2 eps)`` along random directions ``v`` (drawn from
    ``seed``); the parameters are restored after each direction. Cheaper than ``fd_grad`` for
    many parameters: two evaluations a direction. A small ``eps`` suits float64 with curved
    losses (the truncation error is O(eps^2), the round-off about 1e-16 / eps)."""
    params = list(params)
    grads = torch.autograd.grad(loss(), params, allow_unused=True)
    gen = torch.Generator().manual_seed(seed)
    errs = []
    for _ in range(directions):
        vs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        analytic = sum(float((g * v).sum()) for g, v in zip(grads, vs) if g is not None)
        with torch.no_grad():
            for p, v in zip(params, vs):
                p.add_(eps * v)
            plus = float(loss())
            for p, v in zip(params, vs):
                p.sub_(2 * eps * v)
            minus = float(loss())
            for p, v in zip(params, vs):
                p.add_(eps * v)
        numeric = (plus - minus) / (2 * eps)
        errs.append(abs(analytic - numeric) / max(abs(numeric), 1e-12))
    return errs
