"""The batch-norm ``autograd.Function``: exact first, second and third derivatives, plain and under
vmap (tasks on any axis, shared or per-task affine parameters), against float64 finite differences
and against the same equation in elementary ops."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import grad, vmap

from metagrad.models.batch_norm_function import batch_norm_train


def _reference(x: torch.Tensor, w, b, eps: float = 1e-5) -> torch.Tensor:
    """The equation in elementary ops: autograd through it is exact by construction."""
    dims = [0, *range(2, x.dim())]
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    c = x - x.mean(dims, keepdim=True)
    y = c * torch.rsqrt((c * c).mean(dims, keepdim=True) + eps)
    if w is not None:
        y = y * w.reshape(shape)
    return y if b is None else y + b.reshape(shape)


def _data(*shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()
    w = (1 + 0.3 * torch.randn(shape[1], generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(shape[1], generator=g, dtype=torch.float64).requires_grad_()
    return x, w, b


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 3, 3)])
def test_first_and_second_derivatives_match_finite_differences(shape: tuple[int, ...]) -> None:
    x, w, b = _data(*shape)
    fn = lambda x, w, b: batch_norm_train(x, w, b)  # noqa: E731
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))
    assert gradcheck(lambda x: batch_norm_train(x, None, None), (x,))
    assert gradgradcheck(lambda x: batch_norm_train(x, None, None), (x,))


def test_third_derivatives_match_the_elementary_equation() -> None:
    # MAML with two inner steps differentiates the norm three times.
    x, w, b = _data(3, 2, 4)
    v = torch.randn_like(x)

    def third(f):
        y = (f(x, w, b) * torch.sin(f(x, w, b))).sum()
        g1 = torch.autograd.grad(y, (x, w), create_graph=True)
        g2 = torch.autograd.grad((g1[0] * v).sum() + g1[1].pow(2).sum(), (x, w, b), create_graph=True)
        return torch.autograd.grad(sum((t * t).sum() for t in g2), (x, w, b))

    for got, ref in zip(third(batch_norm_train), third(_reference)):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("task_dim", [0, 1, 2])
@pytest.mark.parametrize("per_task_affine", [False, True])
def test_vmapped_meta_gradient_matches_a_loop_over_tasks(task_dim: int, per_task_affine: bool) -> None:
    # The Function's own vmap rule keeps the task axis where it lies; every task must still get its
    # own statistics, and the second-order gradient (grad of a grad, as in MAML) must be exact.
    tasks = 3
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(tasks, 4, 2, 3, generator=g, dtype=torch.float64).movedim(0, task_dim)
    w0 = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    b0 = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)

    def task_loss(norm, x, w, b):
        inner = lambda w, b: (norm(x, w, b) ** 3).sum()  # noqa: E731
        gw, gb = grad(inner, argnums=(0, 1))(w, b)
        return torch.tanh(norm(x, w - 0.1 * gw, b - 0.1 * gb)).pow(2).sum()

    def meta(norm, batched: bool):
        w, b = (w0.expand(tasks, 2) * 1.0, b0.expand(tasks, 2) * 1.0) if per_task_affine else (w0, b0)
        if batched:
            dims = (task_dim, 0, 0) if per_task_affine else (task_dim, None, None)
            loss = vmap(lambda x, w, b: task_loss(norm, x, w, b), in_dims=dims)(xs, w, b).sum()
        else:
            loss = sum(task_loss(norm, xs.select(task_dim, i), w[i] if per_task_affine else w,
                                 b[i] if per_task_affine else b) for i in range(tasks))
        return torch.autograd.grad(loss, (w0, b0))

    ref = meta(_reference, batched=False)
    for batched in (False, True):
        for got, want in zip(meta(batch_norm_train, batched), ref):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_forward_matches_torch() -> None:
    x, w, b = _data(6, 5, 4, 4)
    ref = torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    torch.testing.assert_close(batch_norm_train(x, w, b), ref, rtol=1e-10, atol=1e-12)
