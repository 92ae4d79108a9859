"""A linear model ``y = x^T w`` (no bias): the model of 002's quadratic tasks."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InputError, check_int

__all__ = ["LinearModel"]


class LinearModel(nn.Module):
    """``y = x^T w`` with ``w`` (``dim`` numbers, its only parameter) initialised to ``init``.

    On ``metagrad.tasks.Quadratic`` its MSE loss is the task's quadratic ``f_i(w)``, so
    ``meta_gradient(model.w, a, task)`` is the exact ``grad F`` at its current parameters.
    """

    def __init__(self, dim: int, init: float = 0.0) -> None:
        super().__init__()
        check_int("LinearModel", "dim", dim, 1, InputError)
        self.w = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return (x @ self.w).unsqueeze(-1)
