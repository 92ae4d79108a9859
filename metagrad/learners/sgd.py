"""Plain gradient descent: the inner loop of MAML (Finn et al. 2017; seeds 002, 003, 004)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from ..errors import InputError, check_finite, check_positive
from ..params import Params
from .base import Learner

__all__ = ["SGD"]


@dataclass(frozen=True)
class SGD(Learner):
    """MAML's inner update ``theta' = theta - a * grad L_support(theta)``.

    ``lr`` is ``a``. With ``learn_lr=True`` the step size is one meta-learned scalar
    ``meta["lr"]`` initialised to ``lr`` (MAML with a learned inner rate; Meta-SGD learns one
    rate per parameter instead).
    """

    lr: float = 0.01
    learn_lr: bool = False
    name: str = "sgd"

    def __post_init__(self) -> None:
        # a fixed rate must step downhill; a learned one may start anywhere (its meta-gradient moves it)
        if self.learn_lr:
            check_finite("SGD", "lr", self.lr, InputError)
        else:
            check_positive("SGD", "lr", self.lr, error=InputError)

    @property
    def elementwise(self) -> bool:
        return True  # theta - lr * g, with lr a scalar or broadcast per parameter

    @property
    def nominal_lr(self) -> Optional[float]:
        return self.lr

    def init_meta(self, params: Params) -> Params:
        if not self.learn_lr:
            return {}
        ref = next(iter(params.values()))
        return {"lr": torch.tensor(float(self.lr), dtype=ref.dtype, device=ref.device)}

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        lr = meta["lr"] if self.learn_lr else self.lr
        return {k: params[k] - lr * g for k, g in grads.items()}, state
