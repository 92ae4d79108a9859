"""Batch norm with batch statistics as one ``torch.autograd.Function``: few kernels, exact to any order.

The equation (Ioffe and Szegedy 2015), per channel ``c`` with ``m`` values over the other axes::

    mu = mean(x),  r = 1 / sqrt(mean((x - mu)^2) + eps),  x_hat = (x - mu) r,  y = w x_hat + b

and its backward, for cotangents ``g_y`` (of ``y``), ``g_h`` (of ``x_hat``), ``g_r`` (of ``r``)::

    G   = w g_y + g_h
    g_x = r (G - mean(G) - x_hat mean(G x_hat)) - r^2 x_hat g_r / m
    g_w = sum(g_y x_hat),  g_b = sum(g_y)

Why a Function instead of the same equation in elementary ops (``conv4.batch_norm`` before): autograd
through ``mean``, ``sub``, ``mul``, ``rsqrt`` records about a dozen full-size passes per call and
twice that in the double backward of MAML's second order; on conv4 Omniglot (meta-batch 32) that
was a quarter of a meta-iteration. Here the forward is 4 passes and the backward 3.

Why it stays exact to any order: the backward is written with differentiable elementary ops of
``g_y``, ``x_hat``, ``r`` and ``w``, and ``x_hat`` and ``r`` are *outputs* of the Function (the
caller drops them), so autograd differentiates the backward through them back to ``x`` by this
same Function, with ``g_h`` and ``g_r`` set. Second- and third-order meta-gradients are checked
against float64 finite differences in ``tests/test_conv4.py``.

Why its own ``vmap`` rule: under ``torch.func.vmap`` over tasks it runs once on the physical
tensor, reducing over every axis but the task axis and the channel axis wherever they lie (the
grouped convolution vmap makes of per-task weights returns the tasks on axis 1), so nothing is
copied to move them; each task still has its own statistics, as per-task calls would.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["batch_norm_train", "channel_affine", "standardize"]


def _reduced(x: Tensor, keep: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(i for i in range(x.dim()) if i not in keep)


def standardize(x: Tensor, dims: Sequence[int], eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over ``dims`` with the biased variance, from elementary ops
    (so autograd differentiates it to any order; ``exact``'s norms and the compiled path use it)."""
    centred = x - x.mean(dim=tuple(dims), keepdim=True)
    var = (centred * centred).mean(dim=tuple(dims), keepdim=True)
    return centred * torch.rsqrt(var + eps)


