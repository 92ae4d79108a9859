"""TURTLE (004 section 3.3): appendix B.1 example, finite-difference meta-gradients, vmap, subsumption."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import metagrad as mg
from conftest import directional_fd_errors
from metagrad.learners.turtle import TURTLE_INPUTS, Turtle

D = torch.float64


def sq_sum(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((pred - y) ** 2).sum()


def b1_algo(mode: str) -> tuple[mg.MAML, mg.TaskBatch]:
    """004 appendix B.1: y = w x, u = m * grad, w0 = 1, m = -0.01, support (2, 5), query (4, 9), T = 2."""
    model = nn.Linear(1, 1, bias=False).to(D)
    with torch.no_grad():
        model.weight.fill_(1.0)
    rule = Turtle(inputs=("grad",), hidden_layers=0, learn_lr=False, bias=False)
    algo = mg.MAML(model, learner=rule, inner_steps=2, mode=mode, loss=sq_sum)
    with torch.no_grad():
        algo.meta_params()["turtle.0.weight"].fill_(-0.01)
    t = lambda v: torch.tensor([[[v]]], dtype=D)  # noqa: E731
    return algo, mg.TaskBatch(t(2.0), t(5.0), t(4.0), t(9.0))


@pytest.mark.parametrize("mode,dw0,dm", [("second_order", -27.616, 720.41), ("first_order", -32.627, 751.73)])
def test_appendix_b1_numerical_example(mode: str, dw0: float, dm: float) -> None:
    algo, batch = b1_algo(mode)
    loss = algo.meta_loss(batch)
    loss.backward()
    assert loss.item() == pytest.approx((9 - 4 * 1.2304) ** 2, rel=1e-12)   # w2 = 1.2304 (B.1)
    assert algo.model.weight.grad.item() == pytest.approx(dw0, abs=1e-3)
    assert algo.meta_params()["turtle.0.weight"].grad.item() == pytest.approx(dm, abs=1e-2)


def _sine_batch(n: int = 3, k: int = 4, seed: int = 0) -> mg.TaskBatch:
    return mg.tasks.Sinusoid(k_shot=k, k_query=5).sample(n, torch.Generator().manual_seed(seed), dtype=D)


def _directional_check(algo: mg.MAML, batch: mg.TaskBatch, eps: float = 1e-7) -> float:
    """Relative error between <meta-gradient, v> and the central difference of the meta-loss along v.

    eps = 1e-7: the eq. (11) log features are strongly curved, and the O(eps^2) truncation error
    of eps = 1e-5 exceeds 1e-6 there (measured: 4.6e-5 at 1e-5, 4.4e-7 at 1e-6, 4.4e-9 at 1e-7).
    """
    return directional_fd_errors(lambda: algo.meta_loss(batch), list(algo.parameters()), eps=eps)[0]


@pytest.mark.parametrize("inputs", [(name,) for name in TURTLE_INPUTS] + [tuple(TURTLE_INPUTS)])
def test_meta_gradient_matches_finite_differences(inputs: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    model = mg.models.MLP([1, 6, 1], activation="tanh").to(D)
    rule = Turtle(inputs=inputs, hidden_layers=2, width=5, activation="tanh", lr_init=0.5, beta=0.7)
    algo = mg.MAML(model, learner=rule, inner_steps=3, mode="second_order", vectorize=True)
    with torch.no_grad():   # non-zero biases so that every meta-parameter is exercised
        for k, v in algo.meta_params().items():
            if k.endswith("bias"):
                v.normal_(0, 0.1)
    assert _directional_check(algo, _sine_batch()) < 1e-6


def test_default_relu_network_matches_finite_differences() -> None:
    torch.manual_seed(1)
    algo = mg.MAML(mg.models.MLP([1, 8, 1], activation="tanh").to(D), learner=Turtle(), inner_steps=2,
                   vectorize=True)
    assert _directional_check(algo, _sine_batch(seed=3)) < 1e-6


def test_defaults_are_the_thesis_best_setting() -> None:
    rule = Turtle()
    assert rule.inputs == ("grad", "ema_grad", "time") and rule.hidden_layers == 5 and rule.width == 20
    assert rule.activation == "relu" and rule.beta == 0.9 and rule.learn_lr
    meta = rule.init_meta({"w": torch.zeros(3, 2)})
    assert meta["turtle.0.weight"].shape == (20, 3) and meta["turtle.5.weight"].shape == (1, 20)
    assert meta["lr.w"].shape == (3, 2) and bool(((meta["lr.w"] >= 0) & (meta["lr.w"] <= 1)).all())


def test_vmapped_path_equals_per_task_loop() -> None:
    torch.manual_seed(2)
    batch = _sine_batch(n=4)
    results = []
    for vec in (True, False):
        torch.manual_seed(2)
        algo = mg.MAML(mg.models.MLP([1, 8, 8, 1]).to(D), learner=Turtle(inputs=("grad", "ema_update", "loss")),
                       inner_steps=3, vectorize=vec, grad_clip=10.0)
        loss = algo.meta_loss(batch)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in algo.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=0)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def _gradient_descent_weights(rule: Turtle, meta: dict, a: float) -> None:
    """Set g_phi to output -a * grad exactly: relu(g) and relu(-g) travel on two paths."""
    gi = rule.inputs.index("grad")
    with torch.no_grad():
        for k, v in meta.items():
            v.zero_()
        meta["turtle.0.weight"][0, gi] = 1.0
        meta["turtle.0.weight"][1, gi] = -1.0
        for i in range(1, rule.hidden_layers):
            meta[f"turtle.{i}.weight"][0, 0] = 1.0
            meta[f"turtle.{i}.weight"][1, 1] = 1.0
        meta[f"turtle.{rule.hidden_layers}.weight"][0, 0] = -a
        meta[f"turtle.{rule.hidden_layers}.weight"][0, 1] = a


def test_hand_set_network_reproduces_maml_exactly() -> None:
    torch.manual_seed(3)
    a, steps = 0.01, 5
    model = mg.models.MLP([1, 40, 40, 1]).to(D)
    rule = Turtle(learn_lr=False)   # default inputs, 5 hidden ReLU layers of 20
    turtle = mg.MAML(model, learner=rule, inner_steps=steps)
    _gradient_descent_weights(rule, turtle.meta_params(), a)
    maml = mg.MAML(model, inner_lr=a, inner_steps=steps)
    batch = _sine_batch(n=1, k=10)
    ours = turtle.adapt(batch.support_x[0], batch.support_y[0])
    ref = maml.adapt(batch.support_x[0], batch.support_y[0])
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k
    assert not torch.equal(ref["net.0.weight"], model.net[0].weight)   # something did move


def test_ema_inputs_follow_eq18() -> None:
    rule = Turtle(inputs=("ema_grad", "ema_update"), hidden_layers=0, learn_lr=False, beta=0.5)
    params = {"w": torch.zeros(2, dtype=D)}
    meta = rule.init_meta(params)
    with torch.no_grad():
        meta["turtle.0.weight"].copy_(torch.tensor([[1.0, 0.0]], dtype=D))   # update = ema_grad
    state = rule.init(params, meta)
    gs = [torch.tensor([1.0, 2.0], dtype=D), torch.tensor([3.0, 4.0], dtype=D), torch.tensor([5.0, 6.0], dtype=D)]
    loss = torch.tensor(0.0, dtype=D)
    p, state = rule.step({"w": gs[0]}, params, state, meta, 0, loss)
    torch.testing.assert_close(state["ema_grad"]["w"], gs[0])             # starts at the first gradient
    torch.testing.assert_close(state["ema_update"]["w"], torch.zeros(2, dtype=D))
    p, state = rule.step({"w": gs[1]}, p, state, meta, 1, loss)
    torch.testing.assert_close(state["ema_grad"]["w"], 0.5 * gs[0] + 0.5 * gs[1])
    torch.testing.assert_close(state["ema_update"]["w"], gs[0])          # previous update u_0 = g_0
    u1 = 0.5 * gs[0] + 0.5 * gs[1]
    p, state = rule.step({"w": gs[2]}, p, state, meta, 2, loss)
    torch.testing.assert_close(state["ema_update"]["w"], 0.5 * gs[0] + 0.5 * u1)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(inputs=("gradient",)), "'gradient'"), (dict(inputs=()), "inputs"),
    (dict(inputs=("grad", "grad")), "repeat"), (dict(hidden_layers=-1), "-1"),
    (dict(width=0), "width"), (dict(activation="gelu"), "'gelu'"), (dict(beta=1.5), "1.5"),
    (dict(lr_init=-0.1), "-0.1")])
def test_bad_options_raise(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match="Turtle") as err:
        Turtle(**kwargs)
    assert needle in str(err.value)
