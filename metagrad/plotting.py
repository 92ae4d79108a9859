"""Plots that read only what runs wrote (``eval.json``, ``metrics.jsonl``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

__all__ = ["plot_adaptation", "plot_training"]


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    # Write beside the target, then rename: no half-written image on a crash.
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)


def plot_adaptation(result: Mapping[str, Any], path: str | Path, title: str = "") -> None:
    """Query metric (mean and 95% CI band) against the number of inner steps."""
    plt = _plt()
    curve, ci = result["curve"], result["curve_ci95"]
    steps = list(range(len(curve)))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(steps, curve, marker="o", ms=3)
    ax.fill_between(steps, [m - c for m, c in zip(curve, ci)], [m + c for m, c in zip(curve, ci)], alpha=0.25)
    ax.set_xlabel("inner steps at test time")
    ax.set_ylabel(result["metric"])
    if result["metric"] == "mse":
        ax.set_yscale("log")
    ax.set_title(f"{title} ({result['n_tasks']} tasks, k={result.get('k_shot')})")
    ax.grid(alpha=0.3)
    _save(fig, Path(path))
    plt.close(fig)


def plot_training(metrics: str | Path, path: str | Path, title: str = "") -> None:
    """Meta-training loss (and validation metric, if logged) against iterations."""
    plt = _plt()
    rows = [json.loads(ln) for ln in Path(metrics).read_text().splitlines() if ln.strip()]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["iteration"] for r in rows], [r["loss"] for r in rows], label="meta-training loss")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("query loss")
    val = [(r["iteration"], v) for r in rows for k, v in r.items() if k.startswith("val_") and k != "val_ci95"]
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), color="C1", marker="o", ms=3, label="validation")
        ax2.set_ylabel("validation metric")
    timed = [(r["iteration"], r["elapsed_s"] / 60) for r in rows if "elapsed_s" in r]
    if len(timed) >= 2:
        # wall clock on the top axis: people ask "how good after N minutes", not only "after N iterations"
        import numpy as np
        its, mins = (np.asarray(v, dtype=float) for v in zip(*timed))
        top = ax.secondary_xaxis("top", functions=(lambda i: np.interp(i, its, mins),
                                                   lambda m: np.interp(m, mins, its)))
        top.set_xlabel("wall clock (min)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, Path(path))
    plt.close(fig)
