"""Module zoo contract: every standard layer gives the exact meta-gradient on every path.

For each small float64 model below and each mode (``second_order``, ``first_order``,
``hessian_free``), the meta-gradient of ``MAML.meta_loss`` on the vmapped path equals the one
on the per-task loop (``vectorize=False``) and the one of an independently written plain
autograd loop (``_reference``), to 1e-8 relative; second order also matches central finite
differences of the meta-loss. Before ``metagrad.exact`` the vmapped second-order meta-gradient
was wrong by 1e-3 to 5e-2 for LayerNorm, BatchNorm and InstanceNorm models (functorch's
batching rules of the fused norm kernels are wrong for double backward in torch 2.13), and
recurrent and attention models raised.
"""
from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

import metagrad as mg
from conftest import directional_fd_errors, rel_err

H, B, K, STEPS, LR = 6, 3, 5, 2, 0.1
# hessian_free's step: large, so that the float64 round-off of the two finite-difference
# gradients (amplified by 1 / (d a ||u||)) stays far below 1e-8; its truncation error is the
# same in metagrad and the reference, which use the same formula.
DELTA = 0.5
DT = torch.float64


class LastStep(nn.Module):
    """``Linear(1, H) -> core -> last time step -> Linear(H, 1)`` on ``[K, T, 1]`` sequences."""

    def __init__(self, core: nn.Module, out: int = H) -> None:
        super().__init__()
        self.embed, self.core, self.head = nn.Linear(1, H), core, nn.Linear(out, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.core(self.embed(x))
        h = h[0] if isinstance(h, tuple) else h  # recurrent: (output, hidden); attention: (out, w)
        return self.head(torch.tanh(h[:, -1]))


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` used as self-attention (returns the attention output only)."""

    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.mha, self.need_weights = nn.MultiheadAttention(H, 2, batch_first=True), need_weights

    def forward(self, h: Tensor) -> Tensor:
        return self.mha(h, h, h, need_weights=self.need_weights)[0]


class Sdpa(nn.Module):
    """One head of attention written with ``F.scaled_dot_product_attention`` (causal)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(H, 3 * H)

    def forward(self, h: Tensor) -> Tensor:
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class UserNorm(nn.Module):
    """A user's own module that calls the functional norms directly in its forward."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.out = nn.Linear(1, H), nn.Linear(H, 1)
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, H))

    def forward(self, x: Tensor) -> Tensor:
        h = F.layer_norm(self.inp(x), (H,), self.gain, None)
        h = F.group_norm(h.unsqueeze(-1), 3, self.gain, self.gain)
        return self.out(torch.tanh(h.squeeze(-1)))


def _mlp(norm: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(1, H), norm, nn.Tanh(), nn.Linear(H, 1))


def _conv(dim: int, norm: Callable[[int], nn.Module] | None) -> nn.Module:
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dim - 1](1, 2, 3, padding=1)
    side = (5, 3, 2)[dim - 1]
    return nn.Sequential(conv, *([norm(2)] if norm else []), nn.Tanh(), nn.Flatten(), nn.Linear(2 * side ** dim, 1))


# name -> (model builder, input kind)
ZOO: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "none": (lambda: _mlp(nn.Identity()), "vec"),
    "LayerNorm": (lambda: _mlp(nn.LayerNorm(H)), "vec"),
    "RMSNorm": (lambda: _mlp(nn.RMSNorm(H)), "vec"),
    "GroupNorm": (lambda: nn.Sequential(nn.Linear(1, H), nn.Unflatten(1, (H, 1)), nn.GroupNorm(3, H),
                                        nn.Flatten(), nn.Tanh(), nn.Linear(H, 1)), "vec"),
    "BatchNorm1d": (lambda: _mlp(nn.BatchNorm1d(H, track_running_stats=False)), "vec"),
    "BatchNorm1d-running": (lambda: _mlp(nn.BatchNorm1d(H)), "vec"),
    "BatchNorm2d": (lambda: _conv(2, nn.BatchNorm2d), "img2"),
    "BatchNorm3d": (lambda: _conv(3, nn.BatchNorm3d), "img3"),
    "InstanceNorm1d": (lambda: _conv(1, lambda c: nn.InstanceNorm1d(c, affine=True)), "img1"),
    "InstanceNorm2d": (lambda: _conv(2, lambda c: nn.InstanceNorm2d(c, affine=True)), "img2"),
    "InstanceNorm3d": (lambda: _conv(3, lambda c: nn.InstanceNorm3d(c, affine=True)), "img3"),
    "Conv1d": (lambda: _conv(1, None), "img1"),
    "Conv2d": (lambda: _conv(2, None), "img2"),
    "Embedding": (lambda: nn.Sequential(nn.Embedding(5, 2), nn.Flatten(), nn.Tanh(), nn.Linear(6, 1)), "tokens"),
    "Dropout-eval": (lambda: _mlp(nn.Dropout(0.3)).eval(), "vec"),
    "RNN": (lambda: LastStep(nn.RNN(H, H, batch_first=True)), "seq"),
    "GRU": (lambda: LastStep(nn.GRU(H, H, batch_first=True, bidirectional=True), 2 * H), "seq"),
    "LSTM": (lambda: LastStep(nn.LSTM(H, H, num_layers=2, batch_first=True)), "seq"),
    "MultiheadAttention": (lambda: LastStep(SelfAttention(need_weights=False)), "seq"),
    "MultiheadAttention-weights": (lambda: LastStep(SelfAttention(need_weights=True)), "seq"),
    "TransformerEncoderLayer": (lambda: LastStep(nn.TransformerEncoderLayer(H, 2, 8, dropout=0.0, batch_first=True)), "seq"),
    "scaled_dot_product_attention": (lambda: LastStep(Sdpa()), "seq"),
    "user module (F.layer_norm)": (UserNorm, "vec"),
}
MODES = ("second_order", "first_order", "hessian_free")


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = ZOO[name][0]().to(DT)
    with torch.no_grad():  # non-trivial affine parameters, so that their gradients are tested
        for n, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in n.lower() or n.split(".")[-2:-1] != ["weight"]):
                p.add_(0.1 * torch.randn(p.shape, dtype=DT))
    return model


def _batch(kind: str, seed: int = 1) -> mg.TaskBatch:
    """Sine-like regression tasks ``y = a sin(sum(x) + phase)``, shaped for the model's input."""
    g = torch.Generator().manual_seed(seed)
    shape = {"vec": (1,), "seq": (3, 1), "img1": (1, 5), "img2": (1, 3, 3), "img3": (1, 2, 2, 2),
             "tokens": (3,)}[kind]

    def draw() -> Tensor:
        if kind == "tokens":
            return torch.randint(0, 5, (B, K, *shape), generator=g)
        return torch.rand(B, K, *shape, generator=g, dtype=DT) * 4 - 2

    amp = 0.5 + torch.rand(B, 1, 1, generator=g, dtype=DT)
    phase = math.pi * torch.rand(B, 1, 1, generator=g, dtype=DT)

    def target(x: Tensor) -> Tensor:
        s = x.to(DT).flatten(2).sum(-1, keepdim=True) / 3
        return amp * torch.sin(s + phase)

    sx, qx = draw(), draw()
    return mg.TaskBatch(sx, target(sx), qx, target(qx))


def _grads(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]


def metagrad_of(model: nn.Module, mode: str, batch: mg.TaskBatch, vectorize: bool) -> list[Tensor]:
    algo = mg.MAML(model, inner_lr=LR, inner_steps=STEPS, mode=mode, hf_delta=DELTA, vectorize=vectorize)
    return _grads(algo.meta_loss(batch), list(model.parameters()))


def _reference(model: nn.Module, mode: str, batch: mg.TaskBatch) -> list[Tensor]:
    """MAML's meta-gradient written independently: a plain autograd loop over tasks with the
    model's own kernels (the math attention backend, which supports double backward), on copies
    of its buffers. ``hessian_free`` back-propagates ``u <- u + (g(w + d v) - g(w - d v)) / 2d`` with
    ``v = -a u`` (``u`` carries the 1/B of the mean over tasks: the cotangent of the inner gradient) through the stored trajectory by hand
    (Fallah et al. 2020, eq. (9)-(11); DESIGN.md section 2)."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def loss(w: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            pred = functional_call(model, {**w, **{k: b.clone() for k, b in buffers.items()}}, (x,))
        return ((pred - y) ** 2).mean()

    def grad(w: dict[str, Tensor], x: Tensor, y: Tensor, create: bool) -> dict[str, Tensor]:
        gs = torch.autograd.grad(loss(w, x, y), list(w.values()), create_graph=create, allow_unused=True)
        return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(w.items(), gs)}

    total: list[Tensor] = [torch.zeros_like(p) for p in params.values()]
    for i in range(B):
        sx, sy, qx, qy = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
        if mode == "hessian_free":
            w, traj = {k: v.detach().requires_grad_() for k, v in params.items()}, []
            for _ in range(STEPS):
                traj.append(w)
                w = {k: (v - LR * g).detach().requires_grad_() for (k, v), g in zip(w.items(), grad(w, sx, sy, False).values())}
            # The meta-loss is the mean over tasks: the cotangent shifted along carries 1/B.
            u = {k: g / B for k, g in grad(w, qx, qy, False).items()}
            for w in reversed(traj):  # the step's cotangent v = -a u is what is shifted along
                plus = grad({k: (v - DELTA * LR * u[k]).detach().requires_grad_() for k, v in w.items()}, sx, sy, False)
                minus = grad({k: (v + DELTA * LR * u[k]).detach().requires_grad_() for k, v in w.items()}, sx, sy, False)
                u = {k: u[k] + (plus[k] - minus[k]) / (2 * DELTA) for k in u}
            g_task = list(u.values())
        else:
            w = dict(params)
            for _ in range(STEPS):
                w = {k: v - LR * g for (k, v), g in zip(w.items(), grad(w, sx, sy, mode == "second_order").values())}
            g_task = _grads(loss(w, qx, qy) / B, list(params.values()))
        total = [t + g for t, g in zip(total, g_task)]
    return total


def differences(name: str, mode: str) -> dict[str, float]:
    """Relative differences of the meta-gradient: vmap vs loop, vmap vs the independent loop,
    and (second order) the largest directional finite-difference error on the vmapped path."""
    model, batch = _model(name), _batch(ZOO[name][1])
    vm = metagrad_of(model, mode, batch, True)
    out = {"vmap-loop": rel_err(vm, metagrad_of(model, mode, batch, False)),
           "vmap-ref": rel_err(vm, _reference(model, mode, batch))}
    if mode == "second_order":
        algo = mg.MAML(model, inner_lr=LR, inner_steps=STEPS, mode=mode, vectorize=True)
        out["fd"] = max(directional_fd_errors(lambda: algo.meta_loss(batch), list(model.parameters()), 2, 1e-6))
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(ZOO))
def test_metagradient_is_exact_on_every_path(name: str, mode: str) -> None:
    d = differences(name, mode)
    assert d["vmap-loop"] < 1e-8 and d["vmap-ref"] < 1e-8, d
    if mode == "second_order":
        assert d["fd"] < 1e-5, d


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LayerNorm", "BatchNorm1d-running"])
def test_compiled_path_gives_the_exact_metagradient(name: str) -> None:
    # compile=True traces the exact ops too (about a minute to compile: marked slow).
    model, batch = _model(name), _batch(ZOO[name][1])
    algo = mg.MAML(model, inner_lr=LR, inner_steps=STEPS, vectorize=True, compile=True)
    compiled = _grads(algo.meta_loss(batch), list(model.parameters()))
    assert rel_err(compiled, _reference(model, "second_order", batch)) < 1e-8


def test_batchnorm_running_statistics_are_neither_used_nor_updated_in_training_mode() -> None:
    model = _model("BatchNorm1d-running")
    before = {k: b.clone() for k, b in model.named_buffers()}
    algo = mg.MAML(model, inner_lr=LR, inner_steps=STEPS)
    algo.meta_loss(_batch("vec")).backward()
    algo.adapt(_batch("vec").support_x[0], _batch("vec").support_y[0])
    for k, b in model.named_buffers():
        assert torch.equal(b, before[k]), k


def test_dropout_draws_per_task_masks_and_its_metagradient_matches_finite_differences() -> None:
    # Training-mode dropout under vmap draws a different mask per task (randomness="different");
    # with the global seed fixed before each evaluation the meta-loss is a deterministic function
    # of the parameters, so its exact meta-gradient can be checked numerically.
    model = _mlp(nn.Dropout(0.3)).to(DT)
    batch = _batch("vec")
    algo = mg.MAML(model, inner_lr=LR, inner_steps=STEPS, vectorize=True)

    def loss() -> Tensor:
        torch.manual_seed(3)
        return algo.meta_loss(batch)
    assert max(directional_fd_errors(loss, list(model.parameters()), 2, 1e-6)) < 1e-5
    same = mg.TaskBatch(*(t[:1].expand(B, *t.shape[1:]) for t in
                          (batch.support_x, batch.support_y, batch.query_x, batch.query_y)))
    torch.manual_seed(3)
    per_task = algo.task_losses(same)
    assert not torch.allclose(per_task[0], per_task[1])  # the same task, different masks


if __name__ == "__main__":  # prints the table of the README / issue 39
    torch.set_num_threads(1)
    print("| module | " + " | ".join(f"{m} vmap-loop | vmap-ref" for m in MODES) + " | second_order FD |")
    for name in ZOO:
        cells, fd = [], "-"
        for mode in MODES:
            try:
                d = differences(name, mode)
                cells += [f"{d['vmap-loop']:.1e}", f"{d['vmap-ref']:.1e}"]
                fd = f"{d['fd']:.1e}" if "fd" in d else fd
            except Exception as e:  # noqa: BLE001 - a table of what fails
                cells += [f"error: {str(e).splitlines()[0][:60]}", "-"]
        print(f"| {name} | " + " | ".join(cells) + f" | {fd} |")
