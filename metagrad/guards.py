"""``fit``'s divergence guard: which members diverged at an iteration, and why, in words.

Member ``p`` diverged when its meta-loss ``F_p`` or its squared meta-gradient norm is not finite
(the square overflowing is where Adam's second moment would), or when ``F_p`` exploded:

    log F_p > level_p + log(explode),    level_p <- 0.99 level_p + 0.01 log F_p  (accepted iterations)

``level_p`` is a running geometric mean of the member's accepted losses, so a loss a million times
(``explode = 1e6``) its recent level counts as diverged before it reaches the optimiser. What
happens then is ``fit``'s ``nonfinite`` policy (``NONFINITE``).
"""
from __future__ import annotations

import math
from typing import Optional

from torch import Tensor

__all__ = ["NONFINITE", "diverged", "why", "updated_level"]

NONFINITE = ("raise", "stop", "skip")


def _exploded(v: float, level: Optional[float], explode: Optional[float]) -> bool:
    return explode is not None and level is not None and math.isfinite(v) and v > 0 and \
        math.log(v) > level + math.log(explode)


def diverged(values: Tensor, sq_norms: Tensor, level: list[Optional[float]], explode: Optional[float]) -> list[int]:
    """The members whose loss or gradient is not finite, or whose loss exploded."""
    return [p for p, v in enumerate(values.tolist())
            if not math.isfinite(v) or not math.isfinite(sq_norms[p].item()) or _exploded(v, level[p], explode)]


def why(v: float, level: Optional[float], explode: Optional[float]) -> str:
    """What the guard saw, for the error message."""
    if not math.isfinite(v):
        return f"the meta-loss is {v}"
    if _exploded(v, level, explode):
        return f"the meta-loss exploded to {v:.4g}, over {explode:g} times its running level {math.exp(level):.4g}"
    return "the meta-gradient is not finite (or its square overflows)"


def updated_level(level: Optional[float], v: float) -> float:
    """The running log-level after an accepted loss ``v`` (the first one sets it)."""
    lv = math.log(max(v, 1e-30))
    return lv if level is None else 0.99 * level + 0.01 * lv
