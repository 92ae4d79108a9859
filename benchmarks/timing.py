"""Interleaved timing, the protocol every benchmark here uses (the machine's speed swings by 30% or
more within seconds, so contenders are timed side by side, never one block after another)."""
from __future__ import annotations

import math
import platform
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence, TypeVar

__all__ = ["interleaved", "median_interval", "cpu_description", "meta_step", "patched", "data_root"]

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


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of the rounds' values (order statistics): the
    ``k``-th smallest and ``k``-th largest, with ``k`` the largest such that ``P(Binomial(n, 1/2) < k)
    <= (1 - level) / 2``, so it covers the median with probability at least ``level`` whatever the
    distribution (rounds independent). Too few rounds for the level (fewer than 6 at 95%): the range."""
    xs, n = sorted(values), len(values)
    tail, k, cum = (1 - level) / 2, 0, 0.0
    while True:
        cum += math.comb(n, k) / 2 ** n   # P(B <= k)
        if cum > tail:
            break
        k += 1
    return (xs[0], xs[-1]) if k == 0 else (xs[k - 1], xs[n - k])


def cpu_description() -> str:
    """The CPU's model name and the instruction set torch's kernels dispatch to (e.g. ``AMD EPYC,
    AVX512``): ratios against another library shift with it (oneDNN's convolutions gain more from
    AVX-512 than a loop of small calls does), so every measurement names its machine."""
    import torch
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}"


def meta_step(algo, opt, batch) -> float:
    """One meta-iteration as training runs it (meta-loss, backward, optimizer step); its loss."""
    loss = algo.meta_loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


@contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """``obj.name = value`` inside the block, restored after it: the A/B switch of a library hook."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def data_root() -> Path | None:
    """Where the benchmarks read their data sets: ``None`` when ``$METAGRAD_DATA`` is set (the
    library's own rule then finds them), else ``../shared/data`` beside the checkout."""
    import os
    return None if os.environ.get("METAGRAD_DATA") else Path(__file__).resolve().parents[2] / "shared" / "data"
