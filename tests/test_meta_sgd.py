"""Meta-SGD (Li et al. 2017): per-parameter learned rates, exact meta-gradients in every mode."""
from __future__ import annotations

import copy

import pytest
import torch

import metagrad as mg
from metagrad.experiments import registry
from metagrad.learners.meta_sgd import LR_PREFIX, MetaSGD
from geometry_checks import check_modes, check_vmap_equals_loop, sine_batch


def small_mlp(seed: int = 0) -> mg.models.MLP:
    torch.manual_seed(seed)
    return mg.models.MLP([1, 5, 4, 1], "tanh").double()


def test_init_meta_keys_shapes_and_values():
    model = small_mlp()
    params = dict(model.named_parameters())
    const = MetaSGD(lr=0.03).init_meta(params)
    assert set(const) == {LR_PREFIX + k for k in params}
    for k, v in params.items():
        assert const[LR_PREFIX + k].shape == v.shape and const[LR_PREFIX + k].dtype == v.dtype
        assert torch.all(const[LR_PREFIX + k] == 0.03)
    uni = MetaSGD(lr_init="uniform", lr_range=(0.005, 0.1), seed=3).init_meta(params)
    flat = torch.cat([v.flatten() for v in uni.values()])
    assert flat.min() >= 0.005 and flat.max() <= 0.1 and flat.std() > 0.01
    again = MetaSGD(lr_init="uniform", seed=3).init_meta(params)
    other = MetaSGD(lr_init="uniform", seed=4).init_meta(params)
    assert all(torch.equal(uni[k], again[k]) for k in uni)
    assert not all(torch.equal(uni[k], other[k]) for k in uni)


def test_step_is_elementwise_rate_times_gradient():
    p = {"a.weight": torch.randn(3, 2, dtype=torch.float64), "a.bias": torch.randn(3, dtype=torch.float64)}
    g = {k: torch.randn_like(v) for k, v in p.items()}
    meta = {LR_PREFIX + k: torch.rand_like(v) for k, v in p.items()}
    new, _ = MetaSGD().step(g, p, None, meta, 0, torch.tensor(0.0))
    for k in p:
        assert torch.equal(new[k], p[k] - meta[LR_PREFIX + k] * g[k])


def test_constant_rates_reproduce_maml_exactly():
    model = small_mlp()
    x, y = torch.randn(6, 1, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
    maml = mg.MAML(copy.deepcopy(model), learner=mg.SGD(0.05)).adapt(x, y, steps=3)
    msgd = mg.MAML(copy.deepcopy(model), learner=MetaSGD(lr=0.05)).adapt(x, y, steps=3)
    assert all(torch.equal(maml[k], msgd[k]) for k in maml)


def make_algo(mode: str, kw: dict, steps: int = 1, vectorize=True) -> mg.MAML:
    model = small_mlp()
    algo = mg.MAML(model, learner=MetaSGD(lr_init="uniform", lr_range=(0.05, 0.2), seed=1),
                   inner_steps=steps, mode=mode, vectorize=vectorize, **kw)
    return algo


def test_meta_gradients_all_modes():
    errs = check_modes(make_algo, sine_batch(3))
    assert errs["second_order"] < 1e-6


def test_second_order_two_steps_against_finite_differences():
    from geometry_checks import check_second_order_fd
    check_second_order_fd(make_algo("second_order", {}, steps=2), sine_batch(2))


def test_rates_receive_meta_gradient_and_training_lowers_loss():
    torch.manual_seed(0)
    algo = mg.MAML(mg.models.MLP([1, 20, 20, 1]), learner=MetaSGD(lr_init="uniform"), inner_steps=1)
    task = mg.tasks.Sinusoid(frequency=(0.8, 1.2))
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in algo.meta_params().items()}
    losses = []
    for _ in range(120):
        loss = algo.meta_loss(task.sample(10, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20
    assert any(not torch.equal(before[k], v) for k, v in algo.meta_params().items())


def test_vmap_equals_loop():
    check_vmap_equals_loop(lambda vec: make_algo("second_order", {}, vectorize=vec), sine_batch(3))


def test_registry_builder():
    model = small_mlp()
    m, learner = registry.build("inner", registry.LEARNERS, "meta_sgd", {"lr_init": "constant", "lr": 0.02}, model)
    assert m is model and isinstance(learner, MetaSGD) and learner.lr == 0.02
    with pytest.raises(ValueError, match="inner.bogus"):
        registry.build("inner", registry.LEARNERS, "meta_sgd", {"bogus": 1}, model)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="MetaSGD: unknown lr_init 'gauss'"):
        MetaSGD(lr_init="gauss")
    with pytest.raises(ValueError, match="MetaSGD: lr must be a finite positive number, got -0.1"):
        MetaSGD(lr=-0.1)
    with pytest.raises(ValueError, match=r"lr_range must be .* got \(0.2, 0.1\)"):
        MetaSGD(lr_init="uniform", lr_range=(0.2, 0.1))
    p = {"w": torch.zeros(2)}
    with pytest.raises(KeyError, match="meta\\['lr/w'\\]"):
        MetaSGD().step({"w": torch.ones(2)}, p, None, {}, 0, torch.tensor(0.0))
    with pytest.raises(ValueError, match="no parameters"):
        MetaSGD().init_meta({})
