"""002's quadratic tasks: the closed-form F and grad F against autograd, and the data against them (float64)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import metagrad as mg
from metagrad.errors import InputError
from metagrad.tasks.quadratic import Quadratic, first_order_fixed_point, meta_gradient, meta_objective


def _quadrature_F(w: torch.Tensor, alpha: float, task: Quadratic, nodes: int = 5) -> torch.Tensor:
    """F(w) = E_i f_i(w - a grad f_i(w)) with the inner gradient by autograd and E_i by a product
    Gauss-Legendre rule over the curvatures (exact: the integrand is a polynomial of degree 5 in l)."""
    x, wt = np.polynomial.legendre.leggauss(nodes)
    lo, hi = task.curvature
    l1 = torch.tensor(lo + (hi - lo) * (x + 1) / 2, dtype=torch.float64)
    w1 = torch.tensor(wt / 2, dtype=torch.float64)
    grids = torch.meshgrid(*[l1] * task.dim, indexing="ij")
    curv = torch.stack([g.flatten() for g in grids], 1)
    weight = torch.stack(torch.meshgrid(*[w1] * task.dim, indexing="ij"), 0).prod(0).flatten()
    total = torch.zeros((), dtype=torch.float64)
    for l, p in zip(curv, weight):
        wi = task.optimum(l)

        def f(v):
            return 0.5 * ((v - wi) * l * (v - wi)).sum() + task.noise ** 2
        total = total + p * f(w - alpha * torch.func.grad(f)(w))
    return total


@pytest.mark.parametrize("alpha,spread", [(0.1, 1.0), (0.3, 0.5)])
def test_closed_form_F_and_grad_F_equal_autograd(alpha, spread):
    task = Quadratic(dim=2, curvature=(0.5, 2.0), spread=spread, noise=0.3, mean=1.0)
    w = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    F = _quadrature_F(w, alpha, task)
    (g,) = torch.autograd.grad(F, w)
    assert torch.allclose(meta_objective(w.detach(), alpha, task), F.detach(), rtol=1e-12, atol=0)
    assert torch.allclose(meta_gradient(w.detach(), alpha, task), g, rtol=1e-12, atol=1e-14)


def test_samples_are_the_quadratic_and_maml_estimates_grad_F():
    """The data: the empirical MSE of a linear model is f_i(w); MAML's stochastic meta-gradient over many
    tasks with large D_in and D_o averages to grad F (002 eq. (5)), up to sampling error."""
    task = Quadratic(dim=3, k_shot=400, k_query=400, spread=1.0, noise=0.5)
    g = torch.Generator().manual_seed(0)
    b = task.sample(2000, g, torch.float64)
    model = mg.models.LinearModel(3, init=0.0).double()
    with torch.no_grad():
        model.w.copy_(torch.tensor([0.5, 1.5, -0.5]))
    wi = task.optimum(b.task_params)
    want = (0.5 * ((model.w - wi) ** 2 * b.task_params).sum(1) + 0.25).mean()
    got = ((model(b.support_x) - b.support_y) ** 2).mean()
    assert abs(got.item() - want.item()) / want.item() < 0.02
    algo = mg.MAML(model, inner_lr=0.2, inner_steps=1, mode="second_order")
    algo.meta_loss(b).backward()
    exact = meta_gradient(model.w.detach(), 0.2, task)
    assert (model.w.grad - exact).norm() / exact.norm() < 0.05


def test_first_order_floor_is_of_order_a_spread():
    """002, Theorem 4.15: at FO-MAML's fixed point ||grad F|| > 0, linear in spread and O(a) for small a."""
    floors = {}
    for alpha in (0.02, 0.04):
        for spread in (0.5, 1.0):
            task = Quadratic(dim=4, spread=spread)
            floors[alpha, spread] = meta_gradient(first_order_fixed_point(alpha, task), alpha, task).norm().item()
    assert floors[0.02, 1.0] > 0
    assert floors[0.02, 1.0] == pytest.approx(2 * floors[0.02, 0.5], rel=1e-9)
    assert floors[0.04, 1.0] / floors[0.02, 1.0] == pytest.approx(2, rel=0.05)
    # and MAML's own stationary point is w = mean + spread E[m zeta]/E[m]: grad F there is 0
    task = Quadratic(dim=4)
    w = torch.full((4,), 1.0, dtype=torch.float64)
    g0 = meta_gradient(w, 0.1, task)
    em = (meta_gradient(w + 1, 0.1, task) - g0)[0]
    assert meta_gradient(w - g0 / em, 0.1, task).norm() < 1e-12


def test_quadratic_refusals_and_config():
    with pytest.raises(InputError, match="curvature must satisfy 0 < lo < hi"):
        Quadratic(curvature=(0.0, 1.0))
    with pytest.raises(InputError, match="spread must be a finite number >= 0, got -1"):
        Quadratic(spread=-1)
    with pytest.raises(InputError, match="w has 2 numbers but the tasks have dim=3"):
        meta_gradient(torch.zeros(2), 0.1, Quadratic(dim=3))
    from metagrad.experiments.building import build
    from metagrad.experiments.config import Config
    cfg = Config.from_dict({"task": {"name": "quadratic", "dim": 4}, "model": {"name": "linear"}})
    algo, task = build(cfg)
    assert isinstance(task, Quadratic) and algo.model.w.shape == (4,)
