"""002's adaptive meta step size (metagrad.schedules), adaptation curves, and MAML.adapt against hand-written SGD."""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

import metagrad as mg
from metagrad.experiments.runner import train
from metagrad.errors import ConfigError
from metagrad.schedules import AdaptiveMetaStep, adaptive_meta_step_size
from metagrad.streams import Draw


def _algo(**kw):
    torch.manual_seed(0)
    return mg.MAML(mg.models.MLP([1, 8, 1]).double(), inner_lr=0.05, **kw)


def test_adaptive_step_size_formula():
    algo = _algo()
    b = mg.tasks.Sinusoid().sample(6, torch.Generator().manual_seed(0), torch.float64)
    norms = []
    for i in range(6):
        loss = ((algo.model(b.support_x[i]) - b.support_y[i]) ** 2).mean()
        g = torch.autograd.grad(loss, list(algo.model.parameters()))
        norms.append(math.sqrt(sum(float((t * t).sum()) for t in g)))
    want = 0.5 / (4 * 2.0 + 2 * 3.0 * 0.05 * sum(norms) / 6)
    assert adaptive_meta_step_size(algo, b, L=2.0, rho=3.0, c=0.5) == pytest.approx(want, rel=1e-10)
    with pytest.raises(ValueError, match="rho must be a finite positive number, got -1"):   # a ConfigError
        adaptive_meta_step_size(algo, b, L=1.0, rho=-1)
    # as fit's schedule: the rate of each iteration's D_beta batch
    sched = AdaptiveMetaStep(L=2.0, rho=3.0, c=0.5)
    assert sched(0, algo, Draw(b, beta=b)) == pytest.approx(want, rel=1e-10)
    with pytest.raises(ConfigError, match="draws no D_beta batch"):
        sched(0, algo, Draw(b))


def test_runner_uses_adaptive_step_size(tmp_path):
    run = train("sine-hfmaml", tmp_path / "r", progress=False, overrides=[
        "outer.iterations=6", "outer.meta_batch=3", "outer.optimizer=sgd", "outer.adaptive_L=1.0",
        "outer.adaptive_rho=1.0", "eval.tasks=5", "log_every=3"])
    assert (run / "eval.json").exists()
    # plain SGD stepped at 002's rate: the rate left in the optimiser is the schedule's, not outer.lr
    from metagrad.training import load_checkpoint
    lr = load_checkpoint(run / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"]
    assert 0 < lr < 1 / 4 and lr != pytest.approx(1e-3)


def test_adapt_equals_hand_written_sgd_and_curve_extends_past_training_steps():
    algo = _algo(inner_steps=1)
    b = mg.tasks.Sinusoid().sample(3, torch.Generator().manual_seed(1), torch.float64)
    x, y = b.support_x[0], b.support_y[0]
    p = {k: v.detach().clone().requires_grad_() for k, v in algo.model.named_parameters()}
    for _ in range(4):
        loss = ((functional_call(algo.model, p, (x,)) - y) ** 2).mean()
        g = torch.autograd.grad(loss, list(p.values()))
        p = {k: (v - 0.05 * gi).detach().requires_grad_() for (k, v), gi in zip(p.items(), g)}
    fast = algo.adapt(x, y, steps=4)
    for k in p:
        assert torch.allclose(fast[k], p[k], atol=1e-14)
    curve = algo.adaptation_curve(b, steps=4)
    assert curve.shape == (3, 5)
    q = ((functional_call(algo.model, p, (b.query_x[0],)) - b.query_y[0]) ** 2).mean()
    assert torch.allclose(curve[0, 4], q)
    assert torch.allclose(curve[0, 0], ((algo.model(b.query_x[0]) - b.query_y[0]) ** 2).mean())