def channel_affine(y: Tensor, weight: Optional[Tensor], bias: Optional[Tensor]) -> Tensor:
    """``y * weight + bias`` with per-channel ``weight`` and ``bias`` on axis 1 of ``y [N, C, ...]``."""
    shape = (1, y.shape[1]) + (1,) * (y.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    return y if bias is None else y + bias.reshape(shape)


def _centre(g: Tensor, x_hat: Tensor, mean_g: Tensor, mean_gh: Tensor) -> Tensor:
    """``g - mean(g) - x_hat mean(g x_hat)`` given the two per-channel means: one full-size pass,
    then an in-place per-channel step (measured on CPU: faster than a product and a difference,
    and than ``addcmul`` with two per-channel operands)."""
    return torch.addcmul(g, x_hat, -mean_gh).sub_(mean_g)


class _BatchNorm(torch.autograd.Function):
    """``(y, x_hat, r)`` of the module docstring for ``x`` normalised over every axis but ``keep``;
    ``weight``/``bias`` are ``None`` or broadcastable to ``r``'s shape (size 1 on reduced axes)."""

    @staticmethod
    def forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
                keep: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
        dims = _reduced(x, keep)
        centred = x - x.mean(dim=dims, keepdim=True)
        rstd = torch.rsqrt((centred * centred).mean(dim=dims, keepdim=True) + eps)
        x_hat = centred.mul_(rstd)  # centred is this call's own buffer
        # mul then add_: torch.addcmul with two per-channel (broadcast) operands is slower on CPU
        y = x_hat.clone() if weight is None else x_hat * weight
        if bias is not None:
            y.add_(bias)
        return y, x_hat, rstd

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        _, weight, bias, _, keep = inputs
        _, x_hat, rstd = output
        ctx.save_for_backward(x_hat, rstd, weight)
        ctx.keep = keep
        ctx.bias_shape = None if bias is None else bias.shape
        # Only y's cotangent is set on a first backward: no zero tensors for x_hat's and r's.
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, g_y: Optional[Tensor], g_h: Optional[Tensor],
                 g_r: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
        x_hat, rstd, weight = ctx.saved_tensors
        dims = _reduced(x_hat, ctx.keep)
        m = x_hat.numel() // rstd.numel()
        g_x = g_w = g_b = None
        # Out of place where autograd may record this backward (second order, or an inner loop's
        # graph): an in-place product would make it clone its operand to differentiate it.
        if g_y is not None:
            # r w (g_y - mean(g_y) - x_hat mean(g_y x_hat)), with the sums shared with g_w and g_b
            coef = rstd if weight is None else rstd * weight
            s_yh = (g_y * x_hat).sum(dim=dims, keepdim=True)
            s_y = g_y.sum(dim=dims, keepdim=True)
            if weight is not None and ctx.needs_input_grad[1]:
                g_w = s_yh.sum_to_size(weight.shape)
            if ctx.bias_shape is not None and ctx.needs_input_grad[2]:
                g_b = s_y.sum_to_size(ctx.bias_shape)
            g_x = _centre(g_y, x_hat, s_y / m, s_yh / m) * coef
        if g_h is not None:  # only when differentiating a backward (second order and above)
            s_h = g_h.sum(dim=dims, keepdim=True)
            s_hh = (g_h * x_hat).sum(dim=dims, keepdim=True)
            extra = _centre(g_h, x_hat, s_h / m, s_hh / m) * rstd
            g_x = extra if g_x is None else g_x + extra
        if g_r is not None:
            extra = x_hat * (-g_r * rstd * rstd / m)
            g_x = extra if g_x is None else g_x + extra
        return g_x, g_w, g_b, None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
             eps: float, keep: tuple[int, ...]) -> tuple[tuple[Tensor, ...], tuple[int, ...]]:
        xd, wd, bd = in_dims[:3]
        if xd is None:  # shared input, batched affine parameters
            x, xd = x.unsqueeze(0).expand(info.batch_size, *x.shape), 0
        # Keep the batch axis where it is and shift the kept logical axes past it.
        keep = (xd, *(k if k < xd else k + 1 for k in keep))

        def place(t: Optional[Tensor], d: Optional[int]) -> Optional[Tensor]:
            if t is None:
                return None
            return t.unsqueeze(xd) if d is None else t.movedim(d, xd)
        out = _BatchNorm.apply(x, place(weight, wd), place(bias, bd), eps, keep)
        return out, (xd, xd, xd)


def batch_norm_train(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float = 1e-5) -> Tensor:
    """``y = weight * (x - mean(x)) / sqrt(var(x) + eps) + bias`` per channel of ``x [K, C, ...]``,
    with the mean and biased variance over every axis but the channel axis (Ioffe and Szegedy
    2015); exact derivatives of any order, under ``vmap`` too (module docstring)."""
    if torch.compiler.is_compiling():
        # torch.compile cannot trace a Function's own vmap rule under vmap ("vmap over ApplyTemplate"):
        # the same equation in elementary ops there, exact to any order too, and fused by the compiler
        return channel_affine(standardize(x, _reduced(x, (1,)), eps), weight, bias)
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    w = None if weight is None else weight.reshape(shape)
    b = None if bias is None else bias.reshape(shape)
    return _BatchNorm.apply(x, w, b, eps, (1,))[0]
