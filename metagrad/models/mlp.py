"""Fully connected regression networks (the sine and polynomial benchmarks)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn
from ..errors import InputError

__all__ = ["MLP"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


class MLP(nn.Module):
    """``sizes = [in, h1, ..., out]`` with an activation after every hidden layer.

    Finn et al. 2017's sine network is ``MLP([1, 40, 40, 1])`` with ReLU. ``init="normal"``
    draws weights from a truncated normal with std 0.01 and zero biases (the MAML and
    MT-net reference code); ``"default"`` keeps PyTorch's initialisation.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", init: str = "default") -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise InputError(f"MLP: sizes must be >= 2 positive integers, got {sizes}")
        if activation not in _ACTIVATIONS:
            raise InputError(f"MLP: unknown activation {activation!r}; choose one of {', '.join(_ACTIVATIONS)}")
        if init not in ("default", "normal"):
            raise InputError(f"MLP: unknown init {init!r}; choose 'default' or 'normal'")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)
        self.sizes = sizes
        if init == "normal":
            for m in self.net:
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.01, a=-0.02, b=0.02)
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
