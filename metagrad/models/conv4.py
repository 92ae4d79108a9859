"""The four-block convolutional network of MAML's image benchmarks (Finn et al. 2017; 001; 004).

Each block is ``3x3 conv -> batch norm -> ReLU`` followed, on Omniglot, by nothing (the
convolution has stride 2) or, on miniImageNet and CUB, by ``2x2`` max-pooling; a linear layer
maps the flattened features to ``n_way`` logits.

Batch norm here is *transductive*, as in MAML's reference code: every forward call normalises
with the mean and (biased) variance of the examples in that call, per channel,

    y = weight * (x - mean_batch(x)) / sqrt(var_batch(x) + eps) + bias,

with no running statistics. In the inner loop a call sees one task's support set; the query
predictions of the adapted model are one call on that task's query set. Under
``torch.func.vmap`` each task is its own call, so no task ever sees another task's examples,
and support predictions never see query statistics.

Why the norm is not ``F.batch_norm``: in torch 2.13 second-order gradients through the affine
batch-norm kernels under ``vmap`` are wrong (DESIGN.md section 2; upstream pytorch/functorch
issue 534). With batch statistics it is ``batch_norm_function.batch_norm_train``, an
``autograd.Function`` whose backward is written in elementary ops (exact to any order, with its
own ``vmap`` rule, and far fewer kernels than autograd through the equation); with given
statistics, the equation in elementary ops. ``tests/test_conv4.py`` checks the meta-gradient against central finite
differences and shows that the naive ``nn.BatchNorm2d`` fails the same check through a plain
``functional_call``. ``metagrad.exact`` runs any user's ``nn.BatchNorm*`` through ``batch_norm``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from ..errors import InputError, check_int
from .batch_norm_function import batch_norm_train

__all__ = ["Conv4", "BatchNormStats", "batch_norm"]


def batch_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float = 1e-5,
               stats: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
    """Per-channel batch norm of ``x [K, C, ...]``, exact to any order under ``vmap`` (module docstring).

    ``y = weight * (x - m) / sqrt(v + eps) + bias`` with ``m``, ``v`` the mean and biased
    variance of ``x`` over every axis but the channel axis (Ioffe and Szegedy 2015), or the
    given ``stats = (m, v)`` (each ``[C]``).
    """
    if x.dim() < 2:
        raise InputError(f"batch_norm: x has shape {tuple(x.shape)}; expected [examples, channels, ...]")
    if stats is None:
        return batch_norm_train(x, weight, bias, eps)
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    y = (x - stats[0].reshape(shape)) * torch.rsqrt(stats[1].reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


class BatchNormStats(nn.Module):
    """Transductive affine batch norm (see the module docstring); ``weight``/``bias`` are parameters.

    ``frozen`` (``None`` by default) may hold ``(mean, var)`` to normalise with fixed statistics
    instead of the batch's: tests use it to show that a query prediction depends on the other
    query images only through these two vectors. With ``record = True`` a call stores its batch
    statistics in ``last`` (outside ``vmap`` only).
    """

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if not eps > 0:
            raise InputError(f"BatchNormStats: eps must be positive, got {eps}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None
        self.frozen: Optional[tuple[Tensor, Tensor]] = None
        self.last: Optional[tuple[Tensor, Tensor]] = None
        self.record = False

    def forward(self, x: Tensor) -> Tensor:
        if self.record:
            dims = [0, *range(2, x.dim())]
            self.last = (x.mean(dim=dims).detach(), x.var(dim=dims, unbiased=False).detach())
        return batch_norm(x, self.weight, self.bias, self.eps, self.frozen)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, affine={self.weight is not None}, transductive"


class Conv4(nn.Module):
    """Conv4 of MAML (Finn et al. 2017), as used by 001 (MT-nets) and 004 (TURTLE).

    ``pooling="stride"`` (Omniglot, 28x28 grey): 3x3 convs with stride 2 and padding 1.
    ``pooling="max"`` (miniImageNet/CUB, 84x84 RGB): stride-1 convs, then 2x2 max-pooling
    (MAML uses ``hidden=32`` on miniImageNet to limit over-fitting; 64 on Omniglot).
    Input ``[K, channels, image_size, image_size]``, output ``[K, n_way]`` logits.

    ``norm``: ``"batch"`` (transductive, exact under vmap; the default), ``"none"`` or
    ``"torch"`` (plain ``nn.BatchNorm2d`` without running statistics: its fused kernel gives
    wrong second-order meta-gradients under vmap in torch 2.13 through a plain
    ``functional_call``; metagrad's own calls run it with ``batch_norm`` above, via
    ``metagrad.exact``, and give the same meta-gradients as ``"batch"``).
    """

    def __init__(self, n_way: int = 5, channels: int = 1, image_size: int = 28, hidden: int = 64,
                 pooling: str = "stride", blocks: int = 4, norm: str = "batch", eps: float = 1e-5,
                 conv_bias: bool = True) -> None:
        super().__init__()
        for name, v in (("n_way", n_way), ("channels", channels), ("image_size", image_size),
                        ("hidden", hidden), ("blocks", blocks)):
            check_int("Conv4", name, v, 1, InputError)
        if pooling not in ("stride", "max"):
            raise InputError(f"Conv4: unknown pooling {pooling!r}; choose 'stride' (Omniglot) or 'max' (miniImageNet/CUB)")
        if norm not in ("batch", "none", "torch"):
            raise InputError(f"Conv4: unknown norm {norm!r}; choose 'batch', 'none' or 'torch'")
        self.n_way, self.channels, self.image_size = n_way, channels, image_size
        self.pooling, self.norm = pooling, norm
        stride = 2 if pooling == "stride" else 1
        layers: list[nn.Module] = []
        size, c_in = image_size, channels
        for _ in range(blocks):
            layers.append(nn.Conv2d(c_in, hidden, 3, stride=stride, padding=1, bias=conv_bias))
            if norm == "batch":
                layers.append(BatchNormStats(hidden, eps))
            elif norm == "torch":
                layers.append(nn.BatchNorm2d(hidden, eps=eps, track_running_stats=False))
            layers.append(nn.ReLU())
            if pooling == "max":
                layers.append(nn.MaxPool2d(2))
                size = size // 2
            else:
                size = (size + 1) // 2  # (size + 2*1 - 3) // 2 + 1
            if size < 1:
                raise InputError(f"Conv4: image_size {image_size} is too small for {blocks} blocks "
                                 f"with pooling {pooling!r}; use larger images or fewer blocks")
            c_in = hidden
        self.features = nn.Sequential(*layers)
        self.feature_dim = hidden * size * size
        self.head = nn.Linear(self.feature_dim, n_way)
        # MAML's reference code: zero classifier init so every class starts equal.
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise InputError(f"Conv4: input has shape {tuple(x.shape)}; expected [K, {self.channels}, H, W]")
        return self.head(self.features(x).flatten(1))

    def norms(self) -> list[BatchNormStats]:
        """The transductive batch-norm layers, in order."""
        return [m for m in self.features if isinstance(m, BatchNormStats)]
