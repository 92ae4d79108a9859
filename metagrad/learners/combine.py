"""Composing update rules, as optax does: gradient transformations chained before a rule, a rule masked to keys.

    mg.chain(mg.clip(10.0), mg.SGD(0.01))           # 004's inner SGD on gradients clamped to [-10, 10]
    mg.masked(mg.MetaSGD(), lambda k: "0." in k)     # adapt only the first layer, learn its rates only
    mg.chain(mg.clip(1.0), mg.masked(mg.SGD(0.1), lambda k: k.endswith("bias")))

A ``GradientTransform`` is a pure, stateless map ``grads -> grads`` (it sees ``params``, ``meta`` and
the step ``t`` too); ``chain(g1, ..., gn, rule)`` applies ``g1`` first and hands the result to
``rule``, a ``Learner``, whose state, meta-parameters, step size and key mask it keeps as they are.
``masked(rule, where)`` adapts only the parameters whose key ``where`` accepts: the others stay at
their initial value in the inner loop (they are learned in the outer loop only, as T-nets' ``T``),
and the rule's meta-parameters exist for the adapted keys only. Both are ``Learner``s, so they nest
and the learner contract (``tests/test_learner_contract.py``) covers them like any rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError
from ..params import Params
from .base import Learner

__all__ = ["GradientTransform", "Clip", "Chain", "Masked", "clip", "chain", "masked"]


class GradientTransform:
    """A pure, stateless map of inner gradients ``(grads, params, meta, t) -> grads``, run before a rule."""

    @property
    def elementwise(self) -> bool:
        """Whether it stays correct with an extra leading task dimension on every tensor (``Learner.elementwise``)."""
        return False

    def update(self, grads: Params, params: Params, meta: Params, t: int) -> Params:
        raise NotImplementedError


@dataclass(frozen=True)
class Clip(GradientTransform):
    """``g <- clamp(g, -value, value)`` element-wise (004 clips inner gradients to [-10, 10] on sine
    with more than one inner step)."""

    value: float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not self.value > 0:
            raise InputError(f"clip: value must be a positive number, got {self.value!r}")

    @property
    def elementwise(self) -> bool:
        return True

    def update(self, grads: Params, params: Params, meta: Params, t: int) -> Params:
        return {k: torch.clamp(g, -self.value, self.value) for k, g in grads.items()}


class _Delegating(Learner):
    """Every part of the ``Learner`` interface handed to ``self.rule``; subclasses change one or two."""

    rule: Learner

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.rule.name

    @property
    def nominal_lr(self) -> Optional[float]:
        return self.rule.nominal_lr

    @property
    def elementwise(self) -> bool:
        return self.rule.elementwise

    def adapts(self, key: str) -> bool:
        return self.rule.adapts(key)

    def init_meta(self, params: Params) -> Params:
        return self.rule.init_meta(params)

    def init(self, params: Params, meta: Params) -> Any:
        return self.rule.init(params, meta)

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        return self.rule.step(grads, params, state, meta, t, loss)


@dataclass(frozen=True)
class Chain(_Delegating):
    """``rule`` applied to the gradients after ``transforms`` (in order); everything else is ``rule``'s."""

    transforms: tuple[GradientTransform, ...]
    rule: Learner

    @property
    def elementwise(self) -> bool:
        return self.rule.elementwise and all(g.elementwise for g in self.transforms)

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        for g in self.transforms:
            grads = g.update(grads, params, meta, t)
        return self.rule.step(grads, params, state, meta, t, loss)


@dataclass(frozen=True)
class Masked(_Delegating):
    """``rule`` on the parameters whose key ``where`` accepts (and ``rule`` itself adapts); the rest fixed."""

    rule: Learner
    where: Callable[[str], bool]

    def adapts(self, key: str) -> bool:
        return bool(self.where(key)) and self.rule.adapts(key)

    def init_meta(self, params: Params) -> Params:
        kept = {k: v for k, v in params.items() if self.adapts(k)}
        if not kept:
            raise InputError(f"masked: the mask accepts none of the parameters {', '.join(params)}; nothing would adapt")
        return self.rule.init_meta(kept)


def clip(value: float) -> Clip:
    """The transform ``g <- clamp(g, -value, value)``."""
    return Clip(value)


def chain(*parts: GradientTransform | Learner) -> Chain:
    """``chain(g1, ..., gn, rule)``: the transforms in order, then the rule (optax's ``chain``)."""
    if not parts or not isinstance(parts[-1], Learner):
        raise InputTypeError("chain: the last argument must be the update rule (a Learner), e.g. "
                             f"chain(clip(10.0), SGD(0.01)); got {', '.join(type(p).__name__ for p in parts) or 'nothing'}")
    bad = [type(p).__name__ for p in parts[:-1] if not isinstance(p, GradientTransform)]
    if bad:
        raise InputTypeError(f"chain: every argument before the rule must be a gradient transform such as clip(...), "
                             f"got {bad[0]}")
    return Chain(tuple(parts[:-1]), parts[-1])


def masked(rule: Learner, where: Callable[[str], bool]) -> Masked:
    """``rule`` adapting only the parameters whose key ``where`` accepts (optax's ``masked``)."""
    if not isinstance(rule, Learner) or not callable(where):
        raise InputTypeError(f"masked: expected (Learner, callable key -> bool), got ({type(rule).__name__}, "
                             f"{type(where).__name__})")
    return Masked(rule, where)
