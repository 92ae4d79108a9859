"""Where one meta-iteration spends its time, by aten operator and shape, measured where it runs.

``torch.profiler`` with ``record_shapes=True`` slowed the elementwise operators of a vmapped
second-order step several-fold on this host (a 2 ms product reported at 40 ms), so its per-shape
shares are not trustworthy here; without shapes it cannot tell a layer's convolution from another's.
``op_times`` instead times every aten call below autograd and ``vmap`` (a ``TorchDispatchMode`` sees
the physical tensors: a per-task convolution appears as the grouped convolution vmap makes of it),
and keys each call that takes at least ``min_ms`` by its operator, input shapes and, for
convolutions, the arguments that choose the kernel (transposed, groups, stride, dilation, output
mask). Shorter calls are pooled under the operator's name. The mode adds a few microseconds a call,
so read the large rows; the wall time less the time inside aten calls is the step's Python
(the mode's own cost included).
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["op_times", "format_op_times"]


def _key(func: Any, args: tuple) -> str:
    name = str(func).removeprefix("aten.").removesuffix(".default")
    shapes = [tuple(a.shape) for a in args[:3] if isinstance(a, torch.Tensor)]
    if name == "convolution":   # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
        return f"{name} {shapes} transposed={args[6]} groups={args[8]} stride={list(args[3])} dilation={list(args[5])}"
    if name == "convolution_backward":   # (..., groups, output_mask)
        return f"{name} {shapes} groups={args[9]} mask={list(args[10])}"
    return f"{name} {shapes}"


class _Timer(TorchDispatchMode):
    def __init__(self, min_ms: float) -> None:
        super().__init__()
        self.min_s = min_ms / 1000
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: defaultdict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        seconds = time.perf_counter() - start
        key = _key(func, args) if seconds >= self.min_s else str(func).removeprefix("aten.") + " (short calls)"
        self.seconds[key] += seconds
        self.calls[key] += 1
        return out


def op_times(step: Callable[[], object], min_ms: float = 0.5) -> tuple[float, list[tuple[str, int, float]]]:
    """Run ``step`` once under the timer: its wall seconds and ``(key, calls, seconds)`` rows, longest first."""
    timer = _Timer(min_ms)
    start = time.perf_counter()
    with timer:
        step()
    wall = time.perf_counter() - start
    rows = sorted(((k, timer.calls[k], s) for k, s in timer.seconds.items()), key=lambda r: -r[2])
    return wall, rows


def format_op_times(title: str, wall: float, rows: list[tuple[str, int, float]], top: int = 25) -> str:
    """A markdown table of the ``top`` rows with each one's share of the wall time."""
    inside = sum(r[2] for r in rows)
    lines = [f"{title}: {1000 * wall:.0f} ms under the timer, {1000 * inside:.0f} ms inside aten calls",
             "| aten call (shapes as vmap hands them on) | calls | ms | share |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {k} | {n} | {1000 * s:.1f} | {100 * s / wall:.1f}% |" for k, n, s in rows[:top]]
    return "\n".join(lines)
