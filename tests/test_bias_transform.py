"""The bias transformation of 000: a learned input vector, adapted in the inner loop."""
from __future__ import annotations


import pytest
import torch
from torch import nn

import metagrad as mg
from metagrad.experiments import registry
from metagrad.learners.tnet import MTNet
from metagrad.models.bias_transform import BiasTransform, bias_transformed_mlp
from metagrad.models.conv4 import Conv4
from metagrad.models.tnet import to_tnet
from geometry_checks import check_modes, check_second_order_fd, check_vmap_equals_loop, sine_batch

D = torch.float64


def bt_mlp(seed: int = 0, size: int = 3) -> BiasTransform:
    torch.manual_seed(seed)
    model = bias_transformed_mlp([1, 5, 4, 1], size=size, activation="tanh", init_std=0.5).double()
    return model


def test_forward_concatenates_the_vector():
    model = bt_mlp()
    x = torch.randn(6, 1, dtype=D)
    b = model.bias_transform
    assert b.shape == (3,) and model.body.net[0].in_features == 4
    expect = model.body(torch.cat([x, b.detach().expand(6, 3)], dim=1))
    assert torch.equal(model(x), expect)
    conv = BiasTransform(nn.Conv2d(2 + 2, 3, 3), size=2, where="channels").double()
    xi = torch.randn(5, 2, 6, 6, dtype=D)
    extra = conv.bias_transform.detach()[:, None, None].expand(5, 2, 6, 6)
    assert torch.equal(conv(xi), conv.body(torch.cat([xi, extra], dim=1)))
    assert torch.all(BiasTransform(nn.Linear(3, 1), size=2).bias_transform == 0)  # default init


def test_vector_is_adapted_in_the_inner_loop():
    model = bt_mlp()
    algo = mg.MAML(model, learner=mg.SGD(0.1))
    x, y = torch.randn(6, 1, dtype=D), torch.randn(6, 1, dtype=D)
    fast = algo.adapt(x, y, steps=1)
    loss = ((model(x) - y) ** 2).mean()
    (g,) = torch.autograd.grad(loss, [model.bias_transform])
    assert torch.allclose(fast["bias_transform"], model.bias_transform - 0.1 * g)
    assert not torch.allclose(fast["bias_transform"], model.bias_transform)


def make(mode: str, kw: dict, vectorize=True, steps: int = 1) -> mg.MAML:
    return mg.MAML(bt_mlp(), learner=mg.SGD(0.2), inner_steps=steps, mode=mode, vectorize=vectorize, **kw)


def test_meta_gradients_all_modes():
    check_modes(make, sine_batch(3))


def test_two_steps_and_vmap_equals_loop():
    check_second_order_fd(make("second_order", {}, steps=2), sine_batch(2))
    check_vmap_equals_loop(lambda vec: make("second_order", {}, vectorize=vec), sine_batch(3))


def test_conv_bias_transform_meta_gradient():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1 + 2, 2, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(8, 2))
    model = BiasTransform(body, size=2, where="channels", init_std=0.3).double()
    x = torch.randn(2, 4, 1, 3, 3, dtype=D)
    y = torch.randint(0, 2, (2, 4))
    algo = mg.MAML(model, learner=mg.SGD(0.3), loss="cross_entropy", vectorize=False)
    check_second_order_fd(algo, mg.TaskBatch(x, y, x + 0.1, y))


def test_works_with_conv4_and_tnets():
    conv = BiasTransform(Conv4(n_way=3, channels=1 + 2, image_size=8, hidden=4, blocks=2), size=2, where="channels")
    out = conv(torch.randn(5, 1, 8, 8))
    assert out.shape == (5, 3)
    # MT-net on a bias-transformed MLP: the vector is not a T-layer row, so it is always updated.
    model = to_tnet(bt_mlp())
    algo = mg.MAML(model, learner=MTNet(mg.SGD(0.1), mask="threshold", logit_init=-1.0))
    fast = algo.adapt(torch.randn(6, 1, dtype=D), torch.randn(6, 1, dtype=D))
    params = algo.params()
    assert all(torch.equal(fast[k], params[k]) for k in params if k != "bias_transform")
    assert not torch.equal(fast["bias_transform"], params["bias_transform"])


def test_registry_model_option():
    task = mg.tasks.Sinusoid()
    model = registry.build("model", registry.MODELS, "mlp", {"bias_transform": 10, "hidden": [8]}, task)
    assert isinstance(model, BiasTransform) and model.size == 10 and model.body.net[0].in_features == 11
    plain = registry.build("model", registry.MODELS, "mlp", {"hidden": [8]}, task)
    assert not isinstance(plain, BiasTransform)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="BiasTransform: size must be an integer >= 1, got 0"):
        BiasTransform(nn.Linear(1, 1), size=0)
    with pytest.raises(ValueError, match="BiasTransform: unknown where 'rows'"):
        BiasTransform(nn.Linear(1, 1), size=1, where="rows")
    with pytest.raises(ValueError, match="init_std must be >= 0, got -1"):
        BiasTransform(nn.Linear(1, 1), size=1, init_std=-1)
    with pytest.raises(ValueError, match=r"where='channels' needs inputs \[..., C, H, W\], got shape \(4, 2\)"):
        BiasTransform(nn.Linear(3, 1), size=1, where="channels")(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="bias_transformed_mlp: size must be an integer >= 1, got -2"):
        bias_transformed_mlp([1, 4, 1], size=-2)


def test_conv4_bias_transform_vmapped_meta_gradient():
    torch.manual_seed(0)
    model = BiasTransform(Conv4(n_way=2, channels=1 + 2, image_size=6, hidden=3, blocks=2), size=2,
                          where="channels", init_std=0.3).double()
    x = torch.randn(2, 4, 1, 6, 6, dtype=D)
    y = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]])
    algo = mg.MAML(model, learner=mg.SGD(0.3), loss="cross_entropy", vectorize=True)
    check_second_order_fd(algo, mg.TaskBatch(x, y, x.flip(-1), y))
