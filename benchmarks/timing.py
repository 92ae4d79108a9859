"""Interleaved timing, the protocol every benchmark here uses (the machine's speed swings by 30% or
more within seconds, so contenders are timed side by side, never one block after another)."""
from __future__ import annotations

import random
import time
from typing import Callable, Hashable, Mapping, TypeVar

__all__ = ["interleaved"]

K = TypeVar("K", bound=Hashable)


def interleaved(steps: Mapping[K, Callable[[], object]], rounds: int, iters: int,
                seed: int = 0) -> dict[K, list[list[float]]]:
    """Seconds of every call: ``rounds`` rounds, each running every step ``iters`` times in an order
    shuffled by ``Random(seed)``; ``out[key][r]`` holds round ``r``'s ``iters`` timings."""
    out: dict[K, list[list[float]]] = {k: [] for k in steps}
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(steps)
        rng.shuffle(order)
        for k in order:
            ts = []
            for _ in range(iters):
                t = time.perf_counter()
                steps[k]()
                ts.append(time.perf_counter() - t)
            out[k].append(ts)
    return out
