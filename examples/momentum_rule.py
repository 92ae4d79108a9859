"""An inner-loop update rule of your own on metagrad's command line: heavy-ball momentum, meta-learned.

The rule, for each adapted parameter ``theta`` with inner gradient ``g_t`` at inner step ``t``::

    v_0 = 0,   v_{t+1} = mu v_t + g_t,   theta_{t+1} = theta_t - a v_{t+1}

with the step size ``a = meta["lr"]`` and the momentum ``mu = sigmoid(meta["mu_logit"])`` (kept in
(0, 1)) both meta-learned, as Meta-SGD learns its rates (Li et al. 2017), but two scalars shared by
every parameter. It is a ``Learner`` like the built-in rules (``metagrad/learners/sgd.py``): a frozen
dataclass of hyper-parameters and two pure functions, ``init`` (the velocity, zero) and ``step``;
every tensor it learns lives in ``meta``. Registering a builder makes ``"inner": {"learner":
"momentum", ...}`` valid in any config that lists this file in its ``imports``
(``sine-momentum.json`` beside it)::

    metagrad train examples/sine-momentum.json --out runs/momentum
    metagrad eval runs/momentum --steps 10

The builder's keyword parameters (``lr``, ``momentum``) become keys of the config's ``inner``
section. In the three meta-gradient modes it is differentiated like any rule, and it passes the same
learner contract (``tests/test_learner_contract.py`` loads this file): second order against finite
differences, first order against a detached reference, Hessian-free against second order, the
vmapped inner loop against the loop over tasks, pure ``init`` and ``step``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from metagrad import Learner
from metagrad.errors import InputError
from metagrad.experiments import registry
from metagrad.params import Params


@dataclass(frozen=True)
class Momentum(Learner):
    """``v <- mu v + g``, ``theta <- theta - a v`` with ``a`` and ``mu`` meta-learned (module docstring).

    ``lr`` and ``momentum`` are the initial ``a`` and ``mu``.
    """

    lr: float = 0.01
    momentum: float = 0.5
    name: str = "momentum"

    def __post_init__(self) -> None:
        if not 0.0 < self.momentum < 1.0:
            raise InputError(f"momentum: momentum must lie in (0, 1), got {self.momentum!r}")

    @property
    def elementwise(self) -> bool:
        return True   # every operation acts element by element; meta's scalars broadcast over tasks

    @property
    def nominal_lr(self) -> Optional[float]:
        return self.lr

    def init_meta(self, params: Params) -> Params:
        ref = next(iter(params.values()))
        as_tensor = lambda v: torch.tensor(v, dtype=ref.dtype, device=ref.device)  # noqa: E731
        return {"lr": as_tensor(self.lr), "mu_logit": as_tensor(math.log(self.momentum / (1 - self.momentum)))}

    def init(self, params: Params, meta: Params) -> Any:
        return {k: torch.zeros_like(p) for k, p in params.items()}

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        mu = torch.sigmoid(meta["mu_logit"])
        velocity = {k: mu * state[k] + g for k, g in grads.items()}
        return {k: params[k] - meta["lr"] * v for k, v in velocity.items()}, velocity


def build_momentum(model: nn.Module, lr: float = 0.01, momentum: float = 0.5) -> tuple[nn.Module, Learner]:
    """``inner.learner = "momentum"``: the model unchanged and the rule (its keys: ``lr``, ``momentum``)."""
    return model, Momentum(lr=lr, momentum=momentum)


registry.register_learner("momentum", build_momentum)
