"""A 2-d convolution of data that needs no gradient, whose derivatives of every order skip it.

Second-order MAML differentiates each inner step's gradient again (Finn et al. 2017). For the
first convolution of a network, ``y = conv(x, w)`` with the images ``x`` as input, the inner
gradient holds the weight adjoint ``W*(x, g) = d<conv(x, w), g>/dw`` and the meta-gradient
differentiates it in ``g`` (and through ``g`` in ``w``). torch 2.13's double backward of a
convolution (``_convolution_double_backward``) also computes the images' gradient there, a
transposed convolution nothing reads, once per inner step, as a grouped convolution under
``vmap`` (about 30 ms a step on 20-way Omniglot, meta-batch 16, one CPU thread).

Here the convolution and its weight adjoint are two ``autograd.Function``s closed under
differentiation, both linear:

    conv(x, w) + b   backward in w:  W*(x, g_y), in b: the sum of g_y   (never a gradient of x)
    W*(x, g)         backward in g:  conv(x, g_w)

so every derivative is one of the two again, each computed only where it is needed (forward mode
too: ``jvp``, and so ``torch.func``'s forward-over-reverse Hessian-vector products), and exact
to any order (float64 ``gradcheck``/``gradgradcheck`` and MAML meta-gradients equal to torch's
own convolution: ``tests/test_data_conv.py``). Their ``vmap`` rules are generated from torch's
batching rules for ``conv2d`` and ``convolution_backward``.

``metagrad.exact`` routes ``F.conv2d`` here, for inputs that need no gradient, inside
``constant_input_convolutions()``; ``inner.adapt`` enters it for second order with more than
one inner step, where the saving shows (20-way Omniglot, five steps: 4% per meta-iteration,
median of 10 interleaved rounds on one thread, 95% interval 1-11%: ``benchmarks/bench_data_conv.py``). With one step there is one wasted transposed
convolution to save and functorch wraps each call of a custom Function at a cost of its own
(5-way, one step: no change; first order, where no double backward exists: 7% slower), so it
is not entered there. ``benchmarks/README.md`` has the measurements.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["conv2d_of_data", "routable"]

_Conf = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]   # stride, padding, dilation, groups


class _Conv(torch.autograd.Function):
    """``conv(x, w) + b`` with ``x`` constant: its backward is the weight adjoint and the bias's sum only."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, w: Tensor, b: Optional[Tensor], conf: _Conf) -> Tensor:
        stride, padding, dilation, groups = conf
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, w, b, conf = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.conf, ctx.w_shape = conf, tuple(w.shape)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[None, Optional[Tensor], Optional[Tensor], None]:
        x, = ctx.saved_tensors
        gw = _WeightAdjoint.apply(x, g, ctx.w_shape, ctx.conf) if ctx.needs_input_grad[1] else None
        gb = g.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None   # an ordinary op: autograd differentiates it
        return None, gw, gb, None

    @staticmethod
    def jvp(ctx: Any, x_t: Optional[Tensor], w_t: Optional[Tensor], b_t: Optional[Tensor], conf_t: Any) -> Tensor:
        x, = ctx.saved_tensors   # linear in (w, b): the tangent is the convolution of the tangents
        return _Conv.apply(x, x.new_zeros(ctx.w_shape) if w_t is None else w_t, b_t, ctx.conf)


class _WeightAdjoint(torch.autograd.Function):
    """``W*(x, g) = d<conv(x, w), g>/dw``, linear in ``g``; its backward in ``g`` is ``conv(x, .)``."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, g: Tensor, w_shape: tuple[int, ...], conf: _Conf) -> Tensor:
        stride, padding, dilation, groups = conf
        w = g.new_zeros(()).expand(w_shape)   # convolution_backward reads only the weight's shape here
        return torch.ops.aten.convolution_backward(g, x, w, None, list(stride), list(padding), list(dilation),
                                                   False, [0, 0], groups, [False, True, False])[1]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, g, w_shape, conf = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.conf, ctx.w_shape = conf, w_shape

    @staticmethod
    def backward(ctx: Any, gw: Tensor) -> tuple[None, Optional[Tensor], None, None]:
        x, = ctx.saved_tensors
        return None, (_Conv.apply(x, gw, None, ctx.conf) if ctx.needs_input_grad[1] else None), None, None

    @staticmethod
    def jvp(ctx: Any, x_t: Optional[Tensor], g_t: Optional[Tensor], w_shape_t: Any, conf_t: Any) -> Tensor:
        x, = ctx.saved_tensors   # linear in g
        return _WeightAdjoint.apply(x, g_t, ctx.w_shape, ctx.conf)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def routable(input: Tensor, weight: Tensor, padding: Any = 0) -> bool:
    """Whether ``conv2d_of_data`` computes this call: a batched 4-d input that needs no gradient (the
    images, not an activation) and numeric padding (``"same"``/``"valid"`` stay with torch)."""
    return (not input.requires_grad and input.dim() == 4 and weight.dim() == 4 and not isinstance(padding, str)
            and not torch.compiler.is_compiling())


def conv2d_of_data(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: int | Sequence[int] = 1,
                   padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, groups: int = 1) -> Tensor:
    """``F.conv2d`` for an ``input`` that needs no gradient (``routable``): the same values and the
    same derivatives in ``weight`` and ``bias`` to any order, with no derivative ever computing the
    input's gradient (module docstring)."""
    return _Conv.apply(input, weight, bias, (_pair(stride), _pair(padding), _pair(dilation), int(groups)))
