"""``evaluate``: adapt to held-out tasks and summarise; the statistics every table uses.

``adaptation_curves(module, tasks, steps)`` is the query metric (MSE or accuracy) of every task
after ``0..steps`` inner steps, ``[n_tasks, steps + 1]`` for a ``MAML`` and ``[P, n_tasks, steps + 1]``
for a ``Population``, computed in chunks to bound memory; ``evaluate`` adds the mean and 95%
interval after each step. Across runs, ``robust_summary`` is 004's statistic (IQR outliers out).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from tqdm.auto import tqdm

from .errors import InputError, InputTypeError, check_int
from .batch import TaskBatch

__all__ = ["mean_ci95", "robust_summary", "iqr_kept", "adaptation_curves", "evaluate", "fixed_tasks"]


def fixed_tasks(task: Any, n_tasks: int, seed: int, dtype: torch.dtype = torch.float32) -> TaskBatch:
    """``n_tasks`` tasks drawn once from ``task`` with a generator seeded ``seed`` (the same held-out
    set for every model and run that uses the seed)."""
    return task.sample(n_tasks, torch.Generator().manual_seed(seed), dtype)


@torch.no_grad()
def adaptation_curves(module: Any, tasks: TaskBatch | tuple[Any, int, int], steps: Optional[int] = None, *,
                      chunk: int = 100, dtype: torch.dtype = torch.float32, progress: bool = False,
                      desc: str = "eval") -> torch.Tensor:
    """Query metric after ``0..steps`` inner steps (default: the module's own) for every task.

    ``tasks`` is a ``TaskBatch`` or ``(distribution, n_tasks, seed)``, drawn chunk by chunk from one
    generator seeded ``seed`` (so a long evaluation never holds every task at once). Tasks are
    moved to the module's device. Returns ``[n, steps + 1]`` (MAML) or ``[P, n, steps + 1]`` (Population).
    """
    check_int("evaluate", "chunk", chunk, 1, InputError)
    if not isinstance(dtype, torch.dtype):
        raise InputTypeError(f"evaluate: dtype must be a torch.dtype such as torch.float64, got {dtype!r}")
    if steps is not None:
        check_int("evaluate", "steps", steps, 0, InputError)
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    pop = hasattr(module, "adaptation_curves")
    if isinstance(tasks, TaskBatch):
        total, draw = tasks.n_tasks, (lambda i, n: tasks[i:i + n])
    else:
        if not (isinstance(tasks, (tuple, list)) and len(tasks) == 3 and hasattr(tasks[0], "sample")):
            raise InputTypeError(f"evaluate: tasks must be a TaskBatch or (distribution, n_tasks, seed), e.g. "
                                 f"(mg.tasks.Sinusoid(k_shot=10, k_query=10), 600, 0); got {type(tasks).__name__}")
        dist, total, seed = tasks
        check_int("evaluate", "n_tasks", total, 1, InputError)
        check_int("evaluate", "seed", seed, 0, InputError)
        g = torch.Generator().manual_seed(seed)
        draw = lambda i, n: dist.sample(n, g, dtype)   # noqa: E731 (chunks in order from one generator)
    out = []
    with tqdm(total=total, desc=desc, unit="task", disable=not progress, leave=False) as bar:
        for i in range(0, total, chunk):
            b = draw(i, min(chunk, total - i)).to(device)
            c = module.adaptation_curves(b, steps) if pop else module.adaptation_curve(b, steps)
            out.append(c.cpu())
            bar.update(b.n_tasks)
    return torch.cat(out, dim=1 if pop else 0)


def evaluate(module: Any, tasks: TaskBatch | tuple[Any, int, int], steps: Optional[int] = None, *,
             chunk: int = 100, dtype: torch.dtype = torch.float32, progress: bool = False,
             **extra: Any) -> dict[str, Any] | list[dict[str, Any]]:
    """Mean and 95% interval of the query metric after each of ``0..steps`` steps on ``tasks``.

    Returns ``{"metric", "mean", "ci95", "n_tasks", "steps", "curve", "curve_ci95", **extra}``
    (``mean``/``ci95`` after ``steps`` steps), or one such dict per member of a ``Population``.
    """
    template = getattr(module, "template", module)
    steps = template.inner_steps if steps is None else steps
    curves = adaptation_curves(module, tasks, steps, chunk=chunk, dtype=dtype, progress=progress)
    per_member = curves if curves.dim() == 3 else curves.unsqueeze(0)
    out = []
    for c in per_member.to(torch.float64):
        stats = [mean_ci95(c[:, t]) for t in range(c.shape[1])]
        out.append({"metric": template.metric_name, "mean": stats[-1][0], "ci95": stats[-1][1],
                    "n_tasks": c.shape[0], "steps": steps, **extra,
                    "curve": [m for m, _ in stats], "curve_ci95": [h for _, h in stats]})
    return out if curves.dim() == 3 else out[0]


def mean_ci95(values: Sequence[float] | torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval, ``1.96 * std / sqrt(n)``.

    The convention of Finn et al. 2017 and 001/000 (normal approximation over test tasks).
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise InputError("mean_ci95: no values")
    if v.numel() == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(1.96 * v.std(unbiased=True) / math.sqrt(v.numel()))


def iqr_kept(values: Sequence[float]) -> list[bool]:
    """Which of ``values`` 004's statistics keep: finite and inside ``[Q1 - 1.5 IQR, Q3 + 1.5 IQR]``
    of the finite ones (all False if none is finite)."""
    v = torch.as_tensor(list(values), dtype=torch.float64)
    fin = torch.isfinite(v)
    if not bool(fin.any()):
        return [False] * v.numel()
    q1, q3 = torch.quantile(v[fin], 0.25), torch.quantile(v[fin], 0.75)
    iqr = q3 - q1
    return (fin & (v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)).tolist()


def robust_summary(values: Sequence[float]) -> dict[str, float | int]:
    """004's across-run statistics: drop outliers outside ``[Q1 - 1.5 IQR, Q3 + 1.5 IQR]``,
    then report mean, median and 95% interval of the rest (and how many were dropped)."""
    v = torch.as_tensor(list(values), dtype=torch.float64)
    finite = int(torch.isfinite(v).sum())
    if finite == 0:
        return {"mean": float("nan"), "median": float("nan"), "ci95": float("nan"), "n": 0, "outliers": 0}
    keep = v[iqr_kept(values)]
    mean, ci = mean_ci95(keep)
    return {"mean": mean, "median": float(keep.median()), "ci95": ci, "n": int(keep.numel()),
            "outliers": finite - int(keep.numel())}
