"""Meta-SGD: one meta-learned learning rate per parameter entry (Li et al. 2017; compared in 001)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from ..errors import InputError, MissingKeyError, check_int, check_positive, is_finite_number
from ..params import Params
from .base import Learner

__all__ = ["MetaSGD", "LR_PREFIX"]

# Meta keys are "lr/<parameter key>", e.g. "lr/net.0.weight"; MAML stores them safely in a
# ParameterDict ('.' is swapped for '|'), and the prefix keeps them apart from other rules' meta.
LR_PREFIX = "lr/"

_INITS = ("constant", "uniform")



@dataclass(frozen=True)
class MetaSGD(Learner):
    """Meta-SGD's inner update ``theta' = theta - alpha ⊙ grad L_support(theta)``.

    ``alpha`` has the keys and shapes of the adapted parameters (``meta["lr/<key>"]``) and is
    meta-learned with the initialisation (Li, Zhou, Chen and Li 2017, "Meta-SGD"; the baseline of
    Lee & Choi's Table 1, seed 001). Initialisation: ``lr_init="constant"`` fills every rate with
    ``lr``; ``lr_init="uniform"`` draws them from ``U[lr_range]`` (Li et al.: ``U[0.005, 0.1]``)
    with a ``torch.Generator`` seeded by ``seed``, so the draw never touches global randomness.

    Example::

        algo = mg.MAML(model, learner=MetaSGD(lr_init="uniform"), inner_steps=1)
        algo.meta_params()["lr/net.0.weight"].shape == model.net[0].weight.shape
    """

    lr: float = 0.01
    lr_init: str = "constant"
    lr_range: tuple[float, float] = (0.005, 0.1)
    seed: int = 0
    name: str = "meta_sgd"

    def __post_init__(self) -> None:
        if self.lr_init not in _INITS:
            raise InputError(f"MetaSGD: unknown lr_init {self.lr_init!r}; choose one of {', '.join(_INITS)}")
        if self.lr_init == "constant":
            check_positive("MetaSGD", "lr", self.lr, error=InputError)
        rng = tuple(self.lr_range) if isinstance(self.lr_range, (tuple, list)) else ()
        if len(rng) != 2 or not all(is_finite_number(v) for v in rng) or not 0 <= rng[0] < rng[1]:
            raise InputError(f"MetaSGD: lr_range must be (low, high) with 0 <= low < high, got {self.lr_range!r}")
        check_int("MetaSGD", "seed", self.seed, 0, InputError)
        object.__setattr__(self, "lr_range", tuple(float(v) for v in self.lr_range))

    @property
    def elementwise(self) -> bool:
        return True  # theta - lr * g, with lr a scalar or broadcast per parameter

    @property
    def nominal_lr(self) -> Optional[float]:
        # HF-MAML's d = 1/(6 rho a ||u||) needs one step size: the initial mean rate.
        return self.lr if self.lr_init == "constant" else 0.5 * sum(self.lr_range)

    def init_meta(self, params: Params) -> Params:
        """One rate tensor per parameter, ``meta["lr/" + key]`` of ``params[key]``'s shape."""
        if not params:
            raise InputError("MetaSGD.init_meta: no parameters to create learning rates for")
        gen = torch.Generator().manual_seed(int(self.seed))
        meta: Params = {}
        for k, v in params.items():
            if not self.adapts(k):
                continue
            if self.lr_init == "constant":
                meta[LR_PREFIX + k] = torch.full_like(v, float(self.lr))
            else:
                lo, hi = self.lr_range
                u = torch.rand(v.shape, generator=gen, dtype=torch.float64)
                meta[LR_PREFIX + k] = (lo + (hi - lo) * u).to(dtype=v.dtype, device=v.device)
        return meta

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        missing = [k for k in grads if LR_PREFIX + k not in meta]
        if missing:
            raise MissingKeyError(f"MetaSGD.step: no learning rate meta['{LR_PREFIX}{missing[0]}']; "
                           "create meta with learner.init_meta(params) for this model")
        return {k: params[k] - meta[LR_PREFIX + k] * g for k, g in grads.items()}, state
