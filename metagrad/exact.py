"""Exact second-order meta-gradients for any ``nn.Module``: ``exact_call`` and ``exact_mode()``.

MAML's second-order meta-gradient differentiates the inner gradient ``grad L_s(theta)`` again
(Finn et al. 2017; ``metagrad.metagrads``), under ``torch.func.vmap`` over tasks. In torch 2.13
the fused kernels of several standard layers are wrong or missing there:

* the affine norm kernels (``F.layer_norm``, ``F.batch_norm``, ``F.instance_norm``) have
  functorch batching rules that give wrong double backward (1e-3 to 6e-1 relative error on
  small models; upstream pytorch/functorch issue 534), silently;
* ``F.batch_norm`` with running statistics writes to them in place, which fails under ``grad``;
* the fused recurrent kernels (``nn.RNN``, ``nn.GRU``, ``nn.LSTM``) fail under ``vmap``;
* the CPU flash kernel of ``F.scaled_dot_product_attention`` (used by ``nn.MultiheadAttention``
  with ``need_weights=False`` and ``nn.TransformerEncoderLayer``) has no double backward.

Inside ``exact_mode()`` these functions are replaced, wherever they are called from (a module of
torch's, or a user's own forward calling them directly), by the same equations written with
elementary ops (``mean``, ``rsqrt``, ``matmul``, ``softmax``, ``sigmoid``, ...), whose batching
and derivative rules are exact to any order (batch norm with batch statistics is one
``autograd.Function`` whose backward is written in such ops, ``models.batch_norm_function``:
the same exactness with far fewer kernels). The replacement is a
``torch.overrides.TorchFunctionMode``: it sees the functional call, not the module, so nothing
is cloned or patched. Its presence also turns off the fused "fast paths" of
``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` (they check
``has_torch_function``), so they run their composite, differentiable code.

One replacement is for speed, not exactness: inside ``constant_input_convolutions()`` (which
``inner.adapt`` enters for second order with more than one step) an ``F.conv2d`` whose input needs
no gradient (the images) runs as ``models.data_conv``'s pair of Functions, so each inner step's
double backward skips the images' gradient that torch's computes and nothing reads.

Semantics (the same on the vmapped and the looped path):

* batch norm in training mode normalises each call with that call's batch statistics (one
  task's examples under ``vmap``: transductive, as ``models.conv4``), and never reads or updates
  the running statistics: they stay as the user left them (``exact_call`` gives each call its
  own copy of ``num_batches_tracked`` too). In eval mode the running statistics are used as
  constants. Instance norm: the same with per-example statistics.
* dropout is left to torch: a different mask per task and call (``vmap(randomness="different")``),
  exact given the masks; the looped path draws other masks than the vmapped one.
* packed sequences in recurrent modules are refused with a one-line error.
"""
from __future__ import annotations

import inspect
import math
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

from .errors import InputError
from .models.batch_norm_function import channel_affine as _channel_affine
from .models.batch_norm_function import standardize as _standardize
from .models.conv4 import batch_norm as _batch_norm
from .models.data_conv import conv2d_of_data, routable

__all__ = ["exact_call", "exact_mode", "EXACT_FUNCTIONS", "constant_input_convolutions"]


