"""Plots that read only what runs wrote (``eval.json``, ``metrics.jsonl``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

__all__ = ["plot_adaptation", "plot_training", "plot_lines", "pyplot", "save_figure"]


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use: the
    library itself does not need matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | Path) -> None:
    """Save ``fig`` to ``path`` (parent folders created) and close it; written beside the target,
    then renamed, so a crash leaves no half-written image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        pyplot().close(fig)


def plot_adaptation(result: Mapping[str, Any], path: str | Path, title: str = "") -> None:
    """Query metric (mean and 95% CI band) against the number of inner steps."""
    plt = pyplot()
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
    save_figure(fig, path)


def plot_training(metrics: str | Path, path: str | Path, title: str = "") -> None:
    """Meta-training loss (and validation metric, if logged) against iterations."""
    plt = pyplot()
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
    save_figure(fig, path)


def plot_lines(lines: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, xlabel: str, ylabel: str,
               logy: bool = False, styles: Optional[Mapping[str, Mapping[str, Any]]] = None, title: str = "",
               figsize: tuple[float, float] = (5, 3.5)) -> None:
    """One marked line per ``label -> [(x, y), ...]`` (points sorted by x; empty lines skipped).

    ``styles[label]``: extra ``Axes.plot`` arguments for that line (colour per model, line style
    per variant, ...). The legend sits outside the axes, so it never hides a point.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    for label, pts in lines.items():
        if pts:
            ax.plot(*zip(*sorted(pts)), **{"marker": "o", **(styles or {}).get(label, {})}, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
