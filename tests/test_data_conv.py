"""The convolution of data (``models/data_conv.py``): torch's values and derivatives of every order in
the weight and bias, routed by ``metagrad.exact`` for inputs that need no gradient, and MAML's
meta-gradients unchanged by the routing (float64)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import metagrad as mg
import metagrad.exact
from metagrad.exact import constant_input_convolutions, exact_mode
from metagrad.models.conv4 import Conv4
from metagrad.models.data_conv import conv2d_of_data
from metagrad.models.tnet import to_tnet

SETTINGS = [{"stride": 2, "padding": 1}, {"padding": (1, 2), "dilation": 2}, {"groups": 2, "padding": 1, "stride": (1, 2)}]


@pytest.mark.parametrize("kw", SETTINGS)
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_derivatives_are_torchs_to_second_order(kw: dict, bias: bool) -> None:
    g = torch.Generator().manual_seed(0)
    c_in = 2 * kw.get("groups", 1)
    x = torch.randn(3, c_in, 7, 7, generator=g, dtype=torch.float64)
    w = torch.randn(4, c_in // kw.get("groups", 1), 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    ours = conv2d_of_data(x, w, b, **kw)
    assert torch.equal(ours, F.conv2d(x, w, b, **kw))
    inputs = (w, b) if bias else (w,)
    f = (lambda w, b: conv2d_of_data(x, w, b, **kw)) if bias else (lambda w: conv2d_of_data(x, w, None, **kw))
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_third_derivative_matches_torchs_convolution() -> None:
    # a cubic of the output: its third derivative in w runs through both Functions twice over
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64)
    w = torch.randn(3, 1, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, 1, 3, 3, generator=g, dtype=torch.float64)

    def third(conv) -> torch.Tensor:
        loss = conv(x, w, None, 2, 1).pow(3).sum()
        (g1,) = torch.autograd.grad(loss, w, create_graph=True)
        (g2,) = torch.autograd.grad((g1 * v).sum(), w, create_graph=True)
        return torch.autograd.grad((g2 * v).sum(), w)[0]
    torch.testing.assert_close(third(conv2d_of_data), third(F.conv2d), rtol=1e-10, atol=1e-12)


def test_forward_mode_and_forward_over_reverse_match_torchs_convolution() -> None:
    from torch.func import grad, jvp
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64)
    w, wt = (torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64) for _ in range(2))
    b, bt = (torch.randn(3, generator=g, dtype=torch.float64) for _ in range(2))
    for tangents in ((wt, bt), (torch.zeros_like(wt), bt)):
        ours, ref = (jvp(lambda w, b: conv(x, w, b, 2, 1), (w, b), tangents)[1] for conv in (conv2d_of_data, F.conv2d))
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    hvp = [jvp(grad(lambda w: conv(x, w, b, 2, 1).pow(3).sum()), (w,), (wt,))[1] for conv in (conv2d_of_data, F.conv2d)]
    torch.testing.assert_close(hvp[0], hvp[1], rtol=1e-10, atol=1e-10)


def test_exact_routes_only_data_inputs_and_only_when_asked() -> None:
    x = torch.randn(2, 1, 8, 8)
    w = torch.randn(3, 1, 3, 3, requires_grad=True)
    name = lambda y: type(y.grad_fn).__name__   # noqa: E731
    with exact_mode():
        assert name(F.conv2d(x, w, None, 2, 1)) == "ConvolutionBackward0"          # not asked
        with constant_input_convolutions():
            assert name(F.conv2d(x, w, None, 2, 1)) == "_ConvBackward"           # the images: routed
            assert name(torch.nn.Conv2d(1, 3, 3, padding=1)(x)) == "_ConvBackward"
            assert name(F.conv2d(x, w, padding="same")) == "ConvolutionBackward0"  # string padding: torch's
            assert name(F.conv2d(x.requires_grad_(), w)) == "ConvolutionBackward0"  # an activation: torch's
        assert name(F.conv2d(x.detach(), w)) == "ConvolutionBackward0"             # the context restored


def _batch(tasks: int = 2, seed: int = 1) -> mg.TaskBatch:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(tasks, 6, 1, 12, 12, generator=g, dtype=torch.float64)
    qx = torch.rand(tasks, 6, 1, 12, 12, generator=g, dtype=torch.float64)
    y = torch.arange(3).repeat_interleave(2).expand(tasks, -1).clone()
    return mg.TaskBatch(sx, y, qx, y.clone())


def _metagrad(learner: str, steps: int, mode: str = "second_order", vectorize: bool = True) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = Conv4(n_way=3, image_size=12, hidden=4).double()
    if learner == "tnet":   # every conv y = T (W x + b): the images' one inside TConv2d's forward
        model = to_tnet(model)
    kwargs = {"learner": {"meta_sgd": mg.MetaSGD(lr=0.3), "tnet": mg.TNet()}[learner]} if learner != "sgd" else {}
    algo = mg.MAML(model, inner_lr=0.3, inner_steps=steps, mode=mode, loss="cross_entropy", vectorize=vectorize,
                   **kwargs)
    algo.meta_loss(_batch().to(torch.float64)).backward()
    return [p.grad.clone() for p in algo.parameters()]


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = metagrad.exact.conv2d_of_data

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)
    monkeypatch.setattr(metagrad.exact, "conv2d_of_data", counted)
    return calls


@pytest.mark.parametrize("learner,vectorize", [("sgd", True), ("sgd", False), ("meta_sgd", True), ("tnet", True)])
def test_maml_metagradients_are_unchanged_by_the_routing(monkeypatch: pytest.MonkeyPatch, learner: str,
                                                         vectorize: bool) -> None:
    calls = _counting(monkeypatch)
    routed = _metagrad(learner, steps=3, vectorize=vectorize)
    assert calls[0] > 0   # second order with several steps: the images' convolutions were routed
    monkeypatch.setattr(metagrad.exact, "routable", lambda *a, **k: False)
    plain = _metagrad(learner, steps=3, vectorize=vectorize)
    for a, b in zip(routed, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode,steps", [("first_order", 3), ("second_order", 1), ("hessian_free", 2)])
def test_the_routing_stays_off_where_it_saves_nothing(monkeypatch: pytest.MonkeyPatch, mode: str, steps: int) -> None:
    calls = _counting(monkeypatch)
    _metagrad("sgd", steps=steps, mode=mode)
    assert calls[0] == 0
