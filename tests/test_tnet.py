"""T-nets and MT-nets (001): layers, conversion, exact meta-gradients, masks, 001's scaling argument."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import metagrad as mg
from metagrad.experiments import registry
from metagrad.learners.tnet import MASK_PREFIX, MTNet, TNet, relaxed_mask, update_fraction, update_fractions
from metagrad.models.conv4 import Conv4
from metagrad.models.tnet import TConv2d, TLinear, is_transform, to_tnet
from geometry_checks import check_modes, check_second_order_fd, check_vmap_equals_loop, sine_batch

D = torch.float64


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return mg.models.MLP([1, 5, 4, 1], "tanh").double()


def random_tnet(seed: int = 0) -> nn.Module:
    """A T-net with non-identity transforms (so T matters in every check)."""
    model = to_tnet(small_mlp(seed))
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for k, p in model.named_parameters():
            if is_transform(k):
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=D))
    return model


def fixed_noise(model: nn.Module, seed: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k[:-2]: torch.randn(p.shape[0], generator=g, dtype=D) for k, p in model.named_parameters()
            if is_transform(k)}


# --- layers and conversion --------------------------------------------------------------------

def test_tlinear_and_tconv_compute_t_times_w():
    lin = nn.Linear(3, 4).double()
    t = TLinear.from_linear(lin)
    x = torch.randn(5, 3, dtype=D)
    assert torch.equal(t(x), lin(x))  # T = I leaves the map unchanged
    with torch.no_grad():
        t.T.copy_(torch.randn(4, 4, dtype=D))
    assert torch.allclose(t(x), (lin(x)) @ t.T.T)
    # T composed into the kernel (first two), two convolutions (fewer output pixels than in x k^2;
    # grouped), no bias, reflect padding, an unbatched input
    cases = [(nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 7, 7), True),
             (nn.Conv2d(2, 3, 2, bias=False), (3, 2, 7, 7), True),
             (nn.Conv2d(8, 3, 3, padding=1), (1, 8, 4, 4), False),
             (nn.Conv2d(4, 6, 3, padding=1, groups=2), (2, 4, 7, 7), False),
             (nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 7, 7), True)]
    for conv, shape, composed in cases:
        conv = conv.double()
        tc = TConv2d.from_conv(conv)
        xi = torch.randn(shape, dtype=D)
        assert tc._compose(xi) == composed
        assert torch.allclose(tc(xi), conv(xi), atol=1e-14)
        with torch.no_grad():
            tc.T.copy_(torch.randn(conv.out_channels, conv.out_channels, dtype=D))
        assert torch.allclose(tc(xi), torch.einsum("oc,...chw->...ohw", tc.T, conv(xi)), atol=1e-12)


def test_to_tnet_returns_new_model_with_transform_keys():
    model = small_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = to_tnet(model)
    assert new is not model and all(type(m) is not TLinear for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    keys = [k for k, _ in new.named_parameters()]
    assert [k for k in keys if is_transform(k)] == ["net.0.T", "net.2.T", "net.4.T"]
    x = torch.randn(7, 1, dtype=D)
    assert torch.allclose(new(x), model(x), atol=1e-15)
    conv = to_tnet(Conv4(n_way=3, hidden=4, image_size=8, blocks=2).double())
    assert sum(isinstance(m, TConv2d) for m in conv.modules()) == 2
    assert sum(isinstance(m, TLinear) for m in conv.modules()) == 1


def test_to_tnet_errors():
    with pytest.raises(TypeError, match="to_tnet: expected an nn.Module, got int"):
        to_tnet(3)
    with pytest.raises(ValueError, match="to_tnet: ReLU has no nn.Linear"):
        to_tnet(nn.ReLU())
    with pytest.raises(ValueError, match="already has T-net layers"):
        to_tnet(to_tnet(small_mlp()))
    with pytest.raises(ValueError, match="MTNet.init_meta: the model has no T-net layers.*to_tnet"):
        mg.MAML(small_mlp(), learner=MTNet())
    with pytest.raises(ValueError, match="TNet.init_meta: the model has no T-net layers"):
        mg.MAML(small_mlp(), learner=TNet())


def test_mtnet_option_errors():
    with pytest.raises(ValueError, match="MTNet: temperature must be a finite positive number, got 0"):
        MTNet(temperature=0)
    with pytest.raises(ValueError, match="MTNet: unknown mask 'soft'"):
        MTNet(mask="soft")
    with pytest.raises(ValueError, match="fixed_noise is only used with mask='sample', not 'threshold'"):
        MTNet(mask="threshold", fixed_noise={"net.0": torch.zeros(5)})
    model = to_tnet(small_mlp())
    algo = mg.MAML(model, learner=MTNet(fixed_noise={"net.0": torch.zeros(5, dtype=D)}))
    with pytest.raises(KeyError, match="fixed_noise has no entry for layer 'net.2'"):
        algo.adapt(torch.zeros(3, 1, dtype=D), torch.zeros(3, 1, dtype=D))
    with pytest.raises(KeyError, match="update_fraction: meta has no 'mask/<layer>'"):
        update_fraction({})


# --- the inner loop ------------------------------------------------------------------------------

def test_identity_tnet_and_all_ones_mtnet_reproduce_maml_exactly():
    base = small_mlp()
    x, y = torch.randn(6, 1, dtype=D), torch.randn(6, 1, dtype=D)
    maml = mg.MAML(copy.deepcopy(base), learner=mg.SGD(0.1)).adapt(x, y, steps=3)
    tmodel = to_tnet(base)
    tnet = mg.MAML(copy.deepcopy(tmodel), learner=TNet(mg.SGD(0.1))).adapt(x, y, steps=3)
    ones = mg.MAML(copy.deepcopy(tmodel), learner=MTNet(mg.SGD(0.1), mask="ones")).adapt(x, y, steps=3)
    # A sampled hard mask whose noise makes every row one is also exactly MAML.
    big = {k: torch.full_like(v, 50.0) for k, v in fixed_noise(tmodel).items()}
    sampled = mg.MAML(copy.deepcopy(tmodel), learner=MTNet(mg.SGD(0.1), fixed_noise=big)).adapt(x, y, steps=3)
    for out in (tnet, ones, sampled):
        assert all(torch.equal(maml[k], out[k]) for k in maml)
        assert all(torch.equal(out[k], torch.eye(out[k].shape[0], dtype=D)) for k in out if is_transform(k))


def test_mask_freezes_exactly_the_unselected_rows():
    model = random_tnet()
    learner = MTNet(mg.SGD(0.1), mask="threshold")
    algo = mg.MAML(model, learner=learner)
    with torch.no_grad():
        zeta = algo.meta_params()[MASK_PREFIX + "net.0"]
        zeta.copy_(torch.tensor([1.0, -1.0, 2.0, -0.5, 0.3]))
    x, y = torch.randn(6, 1, dtype=D), torch.randn(6, 1, dtype=D)
    fast = algo.adapt(x, y, steps=2)
    moved = (fast["net.0.weight"] != model.net[0].weight).any(dim=1) | (fast["net.0.bias"] != model.net[0].bias)
    assert moved.tolist() == [True, False, True, False, True]
    assert update_fractions(algo.meta_params())["net.0"] == pytest.approx(float(torch.sigmoid(zeta.detach()).mean()))
    assert update_fraction(algo.meta_params(), threshold=True) == pytest.approx((3 + 0 + 0) / 10)  # zeta = 0 elsewhere: not above 1/2


def test_relaxed_and_straight_through_masks():
    zeta = torch.tensor([0.5, -1.0, 2.0], dtype=D, requires_grad=True)
    noise = torch.tensor([0.1, 0.3, -3.0], dtype=D)
    soft = relaxed_mask(zeta, noise, 0.5, hard=False)
    # eq. (11) with g1 - g2 = noise: exp((z+g1)/T) / (exp((z+g1)/T) + exp(g2/T))
    g1, g2 = noise, torch.zeros(3, dtype=D)
    ref = torch.exp((zeta + g1) / 0.5) / (torch.exp((zeta + g1) / 0.5) + torch.exp(g2 / 0.5))
    assert torch.allclose(soft, ref)
    hard = relaxed_mask(zeta, noise, 0.5, hard=True)
    assert hard.tolist() == [1.0, 0.0, 0.0]
    (gs,) = torch.autograd.grad(soft.sum(), zeta)
    (gh,) = torch.autograd.grad(hard.sum(), zeta)
    assert torch.allclose(gs, gh)  # straight-through: the relaxed mask's gradient


def test_sampled_masks_differ_per_task_and_are_seed_reproducible():
    model = random_tnet()
    algo = mg.MAML(model, learner=MTNet(mg.SGD(0.5), hard=True))
    batch = sine_batch(8)
    torch.manual_seed(1)
    a = algo.task_losses(batch)
    torch.manual_seed(1)
    b = algo.task_losses(batch)
    torch.manual_seed(2)
    c = algo.task_losses(batch)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Under vmap every task draws its own mask: with zeta = 0 the 10 rows get differing masks.
    masks = torch.func.vmap(lambda _: algo.learner.init({}, algo.meta_params())[0]["net.0"],
                            randomness="different")(torch.zeros(8))
    assert len({tuple(m.tolist()) for m in masks}) > 1


# --- meta-gradients ------------------------------------------------------------------------------

def make_tnet(mode: str, kw: dict, vectorize=True, steps: int = 1) -> mg.MAML:
    return mg.MAML(random_tnet(), learner=TNet(mg.SGD(0.2)), inner_steps=steps, mode=mode,
                   vectorize=vectorize, **kw)


def make_mtnet(mode: str, kw: dict, vectorize=True, steps: int = 1) -> mg.MAML:
    model = random_tnet()
    learner = MTNet(mg.SGD(0.2), temperature=0.7, hard=False, fixed_noise=fixed_noise(model))
    algo = mg.MAML(model, learner=learner, inner_steps=steps, mode=mode, vectorize=vectorize, **kw)
    with torch.no_grad():  # non-zero logits so the mask's gradient is generic
        for v in algo.meta_params().values():
            v.copy_(torch.linspace(-1.0, 1.5, v.numel(), dtype=D))
    return algo


def test_tnet_meta_gradients_all_modes():
    check_modes(make_tnet, sine_batch(3))


def test_mtnet_relaxed_mask_meta_gradients_all_modes():
    check_modes(make_mtnet, sine_batch(3))


def test_two_inner_steps_against_finite_differences():
    check_second_order_fd(make_tnet("second_order", {}, steps=2), sine_batch(2))
    check_second_order_fd(make_mtnet("second_order", {}, steps=2), sine_batch(2))


def test_conv_tnet_meta_gradient():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 2 * 2, 2))
    model = to_tnet(body.double())
    x = torch.randn(2, 4, 1, 3, 3, dtype=D)
    y = torch.randint(0, 2, (2, 4))
    batch = mg.TaskBatch(x, y, x + 0.1, y)
    algo = mg.MAML(model, learner=MTNet(mg.SGD(0.3), hard=False, fixed_noise=fixed_noise(model)),
                   loss="cross_entropy", vectorize=False)
    check_second_order_fd(algo, batch)


def test_vmap_equals_loop():
    check_vmap_equals_loop(lambda vec: make_tnet("second_order", {}, vectorize=vec), sine_batch(3))
    check_vmap_equals_loop(lambda vec: make_mtnet("second_order", {}, vectorize=vec), sine_batch(3))


# --- 001 section 6.2 -------------------------------------------------------------------------------

@pytest.mark.parametrize("learner_kind", ["tnet", "mtnet"])
def test_scaling_T_and_W_turns_step_a1_into_step_a0(learner_kind):
    a0, a1 = 0.01, 0.37
    model = random_tnet()
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        for k, p in scaled.named_parameters():
            p.mul_(math.sqrt(a0 / a1) if is_transform(k) else math.sqrt(a1 / a0))

    def rule(a):
        return TNet(mg.SGD(a)) if learner_kind == "tnet" else MTNet(mg.SGD(a), mask="threshold")

    x, y = torch.randn(8, 1, dtype=D), torch.randn(8, 1, dtype=D)
    qx = torch.randn(5, 1, dtype=D)
    ref, alt = mg.MAML(model, learner=rule(a0)), mg.MAML(scaled, learner=rule(a1))
    if learner_kind == "mtnet":
        with torch.no_grad():
            for m in (ref, alt):
                for v in m.meta_params().values():
                    v.copy_(torch.linspace(-1, 1, v.numel(), dtype=D))
    assert torch.allclose(ref.predict(ref.params(), qx), alt.predict(alt.params(), qx), atol=1e-14)
    fast0, fast1 = ref.adapt(x, y, steps=2), alt.adapt(x, y, steps=2)
    assert torch.allclose(ref.predict(fast0, qx), alt.predict(fast1, qx), rtol=1e-10, atol=1e-12)
    for layer in ("net.0", "net.2", "net.4"):  # T W is the same matrix after the steps
        assert torch.allclose(fast0[layer + ".T"] @ fast0[layer + ".weight"],
                              fast1[layer + ".T"] @ fast1[layer + ".weight"], atol=1e-12)
    # ...while an unscaled step of size a1 is different.
    plain = mg.MAML(copy.deepcopy(model), learner=rule(a1))
    if learner_kind == "mtnet":
        with torch.no_grad():
            for v in plain.meta_params().values():
                v.copy_(torch.linspace(-1, 1, v.numel(), dtype=D))
    assert not torch.allclose(plain.predict(plain.adapt(x, y, steps=2), qx), ref.predict(fast0, qx), atol=1e-6)


# --- registry and training ----------------------------------------------------------------------

def test_registry_builders_convert_the_model():
    model = small_mlp()
    m, learner = registry.build("inner", registry.LEARNERS, "tnet", {"lr": 0.05}, model)
    assert m is not model and isinstance(learner, TNet) and learner.nominal_lr == 0.05
    assert any(is_transform(k) for k, _ in m.named_parameters())
    m2, l2 = registry.build("inner", registry.LEARNERS, "mtnet", {"temperature": 0.5, "mask": "threshold"}, model)
    assert isinstance(l2, MTNet) and l2.temperature == 0.5 and l2.mask == "threshold"
    with pytest.raises(ValueError, match="inner.tau"):
        registry.build("inner", registry.LEARNERS, "mtnet", {"tau": 1.0}, model)


def test_mtnet_training_lowers_loss_and_moves_logits():
    torch.manual_seed(0)
    algo = mg.MAML(to_tnet(mg.models.MLP([1, 16, 16, 1], init="normal")), learner=MTNet(mg.SGD(0.01)))
    task = mg.tasks.Sinusoid(frequency=(0.8, 1.2), phase=(-math.pi, 0.0))
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = algo.meta_loss(task.sample(8, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20
    assert update_fraction(algo.meta_params()) != 0.5
    assert all(not torch.equal(p, torch.eye(p.shape[0])) for k, p in algo.params().items() if is_transform(k))


def test_conv4_mtnet_vmapped_meta_gradient():
    torch.manual_seed(0)
    model = to_tnet(Conv4(n_way=2, channels=1, image_size=6, hidden=3, blocks=2).double())
    x = torch.randn(2, 4, 1, 6, 6, dtype=D)
    y = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]])
    # both ways of applying T: composed into the first layer's kernel (9 <= 4 images x 3 x 3 output
    # pixels), a 1x1 convolution after the second (27 > 4 x 2 x 2)
    convs = [m for m in model.modules() if isinstance(m, TConv2d)]
    assert convs[0]._compose(x[0]) and not convs[1]._compose(torch.zeros(4, 3, 3, 3, dtype=D))
    algo = mg.MAML(model, learner=MTNet(mg.SGD(0.3), hard=False, fixed_noise=fixed_noise(model)),
                   loss="cross_entropy", vectorize=True)
    check_second_order_fd(algo, mg.TaskBatch(x, y, x.flip(-1), y))