def layer_norm(input: Tensor, normalized_shape: Sequence[int], weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """``F.layer_norm``: ``y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias`` over the last
    ``len(normalized_shape)`` dimensions (Ba, Kiros and Hinton 2016)."""
    n = len(normalized_shape)
    if tuple(input.shape[input.dim() - n:]) != tuple(normalized_shape):
        raise InputError(f"exact layer_norm: input has shape {tuple(input.shape)}; expected it to "
                         f"end with normalized_shape {tuple(normalized_shape)}")
    y = _standardize(input, range(input.dim() - n, input.dim()), eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def rms_norm(input: Tensor, normalized_shape: Sequence[int], weight: Optional[Tensor] = None,
             eps: Optional[float] = None) -> Tensor:
    """``F.rms_norm``: ``y = x / sqrt(E[x^2] + eps) * weight`` over the last dimensions (Zhang and
    Sennrich 2019); ``eps`` defaults to the dtype's machine epsilon, as in torch."""
    eps = torch.finfo(input.dtype).eps if eps is None else eps
    dims = tuple(range(input.dim() - len(normalized_shape), input.dim()))
    y = input * torch.rsqrt((input * input).mean(dim=dims, keepdim=True) + eps)
    return y if weight is None else y * weight


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: Optional[float] = 0.1, eps: float = 1e-5) -> Tensor:
    """``F.batch_norm``: ``y = (x - m) / sqrt(v + eps) * weight + bias`` per channel (Ioffe and
    Szegedy 2015), with the batch's mean and biased variance in training mode (or without running
    statistics), else the running ones. The running statistics are never updated (module doc)."""
    if training or running_mean is None or running_var is None:
        if training and input.numel() // input.shape[1] == 1:
            raise InputError(f"exact batch_norm: input of shape {tuple(input.shape)} has one value per "
                             "channel; batch statistics need at least 2")
        return _batch_norm(input, weight, bias, eps)
    return _batch_norm(input, weight, bias, eps, stats=(running_mean, running_var))


def instance_norm(input: Tensor, running_mean: Optional[Tensor] = None, running_var: Optional[Tensor] = None,
                  weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``F.instance_norm``: ``y = (x - m) / sqrt(v + eps) * weight + bias`` with each example's
    per-channel statistics over the spatial axes (Ulyanov et al. 2016), or the running ones when
    ``use_input_stats`` is false; running statistics are never updated."""
    if input.dim() < 3:
        raise InputError(f"exact instance_norm: input has shape {tuple(input.shape)}; expected [N, C, *spatial]")
    if use_input_stats or running_mean is None or running_var is None:
        return _channel_affine(_standardize(input, range(2, input.dim()), eps), weight, bias)
    shape = (1, input.shape[1]) + (1,) * (input.dim() - 2)
    y = (input - running_mean.reshape(shape)) * torch.rsqrt(running_var.reshape(shape) + eps)
    return _channel_affine(y, weight, bias)


def group_norm(input: Tensor, num_groups: int, weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """``F.group_norm``: standardise each example's ``C / G`` channels of a group together (Wu and
    He 2018), then the per-channel affine map."""
    if input.dim() < 2 or input.shape[1] % num_groups:
        raise InputError(f"exact group_norm: input of shape {tuple(input.shape)} cannot be split into "
                         f"{num_groups} groups of channels")
    grouped = input.reshape(input.shape[0], num_groups, -1)
    return _channel_affine(_standardize(grouped, (2,), eps).reshape(input.shape), weight, bias)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: Optional[float] = None,
                                 enable_gqa: bool = False) -> Tensor:
    """``softmax(q k^T * scale + mask) v`` (Vaswani et al. 2017), ``scale = 1 / sqrt(d)`` by
    default: the math backend's equation, differentiable to any order under ``vmap``."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, dim=-3), value.repeat_interleave(rep, dim=-3)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        keep = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p, training=True)
    return torch.matmul(weights, value)


def _cell(kind: str, gi: Tensor, gh: Tensor, h: Tensor, c: Optional[Tensor],
          w_hr: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    # One time step; the gate order is torch's (LSTM: i, f, g, o; GRU: r, z, n).
    if kind == "lstm":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h if w_hr is None else F.linear(h, w_hr)), c
    if kind == "gru":
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return n + z * (h - n), None  # = (1 - z) n + z h
    return (torch.tanh(gi + gh) if kind == "rnn_tanh" else torch.relu(gi + gh)), None


def _recurrent(kind: str) -> Callable[..., tuple[Tensor, ...]]:
    def run(input: Tensor, hx: Any, weights: Sequence[Tensor], has_biases: bool, num_layers: int,
            dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> tuple[Tensor, ...]:
        if isinstance(hx, Tensor) and hx.dtype in (torch.int64, torch.int32):
            raise InputError(f"exact {kind}: packed sequences are not supported under metagrad's exact "
                             "calls; pad the sequences to one length instead of pack_padded_sequence")
        x = input.transpose(0, 1) if batch_first else input  # [T, N, features]
        dirs = 2 if bidirectional else 1
        per = len(weights) // (num_layers * dirs)
        has_proj = per == (4 if has_biases else 2) + 1
        h0, c0 = (hx[0], hx[1]) if kind == "lstm" else (hx, None)
        last_h, last_c = [], []
        for layer in range(num_layers):
            outs = []
            for d in range(dirs):
                w = weights[(layer * dirs + d) * per:(layer * dirs + d + 1) * per]
                b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
                w_hr = w[-1] if has_proj else None
                gi = F.linear(x, w[0], b_ih)  # the input projection of every time step at once
                h, c = h0[layer * dirs + d], None if c0 is None else c0[layer * dirs + d]
                steps = range(x.shape[0] - 1, -1, -1) if d else range(x.shape[0])
                out: list[Tensor] = [h] * x.shape[0]
                for t in steps:
                    h, c = _cell(kind, gi[t], F.linear(h, w[1], b_hh), h, c, w_hr)
                    out[t] = h
                outs.append(torch.stack(out))
                last_h.append(h)
                last_c.append(c)
            x = torch.cat(outs, dim=-1) if dirs == 2 else outs[0]
            if dropout > 0 and train and layer < num_layers - 1:
                x = F.dropout(x, dropout, training=True)
        output = x.transpose(0, 1) if batch_first else x
        if kind == "lstm":
            return output, torch.stack(last_h), torch.stack(last_c)  # type: ignore[arg-type]
        return output, torch.stack(last_h)
    run.__name__ = run.__qualname__ = kind
    run.__doc__ = (f"``torch.{kind}`` (``nn.RNN``/``nn.GRU``/``nn.LSTM``'s kernel) unrolled over time "
                   "steps with elementary ops: ``h_t = cell(W_ih x_t + b_ih, W_hh h_(t-1) + b_hh)``.")
    return run


def multi_head_attention_forward(*args: Any, **kwargs: Any) -> tuple[Tensor, Optional[Tensor]]:
    """``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``)
    with the math attention backend, ``softmax(q k^T / sqrt(d)) v`` from elementary ops.

    torch runs a replaced function with the mode popped, and a Python-level ``F`` function asks
    the mode again at its top, so this composite cannot see the mode from inside; its one fused
    call, ``F.scaled_dot_product_attention``, is pinned to the math backend instead (the CPU
    flash kernel has no double backward)."""
    with sdpa_kernel([SDPBackend.MATH]):
        return F.multi_head_attention_forward(*args, **kwargs)


# The functions replaced inside ``exact_mode()``, by the object torch hands to ``__torch_function__``.
EXACT_FUNCTIONS: dict[Callable, Callable] = {
    F.layer_norm: layer_norm,
    F.rms_norm: rms_norm,
    F.batch_norm: batch_norm,
    F.instance_norm: instance_norm,
    F.group_norm: group_norm,
    F.scaled_dot_product_attention: scaled_dot_product_attention,
    F.multi_head_attention_forward: multi_head_attention_forward,
    torch.lstm: _recurrent("lstm"),
    torch.gru: _recurrent("gru"),
    torch.rnn_tanh: _recurrent("rnn_tanh"),
    torch.rnn_relu: _recurrent("rnn_relu"),
}


class _ExactMode(TorchFunctionMode):
    """Routes ``EXACT_FUNCTIONS`` to their exact implementations; every other call is passed
    through unchanged (torch pops the mode while it handles a call, so there is no recursion)."""

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d and getattr(_local, "data_convs", False):
            call = _CONV2D_ARGS.bind(*args, **kwargs).arguments
            if routable(call["input"], call["weight"], call.get("padding", 0)):
                return conv2d_of_data(**call)
        impl = EXACT_FUNCTIONS.get(func, func)
        return impl(*args, **kwargs)


_CONV2D_ARGS = inspect.signature(conv2d_of_data)
_local = threading.local()


@contextmanager
def constant_input_convolutions(on: bool = True) -> Iterator[None]:
    """Within this context (and ``exact_mode``), ``F.conv2d`` of an input that needs no gradient
    runs as ``models.data_conv.conv2d_of_data``: the same values and derivatives, but no derivative
    of any order computes the input's gradient, which torch's double backward of a convolution
    does (``inner.adapt`` enters it for second order with several steps; see that module)."""
    previous = getattr(_local, "data_convs", False)
    _local.data_convs = on
    try:
        yield
    finally:
        _local.data_convs = previous


@contextmanager
def exact_mode() -> Iterator[None]:
    """Within this context, norms, attention and recurrent kernels run as exact elementary ops.

    See the module docstring for what is replaced and why (torch 2.13's fused kernels give
    wrong or missing second derivatives under ``vmap``). Nested uses cost nothing.
    """
    if getattr(_local, "depth", 0):
        yield
        return
    _local.depth = 1
    try:
        with _ExactMode():
            yield
    finally:
        _local.depth = 0


def exact_call(model: nn.Module, params: dict[str, Tensor], args: tuple, kwargs: Optional[dict] = None) -> Any:
    """``torch.func.functional_call(model, params, args, kwargs)`` inside ``exact_mode()``.

    ``model(*args)`` with its parameters replaced by ``params``, computing the same function
    with elementary ops wherever torch's fused kernel would give wrong or no higher derivatives
    under ``vmap``. Each call gets its own copy of batch norm's ``num_batches_tracked`` counter,
    so the user's module is not changed by metagrad's calls (running statistics are never
    updated either: see the module docstring).
    """
    counters = {n: b.clone() for n, b in model.named_buffers() if n.endswith("num_batches_tracked")}
    with exact_mode():
        return functional_call(model, {**params, **counters} if counters else params, args, kwargs)
