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


def test_hessian_free_paired_and_sequential_differences_agree(monkeypatch):
    # Small cotangents take the paired (+d, -d) path; large ones the sequential one.
    from metagrad import metagrads
    _, hf, batch = _setup(3, "hessian_free", hf_delta=1e-5)
    paired = _grads(hf, batch)
    monkeypatch.setattr(metagrads, "_PAIR_MAX", 0)
    sequential = _grads(hf, batch)
    assert rel_err(paired, sequential) < 1e-10
    _, so, _ = _setup(3)
    assert rel_err(sequential, _grads(so, batch)) < 1e-4


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


def _learner_case(name: str):
    """A small float64 model and a learner whose step is not element-wise (vmapped state)."""
    torch.manual_seed(3)
    if name == "turtle":
        return mg.models.MLP([1, 5, 1], activation="tanh").double(), mg.Turtle(
            inputs=("grad", "ema_grad", "time", "loss"), hidden_layers=1, width=4, activation="tanh")
    if name == "lstm":
        return mg.models.MLP([1, 5, 1], activation="tanh").double(), mg.LSTMMetaLearner(hidden_size=3)
    from metagrad.models.tnet import to_tnet
    model = to_tnet(mg.models.MLP([1, 5, 1], activation="tanh").double())
    noise = {k[: -len(".weight")]: torch.randn(v.shape[0], dtype=torch.float64)
             for k, v in model.named_parameters() if k.endswith(".weight") and not k.split(".")[-2].startswith("t")}
    return model, mg.MTNet(mg.SGD(0.1), fixed_noise=noise, hard=False)


@pytest.mark.parametrize("name", ["turtle", "lstm", "mtnet"])
def test_hessian_free_batched_path_equals_loop_for_stateful_learners(name):
    # hessian_free runs its gradient op on the whole batch (adapt_tasks) and the rule vmapped.
    batch = mg.tasks.Sinusoid(k_shot=4, k_query=5).sample(3, torch.Generator().manual_seed(2), torch.float64)
    out = []
    for vec in (True, False):
        model, rule = _learner_case(name)
        algo = mg.MAML(model, learner=rule, inner_steps=2, mode="hessian_free", hf_delta=1e-4, vectorize=vec)
        loss = algo.meta_loss(batch)
        grads = torch.autograd.grad(loss, list(algo.parameters()), allow_unused=True)
        out.append((loss.detach(), grads))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-12, atol=0)
    for a, b in zip(out[0][1], out[1][1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-13)


def test_hessian_free_under_user_vmap_equals_loop():
    # A user who vmaps the per-task inner loop (mg.adapt) reaches _FDGrad's own vmap rule,
    # with the shared parameters unbatched (their gradients summed over tasks).
    model, algo, batch = _setup(2, "hessian_free", hf_delta=1e-5)
    params = algo.params()

    def task_loss(sx, sy, qx, qy):
        fast = mg.adapt(algo.learner, model, algo.loss, params, {}, sx, sy, 2, "hessian_free", hf=algo.hf)
        return algo.loss(functional_call(model, fast, (qx,)), qy)

    args = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    vm = torch.func.vmap(task_loss)(*args).mean()
    lp = torch.stack([task_loss(*(a[i] for a in args)) for i in range(batch.n_tasks)]).mean()
    gv = torch.autograd.grad(vm, list(params.values()))
    gl = torch.autograd.grad(lp, list(params.values()))
    assert rel_err(list(gv), list(gl)) < 1e-10
    # and it is the Hessian-free gradient, close to the exact one but not equal to first order
    _, so, _ = _setup(2)
    assert rel_err(list(gv), _grads(so, batch)) < 1e-4


def test_hessian_free_one_sided_is_first_order_accurate_and_reuses_the_forward_gradient():
    # The opt-in forward difference (grad L(w + d u) - grad L(w)) / d: O(d) error, where 002's
    # central difference is O(d^2), both converging to exact second order.
    _, so, batch = _setup(3)
    exact = _grads(so, batch)

    def err(delta: float, one_sided: bool, hvp=None) -> float:
        _, hf, _ = _setup(3, "hessian_free", hf_delta=delta, hf_one_sided=one_sided)
        return rel_err(_grads(hf, batch, hvp), exact)
    assert err(1e-6, True) < 1e-4
    one, central = err(1e-2, True) / err(1e-3, True), err(1e-2, False) / err(1e-3, False)
    assert 5 < one < 20 and central > 50
    # reusing the inner step's gradient (no D_h) equals evaluating grad L(w, D_h) with D_h = D_in
    same = mg.TaskBatch(batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    _, a, _ = _setup(3, "hessian_free", hf_delta=1e-4, hf_one_sided=True)
    assert rel_err(_grads(a, batch), _grads(a, batch, same)) < 1e-9
    _, lp, _ = _setup(3, "hessian_free", vectorize=False, hf_delta=1e-4, hf_one_sided=True)
    assert rel_err(_grads(lp, batch), _grads(a, batch)) < 1e-9
