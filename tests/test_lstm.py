"""The LSTM meta-learner (004 section 2.3.3, eq. (8)-(11)): gradients, first-order assumption, Theorem 1."""
from __future__ import annotations

import math

import pytest
import torch

import metagrad as mg
from conftest import directional_fd_errors
from metagrad.learners.coordinatewise import preprocess
from metagrad.learners.lstm import LSTMMetaLearner

D = torch.float64


def _batch(n: int = 3, k: int = 5, seed: int = 0) -> mg.TaskBatch:
    return mg.tasks.Sinusoid(k_shot=k, k_query=6).sample(n, torch.Generator().manual_seed(seed), dtype=D)


def _algo(second_order: bool, mode: str = "second_order", vectorize: bool | str = True, steps: int = 3,
          prev_gate: str = "value", layer1_init: str = "small") -> mg.MAML:
    torch.manual_seed(0)
    model = mg.models.MLP([1, 5, 1], activation="tanh").to(D)
    rule = LSTMMetaLearner(hidden_size=4, second_order=second_order, prev_gate=prev_gate, layer1_init=layer1_init)
    algo = mg.MAML(model, learner=rule,
                   inner_steps=steps, mode=mode, vectorize=vectorize)
    with torch.no_grad():   # larger weights than the near-SGD initialisation, so every path matters
        for k, v in algo.meta_params().items():
            v.normal_(0, 0.5)
    return algo


def _grads(algo: mg.MAML, batch: mg.TaskBatch) -> list[torch.Tensor]:
    return list(torch.autograd.grad(algo.meta_loss(batch), list(algo.parameters())))


@pytest.mark.parametrize("prev_gate,layer1_init", [("value", "small"), ("logit", "small"), ("logit", "torch")])
def test_second_order_meta_gradient_matches_finite_differences(prev_gate: str, layer1_init: str) -> None:
    algo, batch = _algo(second_order=True, prev_gate=prev_gate, layer1_init=layer1_init), _batch()
    # eps = 1e-7: the eq. (11) log features are strongly curved (see test_turtle)
    assert directional_fd_errors(lambda: algo.meta_loss(batch), list(algo.parameters()))[0] < 1e-6


def test_first_order_assumption_detaches_gradient_inputs_only() -> None:
    batch = _batch()
    default = _grads(_algo(second_order=False), batch)
    # same as differentiating the full rule with the core's first-order mode (grads and loss constant)
    via_core = _grads(_algo(second_order=True, mode="first_order"), batch)
    full = _grads(_algo(second_order=True), batch)
    for a, b in zip(default, via_core):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert max(float((a - b).abs().max()) for a, b in zip(default, full)) > 1e-6


def test_vmapped_path_equals_per_task_loop() -> None:
    batch = _batch(n=4)
    vec = _grads(_algo(second_order=True, vectorize=True), batch)
    loop = _grads(_algo(second_order=True, vectorize=False), batch)
    for a, b in zip(vec, loop):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_theorem1_forget_gate_one_input_gate_a_is_maml() -> None:
    a, steps = 0.01, 5
    torch.manual_seed(4)
    model = mg.models.MLP([1, 40, 40, 1]).to(D)
    rule = LSTMMetaLearner()
    lstm = mg.MAML(model, learner=rule, inner_steps=steps)
    meta = lstm.meta_params()
    with torch.no_grad():
        meta["lstm.W_F"].zero_()
        meta["lstm.b_F"].fill_(40.0)          # sigmoid(40) rounds to exactly 1 in float64
        meta["lstm.W_I"].zero_()
        meta["lstm.b_I"].fill_(math.log(a / (1 - a)))   # sigmoid(b_I) = a (Theorem 1 proof)
    assert torch.sigmoid(torch.tensor(40.0, dtype=D)).item() == 1.0
    batch = _batch(n=1, k=10)
    ours = lstm.adapt(batch.support_x[0], batch.support_y[0])
    ref = mg.MAML(model, inner_lr=a, inner_steps=steps).adapt(batch.support_x[0], batch.support_y[0])
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-14, atol=1e-16)
    assert not torch.equal(ref["net.0.weight"], model.net[0].weight)


def _step_inputs(seed: int) -> tuple[dict, dict, torch.Tensor, dict, dict]:
    """Parameters, gradients, loss, large meta-parameters and the initial state for one rule step."""
    torch.manual_seed(seed)
    params = {"w": torch.randn(3, 2, dtype=D), "b": torch.randn(3, dtype=D)}
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    rule = LSTMMetaLearner()
    meta = rule.init_meta(params)
    with torch.no_grad():
        for v in meta.values():
            v.normal_(0, 0.5)
    return params, grads, torch.tensor(0.7, dtype=D), meta, rule.init(params, meta)


def test_grad_scale_feeds_the_rule_a_scaled_gradient() -> None:
    """``grad_scale=s`` (004's code: s = 1/k) is the rule applied to ``s * g``: in the eq. (11)
    inputs and in the cell update, the loss untouched."""
    params, grads, loss, meta, state = _step_inputs(1)
    scaled, plain = LSTMMetaLearner(grad_scale=0.05), LSTMMetaLearner()
    ours, s1 = scaled.step(grads, params, state, meta, 0, loss)
    ref, s2 = plain.step({k: 0.05 * v for k, v in grads.items()}, params, state, meta, 0, loss)
    unscaled, _ = plain.step(grads, params, state, meta, 0, loss)
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-14, atol=1e-16)
        assert not torch.allclose(ours[k], unscaled[k])
    for k in s2:
        torch.testing.assert_close(s1[k], s2[k], rtol=1e-14, atol=1e-16)


