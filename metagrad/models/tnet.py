"""T-net layers (Lee & Choi 2018, seed 001): every connection is ``T @ W``, ``T`` square.

``y = T (W x + b)``: the layer's own weight ``W`` and bias ``b`` are adapted by the inner
loop; the transform ``T`` (``out x out``, initialised to the identity) is meta-learned only.
The bias sits inside the transform as in the MT-net reference code (``(x W + b) T_f``), so
``(W, b)`` together are one matrix acting on ``[x; 1]`` and 001's section 6.2 scaling
(``T * sqrt(a0/a1)``, ``(W, b) * sqrt(a1/a0)``) turns a step of size ``a1`` into one of ``a0``
exactly. For ``Conv2d`` the transform is a 1x1 convolution over output channels (the
``conv1_f`` of the reference code), stored as an ``out x out`` matrix like the linear one, and
composed into the kernel where that is cheaper (``(T W) * x + T b``, one convolution, not two).

Parameter keys: a layer at ``net.0`` has ``net.0.weight``, ``net.0.bias`` and ``net.0.T``;
``is_transform(key)`` tells transforms from weights, ``layer_of(key)`` gives ``net.0``.
"""
from __future__ import annotations

import copy
from typing import Iterable, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from ..errors import InputError, InputTypeError

__all__ = ["TLinear", "TConv2d", "to_tnet", "is_transform", "layer_of", "transform_layers",
           "TRANSFORM_SUFFIX"]

TRANSFORM_SUFFIX = "T"


def is_transform(key: str) -> bool:
    """Whether parameter ``key`` is a T-net transform (its last name part is ``T``)."""
    return key.rsplit(".", 1)[-1] == TRANSFORM_SUFFIX


def layer_of(key: str) -> str:
    """The module path of parameter ``key`` (``"net.0.weight" -> "net.0"``; ``"" `` at top level)."""
    return key.rsplit(".", 1)[0] if "." in key else ""


def transform_layers(keys: Iterable[str]) -> list[str]:
    """Module paths of the T-net layers among parameter ``keys`` (one per ``*.T`` key)."""
    return [layer_of(k) for k in keys if is_transform(k)]


def _identity(n: int, like: Tensor) -> nn.Parameter:
    return nn.Parameter(torch.eye(n, dtype=like.dtype, device=like.device))


_M = TypeVar("_M", bound=nn.Module)


def _copy_from(new: _M, layer: nn.Module) -> _M:
    """Copy ``layer``'s weight, bias and train/eval mode into its T-net twin ``new``."""
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new.train(layer.training)


class TLinear(nn.Linear):
    """``y = T (W x + b)`` with ``T`` of shape ``[out, out]`` (001 eq. (3)).

    Built from an ``nn.Linear`` with ``TLinear.from_linear(layer)`` (copies ``W`` and ``b``;
    ``T = I``, so the output is unchanged).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.T = _identity(out_features, self.weight)

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> "TLinear":
        if not isinstance(layer, nn.Linear) or isinstance(layer, TLinear):
            raise InputTypeError(f"TLinear.from_linear: expected an nn.Linear, got {type(layer).__name__}")
        with torch.random.fork_rng(devices=[]):  # constructing must not move the global RNG
            new = cls(layer.in_features, layer.out_features, layer.bias is not None,
                      device=layer.weight.device, dtype=layer.weight.dtype)
        return _copy_from(new, layer)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.linear(x, self.weight, self.bias), self.T)


class TConv2d(nn.Conv2d):
    """``y = T * (W * x + b)``: a 1x1 convolution ``T [out, out]`` over the output channels, or
    ``(T W) * x + T b`` where composing the kernels is cheaper (``_compose``; the same map).

    Built from an ``nn.Conv2d`` with ``TConv2d.from_conv(layer)`` (keeps stride, padding,
    dilation, groups and padding mode; ``T = I``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.T = _identity(self.out_channels, self.weight)

    @classmethod
    def from_conv(cls, layer: nn.Conv2d) -> "TConv2d":
        if not isinstance(layer, nn.Conv2d) or isinstance(layer, TConv2d):
            raise InputTypeError(f"TConv2d.from_conv: expected an nn.Conv2d, got {type(layer).__name__}")
        with torch.random.fork_rng(devices=[]):
            new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                      padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                      bias=layer.bias is not None, padding_mode=layer.padding_mode,
                      device=layer.weight.device, dtype=layer.weight.dtype)
        return _copy_from(new, layer)

    def forward(self, x: Tensor) -> Tensor:
        if not self._compose(x):
            z = self._conv_forward(x, self.weight, self.bias)
            return F.conv2d(z, self.T[:, :, None, None])
        # T * (W * x + b) = (T W) * x + T b, exactly (both are linear), one convolution instead of two
        w = (self.T @ self.weight.flatten(1)).view_as(self.weight)
        b = None if self.bias is None else self.T @ self.bias
        return self._conv_forward(x, w, b)

    def _compose(self, x: Tensor) -> bool:
        """Whether to compose ``T`` into the kernel: it costs ``out x out x in x k^2`` multiply-adds a
        call (under ``vmap`` with per-task weights, per task), the 1x1 transform ``out x out`` per output
        pixel of every image, forward and in each derivative; so compose when ``in x k^2`` is at most the
        output pixels (conv4 on Omniglot: always in the first layer, whose 1x1 transform of a 14 x 14 map
        costs 7x its 3x3 convolution of the image; in the second only from about 12 images a task).
        Grouped convolutions never: ``T`` mixes the groups' channels, so the composite is not grouped."""
        images = x.shape[0] if x.dim() == 4 else 1
        pixels = images * x.shape[-2] * x.shape[-1] // (self.stride[0] * self.stride[1])
        return self.groups == 1 and self.in_channels * self.kernel_size[0] * self.kernel_size[1] <= pixels


def to_tnet(model: nn.Module, include_last: bool = True) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` / ``nn.Conv2d`` replaced by its T-net layer.

    The original is left untouched (deep copy, then child modules are swapped in the copy).
    ``include_last=False`` keeps the last such layer plain (001 transforms every layer, the
    default). Raises when ``model`` has no layer to convert or is already a T-net.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"to_tnet: expected an nn.Module, got {type(model).__name__}")
    if any(isinstance(m, (TLinear, TConv2d)) for m in model.modules()):
        raise InputError("to_tnet: model already has T-net layers; pass the plain model")
    new = copy.deepcopy(model)
    targets = [(name, m) for name, m in new.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    if not targets:
        raise InputError(f"to_tnet: {type(model).__name__} has no nn.Linear or nn.Conv2d layer to convert")
    if not include_last:
        targets = targets[:-1]
    for name, m in targets:
        swapped = TLinear.from_linear(m) if isinstance(m, nn.Linear) else TConv2d.from_conv(m)
        if name == "":
            return swapped
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        setattr(parent, child, swapped)
    return new
