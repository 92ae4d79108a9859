"""``adapt``: the one inner loop shared by every update rule and meta-gradient mode.

For one task with support set ``(x, y)``, starting from ``theta_0 = params``::

    g_t, l_t        = grad_and_value(L_support)(theta_t)        # the mode decides its derivative
    theta_{t+1}, s  = learner.step(g_t, theta_t, s, meta, t, l_t)

for ``t = 0 .. steps-1`` (MAML: Finn et al. 2017; the general rule-as-data form follows
004's TURTLE and Ravi & Larochelle's LSTM learner). The functions here work on a *single*
task; ``metagrad.algorithm`` vmaps them over the task dimension.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from torch import Tensor, nn
from torch.func import vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from .errors import InputError, check_int
from .exact import constant_input_convolutions, exact_call
from .learners.base import Learner
from .metagrads import HessianFree, check_mode, make_grad_op
from .params import Params

__all__ = ["adapt", "adapt_tasks", "split_params", "Loss"]

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
    check_int("adapt", "steps", steps, 0, InputError)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"adapt: support x has {x.shape[0]} examples but y has {y.shape[0]}")

    def objective(adapted: Params, frozen: Params, xb: Tensor, yb: Tensor) -> Tensor:
        return loss(exact_call(model, {**adapted, **frozen}, (xb,)), yb)

    grad_op = make_grad_op(objective, mode, hf, hvp_data)
    adapted, frozen = split_params(learner, params)
    state = learner.init(adapted, meta)
    # second order differentiates every step's gradient again: the images' convolutions then skip the
    # images' gradient in those derivatives (models/data_conv.py; measured worth it from two steps on)
    with constant_input_convolutions(mode == "second_order" and steps > 1):
        for t in range(steps):
            g, value = grad_op(adapted, frozen, x, y)
            adapted, state = learner.step(g, adapted, state, meta, t, value)
            if on_step is not None:
                on_step(t + 1, {**adapted, **frozen})
    return {**adapted, **frozen}


def adapt_tasks(learner: Learner, model: nn.Module, loss: Loss, params: Params, meta: Params,
                x: Tensor, y: Tensor, steps: int, mode: str = "hessian_free", *,
                hvp_data: Optional[tuple[Tensor, Tensor]] = None,
                hf: Optional[HessianFree] = None) -> tuple[Params, Params]:
    """``adapt`` for ``B`` tasks at once: ``x``, ``y`` (and ``hvp_data``) carry a leading task
    dimension, ``params`` are shared. Returns ``(adapted, frozen)``: the adapted parameters
    with a leading task dimension, and the parameters the rule leaves unchanged.

    The gradient op runs once per step for the whole batch, and the update rule directly on
    the batch (``elementwise`` rules) or vmapped. This is the path of ``hessian_free``: its
    finite-difference gradient op is a custom ``autograd.Function``, and functorch wraps every
    call of one under ``vmap`` at a cost of about 0.9 ms (measured), which made a 5-step sine
    meta-iteration 3.9x first-order's (about 2.9x this way).
    """
    check_mode(mode, "adapt_tasks")
    n_tasks = x.shape[0]
    if y.shape[0] != n_tasks:
        raise InputError(f"adapt_tasks: x has {n_tasks} tasks but y has {y.shape[0]}")

    def objective(adapted: Params, frozen: Params, xb: Tensor, yb: Tensor) -> Tensor:
        return loss(exact_call(model, {**adapted, **frozen}, (xb,)), yb)

    grad_op = make_grad_op(objective, mode, hf, hvp_data, batched=True)
    shared, frozen = split_params(learner, params)
    # The first step runs on the shared parameters (no task dimension yet: cheaper matrix
    # products); autograd sums the tasks' gradients for them.
    rule = _TaskVmap(learner)
    state = rule.init({k: v.unsqueeze(0).expand(n_tasks, *v.shape) for k, v in shared.items()}, meta)
    adapted = shared
    for t in range(steps):
        g, value = grad_op(adapted, frozen, x, y, shared=t == 0)
        adapted, state = rule.step(g, adapted, state, meta, t, value, batched=t > 0)
    if steps == 0:
        adapted = {k: v.unsqueeze(0).expand(n_tasks, *v.shape) for k, v in shared.items()}
    return adapted, frozen


class _TaskVmap:
    """A learner's ``init`` and ``step`` over a batch of tasks: called directly for
    ``elementwise`` rules, else vmapped, with states that may hold non-tensor leaves (``None``,
    Python numbers): only the tensor leaves cross the ``vmap`` boundary; the rest is kept
    aside with the state's structure."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.spec: Any = None
        self.consts: dict[int, Any] = {}

    def _split(self, state: Any) -> list[Tensor]:
        leaves, self.spec = tree_flatten(state)
        self.consts = {i: v for i, v in enumerate(leaves) if not isinstance(v, Tensor)}
        return [v for v in leaves if isinstance(v, Tensor)]

    def _join(self, tensors: list[Tensor]) -> Any:
        it = iter(tensors)
        n = len(tensors) + len(self.consts)
        return tree_unflatten([self.consts[i] if i in self.consts else next(it) for i in range(n)], self.spec)

    def init(self, params: Params, meta: Params) -> Any:
        if self.learner.elementwise:
            return self.learner.init(params, meta)
        out = vmap(lambda p: self._split(self.learner.init(p, meta)), randomness="different")(params)
        return self._join(out)

    def step(self, g: Params, params: Params, state: Any, meta: Params, t: int, value: Tensor,
             batched: bool = True) -> tuple[Params, Any]:
        if self.learner.elementwise:  # shared (unbatched) params broadcast against batched grads
            return self.learner.step(g, params, state, meta, t, value)
        tensors = self._split(state)

        def one(g: Params, p: Params, s: list[Tensor], v: Tensor) -> tuple[Params, list[Tensor]]:
            new, new_state = self.learner.step(g, p, self._join(s), meta, t, v)
            return new, self._split(new_state)
        new, out = vmap(one, in_dims=(0, 0 if batched else None, 0, 0), randomness="different")(g, params, tensors, value)
        return new, self._join(out)