def test_prev_gate_logit_carries_the_gates_activations() -> None:
    """``prev_gate="logit"`` (004's code) feeds the previous gates' pre-sigmoid activations into
    eq. (9)-(10) where ``"value"`` feeds the gates: same first step, different second."""
    params, grads, loss, meta, state = _step_inputs(2)
    value, logit = LSTMMetaLearner(), LSTMMetaLearner(prev_gate="logit")
    p_v, s_v = value.step(grads, params, state, meta, 0, loss)
    p_l, s_l = logit.step(grads, params, state, meta, 0, loss)
    for k in p_v:
        torch.testing.assert_close(p_l[k], p_v[k], rtol=0, atol=0)
    for g in ("f", "i"):   # the state holds the activation whose sigmoid is the gate
        torch.testing.assert_close(torch.sigmoid(s_l[g]), s_v[g], rtol=1e-14, atol=1e-16)
        assert not torch.allclose(s_l[g], s_v[g])
    second_v, _ = value.step(grads, p_v, s_v, meta, 1, loss)
    second_l, _ = logit.step(grads, p_l, s_l, meta, 1, loss)
    by_hand, _ = value.step(grads, p_l, s_l, meta, 1, loss)   # the value rule fed the activations
    for k in second_l:
        torch.testing.assert_close(second_l[k], by_hand[k], rtol=1e-14, atol=1e-16)
        assert not torch.allclose(second_l[k], second_v[k])


def test_initialisation_starts_near_gradient_descent() -> None:
    rule = LSTMMetaLearner()
    meta = rule.init_meta({"w": torch.zeros(7)})
    assert 4 <= float(meta["lstm.b_F"]) <= 6 and -5 <= float(meta["lstm.b_I"]) <= -4
    assert meta["lstm.W_ih"].shape == (80, 4) and meta["lstm.W_F"].shape == (22,)
    state = rule.init({"w": torch.zeros(7)}, meta)
    assert state["h"].shape == (7, 20) and state["f"].shape == (7,)
    assert float(meta["lstm.W_ih"].abs().max()) <= 0.01 and "lstm.b_hh" not in meta


def test_torch_layer1_init_is_the_original_codes() -> None:
    # the original code's first layer is a torch LSTMCell: U(-1/sqrt(h), 1/sqrt(h)), two biases;
    # only the gates of eq. (9)-(10) start small
    torch.manual_seed(0)
    meta = LSTMMetaLearner(layer1_init="torch").init_meta({"w": torch.zeros(7)})
    s = 20 ** -0.5
    for k in ("W_ih", "W_hh", "b", "b_hh"):
        v = meta[f"lstm.{k}"]
        assert float(v.abs().max()) <= s and float(v.abs().max()) > 0.8 * s, k
    assert meta["lstm.b_hh"].shape == (80,) and float(meta["lstm.W_F"].abs().max()) <= 0.01
    # the hidden bias adds to the input bias: moving one by d moves the gates as moving the other by d
    rule, params = LSTMMetaLearner(layer1_init="torch"), {"w": torch.randn(7, dtype=D)}
    meta = {k: v.to(D) for k, v in meta.items()}
    grads, state, loss = {"w": torch.randn(7, dtype=D)}, rule.init(params, meta), torch.tensor(0.7, dtype=D)
    d = torch.randn(80, dtype=D)
    a = rule.gates(grads, params, state, dict(meta, **{"lstm.b": meta["lstm.b"] + d}), loss)
    b = rule.gates(grads, params, state, dict(meta, **{"lstm.b_hh": meta["lstm.b_hh"] + d}), loss)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_preprocessing_eq11() -> None:
    x = torch.tensor([2.0, -3e-3, 1e-6, 0.0], dtype=D)
    out = preprocess(x, 10.0)
    torch.testing.assert_close(out[0], torch.tensor([math.log(2.0) / 10, 1.0], dtype=D))
    torch.testing.assert_close(out[1], torch.tensor([math.log(3e-3) / 10, -1.0], dtype=D))
    torch.testing.assert_close(out[2], torch.tensor([-1.0, math.exp(10) * 1e-6], dtype=D))
    x.requires_grad_(True)
    g, = torch.autograd.grad(preprocess(x).sum(), x)
    assert torch.isfinite(g).all()    # no nan from the discarded log branch at 0


@pytest.mark.parametrize("kwargs,needle", [(dict(hidden_size=0), "hidden_size"), (dict(p=-1.0), "-1.0"),
                                           (dict(grad_scale=0.0), "grad_scale must be a positive"),
                                           (dict(grad_scale=float("nan")), "nan"),
                                           (dict(prev_gate="pre"), "prev_gate must be 'value'"),
                                           (dict(layer1_init="xavier"), "layer1_init must be 'small'")])
def test_bad_options_raise(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match="LSTMMetaLearner") as err:
        LSTMMetaLearner(**kwargs)
    assert needle in str(err.value)


def test_preprocess_rejects_bad_p() -> None:
    with pytest.raises(ValueError, match="preprocess: p must be a finite positive number, got 0"):
        preprocess(torch.ones(2), 0.0)
