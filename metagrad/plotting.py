"""Plots that read only what runs wrote (``eval.json``, ``metrics.jsonl``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

__all__ = ["plot_adaptation", "plot_training", "plot_lines", "pyplot", "save_figure", "figure_path", "curve_with_band",
           "figure_legend"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use: the
    library itself does not need matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figure_path(path: str | Path, where: str = "plot") -> Path:
    """``path`` as an image file that matplotlib can write (its suffix names the format), else an
    ``InputError`` naming ``where``, the path and the formats: checked before the work it plots."""
    from matplotlib.backend_bases import FigureCanvasBase

    from .errors import InputError
    p, formats = Path(path), FigureCanvasBase.get_supported_filetypes()
    if not str(path) or p.is_dir():
        raise InputError(f"{where}: {str(path)!r} is not an image file name; give one such as training.png")
    if p.suffix[1:].lower() not in formats:
        why = f"{p.suffix!r} is not an image format" if p.suffix else "the name has no suffix"
        raise InputError(f"{where}: cannot write {str(path)!r}: {why}; end it in one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    return p


def save_figure(fig: Any, path: str | Path) -> None:
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


def figure_legend(fig: Any, axes: Sequence[Any], **kwargs: Any) -> None:
    """One legend below the panels with every label drawn in any of ``axes``, each once, in the
    order first drawn (a panel may lack a line another has, e.g. a model not run there yet)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", **kwargs)


def log_axis(ax: Any, axis: str = "y") -> None:
    """A log scale labelled with plain numbers (``0.3``, ``3``, not ``3 x 10^0``), minor ticks too
    where the range spans less than a decade (else they would carry no label at all)."""
    from matplotlib.ticker import FuncFormatter
    fmt = FuncFormatter(lambda v, _: f"{v:.3g}")
    getattr(ax, f"set_{axis}scale")("log")
    a = getattr(ax, f"{axis}axis")
    a.set_major_formatter(fmt)
    a.set_minor_formatter(fmt)
    a.set_tick_params(which="minor", labelsize=8)


def curve_with_band(ax: Any, mean: Sequence[float], ci: Sequence[float], scale: float = 1.0,
                    band_alpha: float = 0.2, **line: Any) -> None:
    """``mean`` against ``0, 1, ..., len(mean) - 1`` (steps) with its 95% interval ``mean +- ci`` as a
    shaded band of the line's colour; ``scale`` multiplies both (100 for percentages)."""
    x = list(range(len(mean)))
    (drawn,) = ax.plot(x, [scale * m for m in mean], **line)
    ax.fill_between(x, [scale * (m - c) for m, c in zip(mean, ci)], [scale * (m + c) for m, c in zip(mean, ci)],
                    color=drawn.get_color(), alpha=band_alpha, lw=0)


def plot_adaptation(result: Mapping[str, Any], path: str | Path, title: str = "") -> None:
    """Query metric (mean and 95% CI band) against the number of inner steps."""
    plt = pyplot()
    curve, ci = result["curve"], result["curve_ci95"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    curve_with_band(ax, curve, ci, band_alpha=0.25, marker="o", ms=3)
    ax.set_xlabel("inner steps at test time")
    ax.set_ylabel(result["metric"])
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # steps are whole numbers
    if result["metric"] == "mse":
        log_axis(ax)
    ax.set_title(f"{title} ({result['n_tasks']} tasks, k={result.get('k_shot')})")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_training(metrics: str | Path, path: str | Path, title: str = "") -> None:
    """Meta-training loss (and validation metric, if logged) against iterations; the wall clock of
    training (``timing.jsonl`` beside ``metrics``, where present) on the top axis."""
    plt = pyplot()
    rows = [json.loads(ln) for ln in Path(metrics).read_text().splitlines() if ln.strip()]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    lines = ax.plot([r["iteration"] for r in rows if "loss" in r], [r["loss"] for r in rows if "loss" in r],
                    label="meta-training loss")
    log_axis(ax)
    ax.set_xlabel("iteration")
    ax.set_ylabel("query loss")
    name = next((k for r in rows for k in r if k.startswith("val_") and k != "val_ci95"), None)
    val = [(r["iteration"], r[name]) for r in rows if isinstance(r.get(name), (int, float))]   # one run's values
    if val:
        ax2 = ax.twinx()
        lines += ax2.plot(*zip(*val), color="C1", marker="o", ms=3, label=f"validation ({name[4:]})")
        ax2.set_ylabel(f"validation {name[4:]}")
        ax.legend(handles=lines, fontsize=7, loc="upper right")
    timing = Path(metrics).with_name("timing.jsonl")   # wall clock lives apart from the metrics
    trows = [json.loads(ln) for ln in timing.read_text().splitlines() if ln.strip()] if timing.exists() else []
    last = max((r for r in trows if "train_seconds" in r and r["iteration"] > 0), key=lambda r: r["iteration"],
               default=None)
    if last is not None and last["train_seconds"] > 0:
        # the training time on the top axis, at the run's mean pace (people ask "how good after N
        # minutes", not only "after N iterations"); a linear scale, so its ticks are evenly spaced
        total = last["train_seconds"] * max(r["iteration"] for r in rows) / last["iteration"]
        unit, name = (1, "s") if total < 120 else (60, "min") if total < 7200 else (3600, "h")
        rate = last["train_seconds"] / last["iteration"] / unit
        top = ax.secondary_xaxis("top", functions=(lambda i: i * rate, lambda t: t / rate))
        top.set_xlabel(f"training time ({name}, at the run's mean pace)")
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
