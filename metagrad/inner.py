"""``adapt``: the one inner loop shared by every update rule and meta-gradient mode.

For one task with support set ``(x, y)``, starting from ``theta_0 = params``::

    g_t, l_t        = grad_and_value(L_support)(theta_t)        # the mode decides its derivative
    theta_{t+1}, s  = learner.step(g_t, theta_t, s, meta, t, l_t)

for ``t = 0 .. steps-1`` (MAML: Finn et al. 2017; the general rule-as-data form follows
004's TURTLE and Ravi & Larochelle's LSTM learner). The functions here work on a *single*
task; ``metagrad.algorithm`` vmaps them over the task dimension.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor, nn
from torch.func import functional_call

from .learners.base import Learner
from .metagrads import HessianFree, check_mode, make_grad_op
from .params import Params

__all__ = ["adapt", "split_params", "Loss"]

Loss = Callable[[Tensor, Tensor], Tensor]


def split_params(learner: Learner, params: Params) -> tuple[Params, Params]:
    """Split ``params`` into (adapted by the inner loop, left unchanged by it)."""
    adapted = {k: v for k, v in params.items() if learner.adapts(k)}
    frozen = {k: v for k, v in params.items() if not learner.adapts(k)}
    return adapted, frozen


def adapt(learner: Learner, model: nn.Module, loss: Loss, params: Params, meta: Params,
          x: Tensor, y: Tensor, steps: int, mode: str = "second_order", *,
          hvp_data: Optional[tuple[Tensor, Tensor]] = None, hf: Optional[HessianFree] = None,
          on_step: Optional[Callable[[int, Params], None]] = None) -> Params:
    """Adapt ``params`` to one task's support set ``(x, y)`` with ``steps`` updates of ``learner``.

    ``mode`` is one of ``second_order``, ``first_order``, ``hessian_free`` (see
    ``metagrad.metagrads``); ``hvp_data`` is HF-MAML's separate batch ``D_h`` for the
    finite-difference Hessian-vector products. ``on_step(t, params_t)`` is called after each
    step (``t = 1..steps``), e.g. to record an adaptation curve. Returns the adapted params
    (all keys, including those the rule leaves unchanged).
    """
    check_mode(mode, "adapt")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"adapt: steps must be an integer >= 0, got {steps!r}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"adapt: support x has {x.shape[0]} examples but y has {y.shape[0]}")

    def objective(adapted: Params, frozen: Params, xb: Tensor, yb: Tensor) -> Tensor:
        return loss(functional_call(model, {**adapted, **frozen}, (xb,)), yb)

    grad_op = make_grad_op(objective, mode, hf, hvp_data)
    adapted, frozen = split_params(learner, params)
    state = learner.init(adapted, meta)
    for t in range(steps):
        g, value = grad_op(adapted, frozen, x, y)
        adapted, state = learner.step(g, adapted, state, meta, t, value)
        if on_step is not None:
            on_step(t + 1, {**adapted, **frozen})
    return {**adapted, **frozen}
