"""Shared protocol of 001's regression experiments (Lee & Choi 2018, section 6 and DESIGN.md 4).

Sine family ``y = A sin(w x + b)``, ``A ~ U[0.1, 5]``, ``w ~ U[0.8, 1.2]``, ``b ~ U[0, pi]``,
``x ~ U[-5, 5]``, 10 query points; an MLP with two hidden layers of 40 (ReLU), ``W``
truncated normal with std 0.01, zero biases, ``T = I``, mask logits 0; one inner SGD step;
Adam ``1e-3`` with meta-batch 25 for 70,000 iterations; second-order meta-gradients.
Evaluation: loss after one inner step on 600 held-out tasks (the reference code's
``NUM_TEST_POINTS``), mean and 95% interval; the MT-net samples its mask per test task as
in training (and, reported beside it, uses the hard ``sigmoid(zeta) > 1/2`` mask).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ...algorithm import MAML
from ...evaluation import mean_ci95
from ...learners.base import Learner
from ...learners.meta_sgd import MetaSGD
from ...learners.sgd import SGD
from ...learners.tnet import MTNet, TNet
from ...models.mlp import MLP
from ...models.tnet import to_tnet
from ...tasks.sine import Sinusoid

__all__ = ["KINDS", "sine_task", "build", "train", "evaluate", "RunResult", "ITERATIONS", "TEST_TASKS"]

KINDS = ("MAML", "Meta-SGD", "T-net", "MT-net")
ITERATIONS = 70_000
TEST_TASKS = 600
QUICK_ITERATIONS = 300
QUICK_TEST_TASKS = 100


def sine_task(k_shot: int = 10) -> Sinusoid:
    """001's sine family (``b = -p``, so ``phase=(-pi, 0)`` in our ``sin(w x - p)``)."""
    return Sinusoid(k_shot=k_shot, k_query=10, amplitude=(0.1, 5.0), phase=(-math.pi, 0.0),
                    frequency=(0.8, 1.2), x_range=(-5.0, 5.0))


def build(kind: str, inner_lr: float = 0.01, seed: int = 0, hidden: tuple[int, ...] = (40, 40),
          temperature: float = 1.0) -> MAML:
    """``MAML`` object for one of ``KINDS`` with 001's initialisation (seeded by ``seed``)."""
    if kind not in KINDS:
        raise ValueError(f"build: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    torch.manual_seed(seed)
    model = MLP([1, *hidden, 1], "relu", init="normal")
    learner: Learner
    if kind == "MAML":
        learner = SGD(inner_lr)
    elif kind == "Meta-SGD":
        learner = MetaSGD(lr=inner_lr, lr_init="uniform", lr_range=(0.005, 0.1), seed=seed)
    elif kind == "T-net":
        model, learner = to_tnet(model), TNet(SGD(inner_lr))
    else:
        model, learner = to_tnet(model), MTNet(SGD(inner_lr), temperature=temperature, logit_init=0.0)
    return MAML(model, learner=learner, inner_steps=1, mode="second_order", loss="mse", vectorize=True)


@dataclass
class RunResult:
    """Training record: whether the meta-loss became non-finite, time per iteration, a loss curve."""

    iterations: int
    done: int = 0
    diverged: bool = False
    seconds: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def ms_per_iteration(self) -> float:
        return 1000.0 * self.seconds / max(self.done, 1)

    def as_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "done": self.done, "diverged": self.diverged,
                "seconds": round(self.seconds, 2), "ms_per_iteration": round(self.ms_per_iteration, 3),
                "curve": self.curve}


def train(algo: MAML, task: Sinusoid | Any, iterations: int, seed: int = 0, meta_batch: int = 25,
          meta_lr: float = 1e-3, log_every: int = 1000, progress: Optional[str] = None) -> RunResult:
    """Meta-train ``algo`` with Adam; stops early (``diverged=True``) on a non-finite meta-loss."""
    opt = torch.optim.Adam(algo.parameters(), lr=meta_lr)
    gen = torch.Generator().manual_seed(10_000 + seed)
    torch.manual_seed(20_000 + seed)  # the MT-net's Gumbel noise comes from the global RNG
    res = RunResult(iterations)
    start, window = time.perf_counter(), []
    for it in range(1, iterations + 1):
        loss = algo.meta_loss(task.sample(meta_batch, gen))
        if not torch.isfinite(loss):
            res.diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads_ok = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in algo.parameters())
        if not grads_ok:
            res.diverged = True
            break
        opt.step()
        res.done = it
        window.append(float(loss.detach()))
        if it % log_every == 0 or it == iterations:
            res.curve.append((it, sum(window) / len(window)))
            if progress:
                rate = 1000 * (time.perf_counter() - start) / it
                print(f"[{progress}] it {it}/{iterations} loss {res.curve[-1][1]:.4f} ({rate:.1f} ms/it)", flush=True)
            window = []
    res.seconds = time.perf_counter() - start
    if not res.diverged and not all(torch.isfinite(p).all() for p in algo.parameters()):
        res.diverged = True
    return res


def evaluate(algo: MAML, task: Sinusoid | Any, n_tasks: int, seed: int = 0, steps: int = 1,
             chunk: int = 100, learner: Optional[Learner] = None) -> torch.Tensor:
    """Query MSE of every test task after ``steps`` inner steps: ``[n_tasks]``.

    ``learner`` evaluates with another rule of the same meta-parameters (e.g. the MT-net's
    hard ``threshold`` mask). Test tasks come from a generator seeded apart from training.
    """
    gen = torch.Generator().manual_seed(90_000 + seed)
    torch.manual_seed(30_000 + seed)
    saved = algo.learner
    if learner is not None:
        algo.learner = learner
    try:
        out = []
        left = n_tasks
        while left > 0:
            b = task.sample(min(chunk, left), gen)
            out.append(algo.adaptation_curve(b, steps)[:, steps])
            left -= b.n_tasks
    finally:
        algo.learner = saved
    return torch.cat(out)


def summarise(losses: torch.Tensor) -> tuple[float, float, float]:
    """Mean, 95% half-width and median of per-task losses (``nan`` when non-finite)."""
    if not bool(torch.isfinite(losses).all()):
        return float("nan"), float("nan"), float("nan")
    mean, ci = mean_ci95(losses)
    return mean, ci, float(losses.median())
