"""000's figures redrawn from the runs of the ``universality-*`` specs (``Spec.plot`` hooks).

Each reads only the table rows and the runs' summaries (``evals[name]["curve"]``: mean and 95%
interval after every step), never a model: a figure can be redrawn from committed records.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...plotting import curve_with_band, figure_legend, pyplot, save_figure

__all__ = ["plot_steps", "plot_ood", "plot_depth", "pooled_curve"]

COLOURS = {"MAML": "C0", "oracle": "C2", "SNAIL": "C3"}
LABELS = {"MAML": "MAML (trained with 5 steps)", "oracle": "task-conditioned oracle, fine-tuned", "SNAIL": "SNAIL (no steps)"}


def pooled_curve(runs: list[dict[str, Any]], name: str) -> tuple[list[float], list[float]]:
    """Mean curve of evaluation ``name`` over runs, and the 95% interval of that mean
    (``sqrt(sum ci_r^2) / R``: the runs' test sets are independent)."""
    curves = [r["evals"][name] for r in runs if "curve" in r["evals"].get(name, {})]
    if not curves:
        return [], []
    R = len(curves)
    mean = [sum(c["curve"][t] for c in curves) / R for t in range(len(curves[0]["curve"]))]
    ci = [math.sqrt(sum((c["curve_ci95"][t] or 0.0) ** 2 for c in curves)) / R for t in range(len(mean))]
    return mean, ci


def plot_steps(out: Path, rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> None:
    """000 Fig. 2: MSE against gradient steps at test time, in and out of distribution (``steps.png``)."""
    from .universality import N_STEPS, SINE_MODELS
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    titles = {"in": "in distribution: A in [0.1, 5], p in [0, pi]", "out": "out of distribution: A in [5, 10], p in [pi, 2 pi]"}
    for ax, d in zip(axes, ("in", "out")):
        for m in SINE_MODELS:
            mean, ci = pooled_curve(runs.get(f"sine-{m}", []), f"{d}-s{N_STEPS}")
            if not mean:
                continue
            curve_with_band(ax, mean, ci, color=COLOURS[m], label=LABELS[m], ls="--" if m == "SNAIL" else "-")
        ax.axvline(5, color="grey", ls=":", lw=1)
        ax.text(5.5, 0.02, "MAML's 5 training steps", transform=ax.get_xaxis_transform(), fontsize=7, va="bottom",
                color="grey")
        ax.set_yscale("log")
        ax.set_xlabel("gradient steps on the 5 support points")
        ax.set_ylabel("test MSE (mean, 95% interval)")
        ax.set_title(titles[d], fontsize=9)
        ax.grid(alpha=0.3, which="both")
    figure_legend(fig, axes, ncol=3, fontsize=8)
    fig.suptitle("000 Fig. 2 redrawn: more gradient steps at test time (sine, 5-shot)", fontsize=10)
    save_figure(fig, out / "steps.png")


def plot_ood(out: Path, rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> None:
    """000 Fig. 3 left / Fig. 6 left: MSE against amplitude and against phase (``ood.png``)."""
    from .universality import SINE_MODELS
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for ax, key, train, xlabel in ((axes[0], "amplitude", (0.1, 5.0), "sine amplitude A (phase p ~ U[0, pi])"),
                                   (axes[1], "phase", (0.0, math.pi), "sine phase p (amplitude A ~ U[0.1, 5])")):
        ax.axvspan(*train, color="grey", alpha=0.12, lw=0, label="meta-training range")
        for m in SINE_MODELS:
            pts = sorted((r["setting"][key], r["mean"], r["ci95"] or 0.0) for r in rows
                         if r["model"] == m and isinstance(r["setting"].get(key), float) and r["mean"] is not None)
            if pts:
                x, y, c = zip(*pts)
                ax.errorbar(x, y, yerr=c, color=COLOURS[m], marker="o", ms=3, capsize=2,
                            label={"oracle": "task-conditioned oracle (as trained)", "MAML": "MAML (5 steps)"}.get(m, m))
        if key == "phase":
            ax.set_xticks([i * math.pi / 2 for i in range(5)], ["0", "pi/2", "pi", "3pi/2", "2pi"])
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test MSE (mean, 95% interval)")
        ax.grid(alpha=0.3, which="both")
    figure_legend(fig, axes, ncol=4, fontsize=8)
    fig.suptitle("000 Fig. 3 left / Fig. 6 left redrawn: out-of-distribution sine tasks (5-shot)", fontsize=10)
    save_figure(fig, out / "ood.png")


def plot_depth(out: Path, rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> None:
    """000 Fig. 5: MSE against hidden layers at about 40,000 parameters, mean ± std over runs (``depth.png``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, m in enumerate(("MAML", "oracle")):
        pts = sorted((r["setting"]["hidden_layers"], r["mean"], r.get("std_runs") or 0.0, r["runs_used"]) for r in rows
                     if r["model"] == m and r["mean"] is not None)
        if pts:
            d, y, s, n = zip(*pts)
            ax.errorbar([x + (i - 0.5) * 0.08 for x in d], y, yerr=s, color=COLOURS[m], marker="o", capsize=3,
                        label=f"{'MAML (1 step)' if m == 'MAML' else 'task-conditioned oracle'} "
                              f"({min(n)} run{'s' if min(n) > 1 else ': no std'})")
    widths = sorted({(r["setting"]["hidden_layers"], r["setting"]["width"]) for r in rows})
    ax.set_xticks([d for d, _ in widths], [f"{d}\n({w})" for d, w in widths])
    ax.set_xlabel("hidden layers (units per layer)")
    ax.set_ylabel("test MSE (mean ± std over runs)")
    ax.set_yscale("log")
    ax.set_title("000 Fig. 5 redrawn: depth at ~40k parameters (degree-3 polynomials)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, out / "depth.png")
