"""The bias transformation (Finn & Levine 2018, seed 000, section 2.2; Finn et al. 2017b).

A learned vector ``theta_b`` of size ``S`` is concatenated to the input,
``f([x; theta_b])``, and adapted in the inner loop like every other parameter:
``theta_b' = theta_b - a grad_{theta_b} L_support``. Its initial value is meta-learned.
It adds no expressivity to the model but makes the gradient more expressive (000 uses
``S = 10`` on sine and polynomial regression).

For flat inputs ``[K, D]`` the vector is appended to the features (the first linear layer
then takes ``D + S`` inputs). For images ``[K, C, H, W]`` (the conv4 model) it is appended
as ``S`` constant extra channels (``theta_b[s]`` at every pixel), so the first convolution
takes ``C + S`` channels; this keeps the vector at the network input as in 000.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import InputError, check_int
from .mlp import MLP

__all__ = ["BiasTransform", "bias_transformed_mlp"]

_WHERE = ("features", "channels")


class BiasTransform(nn.Module):
    """``body([x; theta_b])`` with ``theta_b = self.bias_transform`` of shape ``[size]``.

    Args:
        body: the network that receives the concatenated input; its first layer must take
            ``size`` more features (``where="features"``) or channels (``where="channels"``).
        size: ``S``, the length of ``theta_b`` (000: 10).
        where: ``"features"`` (last dimension, MLPs) or ``"channels"`` (dimension ``-3`` of
            ``[..., C, H, W]`` images, conv nets).
        init_std: ``theta_b`` starts at zero (``0``) or ``N(0, init_std^2)``.

    Parameter keys: ``bias_transform`` and ``body.<...>`` (every one adapted by plain SGD).
    """

    def __init__(self, body: nn.Module, size: int = 10, where: str = "features", init_std: float = 0.0) -> None:
        super().__init__()
        check_int("BiasTransform", "size", size, 1, InputError)
        if where not in _WHERE:
            raise InputError(f"BiasTransform: unknown where {where!r}; choose one of {', '.join(_WHERE)}")
        if not init_std >= 0:
            raise InputError(f"BiasTransform: init_std must be >= 0, got {init_std}")
        ref = next(iter(body.parameters()), None)
        kw = {} if ref is None else {"dtype": ref.dtype, "device": ref.device}
        self.body = body
        self.size = size
        self.where = where
        self.bias_transform = nn.Parameter(torch.randn(size, **kw) * init_std if init_std > 0
                                           else torch.zeros(size, **kw))

    def forward(self, x: Tensor) -> Tensor:
        b = self.bias_transform.to(x.dtype)
        if self.where == "features":
            return self.body(torch.cat([x, b.expand(*x.shape[:-1], self.size)], dim=-1))
        if x.dim() < 3:
            raise InputError(f"BiasTransform: where='channels' needs inputs [..., C, H, W], got shape {tuple(x.shape)}")
        extra = b[:, None, None].expand(*x.shape[:-3], self.size, *x.shape[-2:])
        return self.body(torch.cat([x, extra], dim=-3))

    def extra_repr(self) -> str:
        return f"size={self.size}, where={self.where!r}"


def bias_transformed_mlp(sizes: Sequence[int], size: int = 10, activation: str = "relu",
                         init: str = "default", init_std: float = 0.0) -> BiasTransform:
    """``MLP([in + size, *hidden, out])`` behind a bias transformation of length ``size``.

    000's sine model: ``bias_transformed_mlp([1, 100, 100, 1], size=10)``.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise InputError(f"bias_transformed_mlp: sizes must be [in, ..., out], got {sizes}")
    check_int("bias_transformed_mlp", "size", size, 1, InputError)
    return BiasTransform(MLP([sizes[0] + size, *sizes[1:]], activation, init), size, "features", init_std)
