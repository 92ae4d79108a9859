"""SNAIL's sequence network (Mishra et al. 2018, "A simple neural attentive meta-learner").

Every block reads ``[N, T, C]`` (channels last, throughout) and appends new features to its input
(dense connections), so the channel count grows block by block:

* ``DenseBlock(d, F)``: ``[x, tanh(conv_f(x)) * sigmoid(conv_g(x))]``, ``conv`` a causal 1-D
  convolution of kernel 2 and dilation ``d`` with ``F`` filters (a gated activation; +F channels).
* ``TCBlock``: dense blocks of dilations ``1, 2, 4, ...`` (000 appendix G: 1, 2, 4, 8, F = 16).
* ``AttentionBlock(k, v)``: ``[x, softmax(mask(q K^T / sqrt(k))) V]`` with ``q, K = x W_q, x W_k``
  (size ``k``), ``V = x W_v`` (size ``v``), the mask hiding every position after the query's (+v).

000 appendix G's sine model: 2 x (TCBlock(1, 2, 4, 8; 16), AttentionBlock(8, 8)), then a 1x1
convolution to the output. Causal throughout: the output at position ``t`` depends on inputs
``0..t`` only (convolutions are padded on the left; attention is masked).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["SNAIL", "CausalConv1d", "DenseBlock", "TCBlock", "AttentionBlock"]


class CausalConv1d(nn.Module):
    """``[N, T, C] -> [N, T, out]``: ``y_t = b + sum_j W_j x_{t - (k - 1 - j) d}`` (kernel ``k`` = 2,
    dilation ``d``, zeros before the start), as ``nn.Conv1d(C, out, k, dilation=d)`` on the left-padded
    sequence, with its parameters (``conv.weight`` ``[out, C, k]``, ``conv.bias``).

    Computed as one matrix product per tap on the channels-last sequence, not by ``F.conv1d``: oneDNN
    runs a dilated convolution of length-10 sequences several times slower than the same products
    (SNAIL on Omniglot, 614 channels: 60 ms against about 10 ms a call)."""

    def __init__(self, channels: int, out: int, dilation: int, kernel: int = 2) -> None:
        super().__init__()
        self.dilation, self.kernel = dilation, kernel
        self.conv = nn.Conv1d(channels, out, kernel, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:   # [N, T, C]
        T, w = x.shape[1], self.conv.weight
        y = F.linear(x, w[:, :, -1], self.conv.bias)   # the tap at t itself
        for j in range(self.kernel - 1):   # tap j reads s = (k - 1 - j) d steps back: zero for t < s
            s = (self.kernel - 1 - j) * self.dilation
            if s < T:
                y = y + F.pad(F.linear(x[:, : T - s], w[:, :, j]), (0, 0, s, 0))
        return y


class DenseBlock(nn.Module):
    """``[x, tanh(conv_f(x)) * sigmoid(conv_g(x))]`` (one convolution with ``2F`` filters, split)."""

    def __init__(self, channels: int, dilation: int, filters: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, 2 * filters, dilation)
        self.filters = filters

    def forward(self, x: Tensor) -> Tensor:   # [N, T, C]
        f, g = self.conv(x).split(self.filters, dim=-1)
        return torch.cat([x, torch.tanh(f) * torch.sigmoid(g)], dim=-1)


class TCBlock(nn.Sequential):
    """Dense blocks of ``dilations`` (Mishra et al.: 1, 2, 4, ... up to the sequence length)."""

    def __init__(self, channels: int, dilations: Sequence[int], filters: int) -> None:
        blocks = [DenseBlock(channels + i * filters, d, filters) for i, d in enumerate(dilations)]
        super().__init__(*blocks)


class AttentionBlock(nn.Module):
    """Causal single-head attention, its read appended: ``[N, T, C] -> [N, T, C + value]``."""

    def __init__(self, channels: int, key: int, value: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(channels, key), nn.Linear(channels, key), nn.Linear(channels, value)
        self.scale = 1.0 / math.sqrt(key)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.q(x) @ self.k(x).transpose(1, 2) * self.scale   # [N, T(query), T(key)]
        T = x.shape[1]
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        read = logits.masked_fill(future, float("-inf")).softmax(-1) @ self.v(x)
        return torch.cat([x, read], dim=-1)


def _positive_int(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InputError(f"SNAIL: {name} must be a positive integer, got {v!r}")
    return v


class SNAIL(nn.Module):
    """``blocks`` x (TCBlock, AttentionBlock), then a 1x1 convolution: ``[N, T, in] -> [N, T, out]``.

    Args:
        in_features, out_features: per-step input and output sizes.
        blocks: (TC, attention) pairs (000: 2).
        dilations: the TC block's dilations (000: 1, 2, 4, 8).
        filters: filters per dense block (000: 16).
        key_size, value_size: attention sizes (000: 8 and 8).
    """

    def __init__(self, in_features: int, out_features: int, blocks: int = 2, dilations: Sequence[int] = (1, 2, 4, 8),
                 filters: int = 16, key_size: int = 8, value_size: int = 8) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features), ("blocks", blocks),
                        ("filters", filters), ("key_size", key_size), ("value_size", value_size)):
            _positive_int(name, v)
        dilations = [_positive_int("every dilation", d) for d in dilations] if len(dilations) else None
        if not dilations:
            raise InputError(f"SNAIL: dilations must list at least one positive integer, got {dilations!r}")
        layers: list[nn.Module] = []
        c = in_features
        for _ in range(blocks):
            layers.append(TCBlock(c, dilations, filters))
            c += len(dilations) * filters
            layers.append(AttentionBlock(c, key_size, value_size))
            c += value_size
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(c, out_features, 1)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise InputError(f"SNAIL: expected sequences [N, T, {self.in_features}], got shape {tuple(x.shape)}")
        return F.linear(self.body(x), self.head.weight[:, :, 0], self.head.bias)   # the 1x1 convolution
