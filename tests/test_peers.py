"""metagrad's second-order meta-gradients equal higher's, an independent implementation (float64).

higher (Grefenstette et al. 2019) unrolls the inner loop through a differentiable copy of
``torch.optim.SGD``, one task at a time: nothing of metagrad's code (vmap, the exact batch norm, the
meta-gradient modes) is on its path, so agreement to rounding says both compute the same MAML
gradient. The batch-norm case is the one torch.func's ``vmap`` gets wrong in torch 2.13 (DESIGN.md
section 2; ``benchmarks/bench_peers.py --workload conv4`` shows torchopt's vmapped pattern 2e-3 off).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import metagrad as mg

higher = pytest.importorskip("higher")


def _higher_meta_gradient(model: torch.nn.Module, batch: mg.TaskBatch, lr: float, steps: int, loss) -> torch.Tensor:
    inner_opt = torch.optim.SGD(model.parameters(), lr=lr)
    for i in range(batch.n_tasks):
        with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(steps):
                diffopt.step(loss(fmodel(batch.support_x[i]), batch.support_y[i]))
            (loss(fmodel(batch.query_x[i]), batch.query_y[i]) / batch.n_tasks).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _metagrad_meta_gradient(model: torch.nn.Module, batch: mg.TaskBatch, lr: float, steps: int, loss: str,
                            vectorize: bool) -> torch.Tensor:
    algo = mg.MAML(model, inner_lr=lr, inner_steps=steps, mode="second_order", loss=loss, vectorize=vectorize)
    algo.meta_loss(batch).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _conv4(width: int = 8) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    for c in (1, width, width, width):
        layers += [torch.nn.Conv2d(c, width, 3, stride=2, padding=1),
                   torch.nn.BatchNorm2d(width, track_running_stats=False), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(width * 2 * 2, 5)).double()


@pytest.mark.parametrize("vectorize", [True, False])
def test_sine_meta_gradient_equals_highers(vectorize):
    batch = mg.tasks.Sinusoid(k_shot=10, k_query=10).sample(6, torch.Generator().manual_seed(0)).to(torch.float64)
    grads = []
    for ours in (True, False):
        torch.manual_seed(0)
        model = mg.models.MLP([1, 40, 40, 1]).double()
        grads.append(_metagrad_meta_gradient(model, batch, 0.01, 5, "mse", vectorize) if ours else
                     _higher_meta_gradient(model, batch, 0.01, 5, lambda p, y: ((p - y) ** 2).mean()))
    assert float((grads[0] - grads[1]).norm() / grads[1].norm()) < 1e-12


@pytest.mark.parametrize("vectorize", [True, False])
def test_batch_norm_conv_meta_gradient_equals_highers(vectorize):
    """nn.BatchNorm2d in the user's model, two inner steps: exact under vmap too."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(5).repeat(3, 1)
    batch = mg.TaskBatch(support_x=torch.rand(3, 5, 1, 28, 28, generator=g, dtype=torch.float64), support_y=y,
                         query_x=torch.rand(3, 5, 1, 28, 28, generator=g, dtype=torch.float64), query_y=y.clone())
    grads = []
    for ours in (True, False):
        torch.manual_seed(0)
        model = _conv4()
        grads.append(_metagrad_meta_gradient(model, batch, 0.4, 2, "cross_entropy", vectorize) if ours else
                     _higher_meta_gradient(model, batch, 0.4, 2, F.cross_entropy))
    assert float((grads[0] - grads[1]).norm() / grads[1].norm()) < 1e-12
