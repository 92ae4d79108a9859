"""The test-time protocol of the transfer baselines (004 appendix A.1, after Chen et al. 2019).

On each test task the trainable parameters start from the same point and take ``steps``
(100) Adam steps (lr 1e-3) on mini-batches of ``batch_size`` (4) examples drawn with
replacement from the support set. Every ``eval_every`` (25) steps the loss on the whole
support set is measured; the parameters with the lowest such loss (among steps 25, 50, 75,
100) are the ones tested on the query set. Adam is written out as a pure function so that
the whole protocol runs for all tasks at once under ``torch.func.vmap``::

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    w <- w - lr * (m / (1 - b1^s)) / (sqrt(v / (1 - b2^s)) + eps)
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor
from torch.func import grad, vmap

from ..errors import InputError, check_int
from ..params import Params

__all__ = ["fit_on_support", "sample_minibatches", "pretrain"]

Forward = Callable[[Params, Params, Tensor], Tensor]   # (trainable, frozen, x) -> prediction


def sample_minibatches(x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw ``batch_size`` examples with replacement from each task: ``[B, K, ...] -> [B, batch_size, ...]``."""
    b, k = x.shape[:2]
    # drawn where the generator lives (a CPU generator cannot draw on a GPU), then moved to the data
    idx = torch.randint(0, k, (b, batch_size), generator=generator, device=generator.device).to(x.device)
    rows = torch.arange(b, device=x.device)[:, None]
    return x[rows, idx], y[rows, idx]


def _check(where: str, steps: int, batch_size: int, eval_every: int, lr: float) -> None:
    for name, v in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)):
        check_int(where, name, v, 1, InputError)
    if eval_every > steps:
        raise InputError(f"{where}: eval_every={eval_every} exceeds steps={steps}; no checkpoint would be taken")
    if not lr > 0:
        raise InputError(f"{where}: lr must be positive, got {lr}")


def fit_on_support(forward: Forward, trainable: Params, frozen: Params, support_x: Tensor,
                   support_y: Tensor, loss: Callable[[Tensor, Tensor], Tensor], generator: torch.Generator,
                   *, steps: int = 100, batch_size: int = 4, eval_every: int = 25, lr: float = 1e-3,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                   batched: bool = False) -> Params:
    """Run the protocol on every task of ``support_x [B, K, ...]``; returns the chosen parameters ``[B, ...]``.

    ``trainable`` start the same for every task (``batched=False``) or hold one value per task
    (``batched=True``, leading dimension ``B``); ``frozen`` are shared by all tasks.
    """
    _check("fit_on_support", steps, batch_size, eval_every, lr)
    if support_x.shape[0] != support_y.shape[0]:
        raise InputError(f"fit_on_support: support_x has {support_x.shape[0]} tasks but support_y has {support_y.shape[0]}")
    n = support_x.shape[0]
    w = {k: (v if batched else v.expand(n, *v.shape)).detach().clone() for k, v in trainable.items()}
    frozen = {k: v.detach() for k, v in frozen.items()}

    def task_loss(p: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss(forward(p, frozen, x), y)

    grads_fn = vmap(grad(task_loss))
    loss_fn = vmap(task_loss)
    m = {k: torch.zeros_like(v) for k, v in w.items()}
    v2 = {k: torch.zeros_like(v) for k, v in w.items()}
    best = {k: v.clone() for k, v in w.items()}
    best_loss = torch.full((n,), float("inf"), dtype=support_x.dtype if support_x.is_floating_point() else torch.float32,
                           device=support_x.device)
    b1, b2 = betas
    for s in range(1, steps + 1):
        xb, yb = sample_minibatches(support_x, support_y, batch_size, generator)
        g = grads_fn(w, xb, yb)
        for k in w:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v2[k] = b2 * v2[k] + (1 - b2) * g[k] * g[k]
            step = lr * (m[k] / (1 - b1 ** s)) / (torch.sqrt(v2[k] / (1 - b2 ** s)) + eps)
            w[k] = w[k] - step
        if s % eval_every == 0:
            with torch.no_grad():
                cur = loss_fn(w, support_x, support_y).to(best_loss.dtype)
            better = torch.isfinite(cur) & (cur < best_loss)
            best_loss = torch.where(better, cur, best_loss)
            for k in w:
                mask = better.reshape(n, *([1] * (w[k].dim() - 1)))
                best[k] = torch.where(mask, w[k], best[k])
    return best


def pretrain(model: torch.nn.Module, x: Tensor, y: Tensor, loss: Callable[[Tensor, Tensor], Tensor],
             steps: int, generator: torch.Generator, *, batch_size: int = 16, lr: float = 1e-3,
             params: Optional[list[torch.nn.Parameter]] = None) -> list[float]:
    """Train ``model`` with Adam on flat mini-batches of ``(x [N, ...], y [N, ...])``; returns the losses.

    004 appendix A.1: the transfer baselines pre-train on batches of 16 examples drawn from
    the merged meta-training data (all support and query sets of all training tasks).
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(f"pretrain: x has {x.shape[0]} examples and y has {y.shape[0]}; need the same, non-zero number")
    check_int("pretrain", "steps", steps, 0, InputError)
    opt = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr)
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else x.device
    losses = []
    for _ in range(steps):
        # indices drawn where the generator lives; the data set may stay on the CPU (a large uint8
        # image collection) while the model is on a GPU: each batch moves to the model
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=generator, device=generator.device)
        idx = idx.to(x.device)
        value = loss(model(x[idx].to(device)), y[idx].to(device))
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
    return losses
