"""Evaluation statistics: mean and 95% confidence interval, and 004's robust across-seed summary."""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["mean_ci95", "robust_summary"]


def mean_ci95(values: Sequence[float] | torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval, ``1.96 * std / sqrt(n)``.

    The convention of Finn et al. 2017 and 001/000 (normal approximation over test tasks).
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("mean_ci95: no values")
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
