"""``learners/combine.py``: chain (transforms, then a rule) and masked (a rule on some keys), optax-style.
The meta-gradients of composed rules are checked by the learner contract (``test_learner_contract.py``)."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from metagrad.errors import InputError, InputTypeError


def _setup():
    torch.manual_seed(0)
    model = mg.models.MLP([1, 8, 1]).double()
    x = torch.linspace(-3, 3, 10, dtype=torch.float64).unsqueeze(-1)
    return model, x, 5 * torch.sin(x)


def test_chain_clips_the_gradients_before_the_rule_steps():
    model, x, y = _setup()
    params = {k: v.detach() for k, v in model.named_parameters()}
    grads = {k: 100 * torch.randn_like(v) for k, v in params.items()}
    rule = mg.chain(mg.clip(0.5), mg.SGD(0.1))
    new, _ = rule.step(grads, params, rule.init(params, {}), {}, 0, torch.tensor(1.0))
    for k in params:
        assert torch.equal(new[k], params[k] - 0.1 * grads[k].clamp(-0.5, 0.5))
    assert rule.name == "sgd" and rule.nominal_lr == 0.1 and rule.elementwise
    # MAML(grad_clip=...) is this chain: the adapted model equals the hand-clipped SGD step
    algo = mg.MAML(model, inner_lr=0.1, inner_steps=1, grad_clip=0.5)
    assert isinstance(algo.learner, mg.learners.Chain)
    fast = algo.adapt(x, y, steps=1)
    loss = torch.nn.functional.mse_loss(model(x), y)
    g = torch.autograd.grad(loss, list(model.parameters()))
    for (k, p), gk in zip(model.named_parameters(), g):
        assert torch.allclose(fast[k], p - 0.1 * gk.clamp(-0.5, 0.5), atol=1e-12)


def test_masked_adapts_only_the_keys_it_accepts_and_keeps_their_meta_parameters_only():
    model, x, y = _setup()
    rule = mg.masked(mg.learners.MetaSGD(lr_init="constant", lr=0.1), lambda k: k.startswith("net.0."))
    algo = mg.MAML(model, learner=rule, inner_steps=3)
    assert sorted(algo.meta_params()) == ["lr/net.0.bias", "lr/net.0.weight"]
    fast = algo.adapt(x, y, steps=3)
    for k, p in model.named_parameters():
        assert torch.equal(fast[k], p) != k.startswith("net.0."), k   # only the first layer moved


def test_combinators_nest():
    model, x, y = _setup()
    rule = mg.chain(mg.clip(1.0), mg.masked(mg.SGD(0.1), lambda k: k.endswith("bias")))
    fast = mg.MAML(model, learner=rule).adapt(x, y, steps=2)
    moved = sorted(k for k, p in model.named_parameters() if not torch.equal(fast[k], p))
    assert moved == ["net.0.bias", "net.2.bias"]


def test_bad_compositions_are_named():
    model, _, _ = _setup()
    with pytest.raises(InputTypeError, match="chain: the last argument must be the update rule"):
        mg.chain(mg.clip(1.0))
    with pytest.raises(InputTypeError, match="every argument before the rule must be a gradient transform.*got SGD"):
        mg.chain(mg.SGD(0.1), mg.SGD(0.1))
    with pytest.raises(InputError, match="clip: value must be a positive number, got 0"):
        mg.clip(0)
    with pytest.raises(InputError, match="masked: the mask accepts none of the parameters net.0.weight"):
        mg.MAML(model, learner=mg.masked(mg.learners.MetaSGD(), lambda k: False))
    with pytest.raises(InputTypeError, match=r"masked: expected \(Learner, callable key -> bool\), got \(str"):
        mg.masked("sgd", lambda k: True)
