"""Meta-gradients of every mode against numbers (float64), and vmap against the per-task loop."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import metagrad as mg
from conftest import fd_grad, rel_err


def _setup(steps: int, mode: str = "second_order", vectorize: bool | str = True, **kw):
    torch.manual_seed(0)
    model = mg.models.MLP([1, 6, 6, 1], activation="tanh").double()
    algo = mg.MAML(model, inner_lr=0.1, inner_steps=steps, mode=mode, vectorize=vectorize, **kw)
    batch = mg.tasks.Sinusoid(k_shot=5, k_query=6).sample(3, torch.Generator().manual_seed(1), torch.float64)
    return model, algo, batch


def _grads(algo, batch, hvp=None) -> list[torch.Tensor]:
    algo.zero_grad()
    algo.meta_loss(batch, hvp).backward()
    return [p.grad.clone() for p in algo.model.parameters()]


@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_equals_finite_differences(steps):
    model, algo, batch = _setup(steps)
    exact = _grads(algo, batch)
    with torch.no_grad():
        numeric = fd_grad(lambda: algo.meta_loss(batch), list(model.parameters()))
    assert rel_err(exact, numeric) < 1e-6


@pytest.mark.parametrize("steps", [1, 3])
def test_first_order_equals_query_gradient_at_adapted_params(steps):
    model, algo, batch = _setup(steps, "first_order")
    got = _grads(algo, batch)
    # Independent computation: adapt each task with plain autograd, then take the query-loss
    # gradient with respect to the adapted parameters and average over tasks.
    want = [torch.zeros_like(p) for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    def mse(p, x, y):
        return ((functional_call(model, p, (x,)) - y) ** 2).mean()

    for i in range(batch.n_tasks):
        p = {n: v.detach().clone().requires_grad_() for n, v in model.named_parameters()}
        for _ in range(steps):
            g = torch.autograd.grad(mse(p, batch.support_x[i], batch.support_y[i]), [p[n] for n in names])
            p = {n: (p[n] - 0.1 * gi).detach().requires_grad_() for n, gi in zip(names, g)}
        q = mse(p, batch.query_x[i], batch.query_y[i])
        for w, gi in zip(want, torch.autograd.grad(q, [p[n] for n in names])):
            w += gi / batch.n_tasks
    assert rel_err(got, want) < 1e-12
    # and it differs from the exact meta-gradient (the test would not notice a silent fallback)
    _, so, _ = _setup(steps)
    assert rel_err(got, _grads(so, batch)) > 1e-3


@pytest.mark.parametrize("steps", [1, 3])
def test_hessian_free_matches_second_order(steps):
    _, so, batch = _setup(steps)
    _, hf, _ = _setup(steps, "hessian_free", hf_delta=1e-5)
    assert rel_err(_grads(hf, batch), _grads(so, batch)) < 1e-4


def test_hessian_free_rho_rule_and_separate_batch():
    # d = 1 / (6 rho a ||u||) with a large rho is a small step: close to exact.
    _, so, batch = _setup(1)
    _, hf, _ = _setup(1, "hessian_free", hf_rho=1e4)
    assert rel_err(_grads(hf, batch), _grads(so, batch)) < 1e-4
    # A separate batch D_h changes the Hessian-vector products (and only them): with D_h equal
    # to the support set it is the same as no D_h.
    same = mg.TaskBatch(batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    _, hf2, _ = _setup(1, "hessian_free", hf_delta=1e-5)
    assert rel_err(_grads(hf2, batch, same), _grads(hf2, batch)) < 1e-10
    other = mg.tasks.Sinusoid(k_shot=5, k_query=6).sample(3, torch.Generator().manual_seed(9), torch.float64)
    other = mg.TaskBatch(other.support_x, other.support_y, batch.query_x, batch.query_y)
    assert rel_err(_grads(hf2, batch, other), _grads(hf2, batch)) > 1e-3


@pytest.mark.parametrize("mode", mg.MODES)
@pytest.mark.parametrize("steps", [1, 3])
def test_vmap_equals_loop(mode, steps):
    _, vm, batch = _setup(steps, mode, vectorize=True, hf_delta=1e-5)
    _, lp, _ = _setup(steps, mode, vectorize=False, hf_delta=1e-5)
    lv, ll = vm.task_losses(batch), lp.task_losses(batch)
    assert torch.allclose(lv, ll, rtol=0, atol=1e-12)
    assert rel_err(_grads(vm, batch), _grads(lp, batch)) < 1e-10


def test_learned_inner_lr_gets_exact_meta_gradient():
    model, algo, batch = _setup(2, learn_inner_lr=True)
    algo.zero_grad()
    algo.meta_loss(batch).backward()
    lr = algo.meta_params()["lr"]
    with torch.no_grad():
        (num,) = fd_grad(lambda: algo.meta_loss(batch), [lr])
    assert rel_err(lr.grad, num) < 1e-6


def test_zero_steps_is_plain_query_loss():
    model, algo, batch = _setup(0)
    want = torch.stack([((model(batch.query_x[i]) - batch.query_y[i]) ** 2).mean() for i in range(3)]).mean()
    assert torch.allclose(algo.meta_loss(batch), want)


def test_float32_works_and_matches_float64():
    torch.manual_seed(0)
    m64 = mg.models.MLP([1, 8, 1]).double()
    m32 = mg.models.MLP([1, 8, 1])
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    b = mg.tasks.Sinusoid().sample(4, torch.Generator().manual_seed(0), torch.float64)
    l64 = mg.MAML(m64, inner_steps=2).meta_loss(b)
    l32 = mg.MAML(m32, inner_steps=2).meta_loss(b.to(torch.float32))
    assert l32.dtype == torch.float32
    assert abs(l32.item() - l64.item()) < 1e-4 * abs(l64.item())
