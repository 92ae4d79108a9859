"""``metagrad runs``: the run folders under some paths, one line each: what it trains, how far, how good.

A run folder is one ``metagrad train`` wrote (it has ``config.json``). Only its small files are read
(``config.json``, ``metrics.jsonl``, ``timing.jsonl``, ``eval.json``) and its lock (is a process writing
it now?), never the checkpoint, so listing hundreds of runs takes moments. A file that cannot be read
makes that run's line say so; it never stops the listing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import MetagradError, RunError
from ..runlog import JsonLog, lock_holder
from .config import Config

__all__ = ["RunInfo", "find_runs", "find_records", "read_run", "format_runs", "format_records", "plot_runs"]


@dataclass(frozen=True)
class RunInfo:
    """What ``metagrad runs`` says of one run folder."""

    path: Path
    trains: str                          # Config.summary(), or why the config could not be read
    state: str                           # training (pid N) / finished / stopped / not started / ...
    iteration: Optional[int] = None      # the last logged iteration
    iterations: Optional[int] = None
    val: Optional[tuple[int, float, str]] = None   # (iteration, value, name) of the best validation
    test: Optional[str] = None           # eval.json as ``metagrad eval`` prints it
    seconds: Optional[float] = None      # training time so far


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Every folder at or below ``paths`` holding a ``config.json`` (a run folder), sorted; a path that
    does not exist is a one-line ``RunError``."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise RunError(f"runs: {str(p)!r} does not exist (give run folders or folders that hold them)")
        found.update(c.parent for c in p.rglob("config.json"))   # p's own config.json included
    return sorted(found)


def find_records(paths: Iterable[str | Path]) -> list[tuple[Path, str, str]]:
    """``(folder, experiment, state)`` for every reproduction record at or below ``paths`` (a folder
    whose ``results.json`` names its experiment, as ``metagrad reproduce`` writes it), sorted; ``state``
    is ``"complete"``, ``"partial, N cell(s) missing"`` or ``""`` where the file does not say."""
    found = []
    for c in {c for p in map(Path, paths) if p.exists() for c in p.rglob("results.json")}:
        try:
            results = json.loads(c.read_text())
            name = results.get("experiment")
        except (OSError, ValueError, AttributeError):   # unreadable, not JSON, or not a JSON object
            continue
        if isinstance(name, str):
            missing = results.get("missing")
            state = "" if "partial" not in results else "complete" if not results["partial"] else \
                f"partial, {len(missing) if isinstance(missing, list) else '?'} cell(s) missing"
            found.append((c.parent, name, state))
    return sorted(found)


def format_records(records: list[tuple[Path, str, str]]) -> str:
    """One line per record: how to see its cells (records are tables of runs, not runs), with the
    experiment's options where the folder is one of ``records.RECORDS`` (e.g. ``--data thesis``)."""
    from .records import RECORDS
    lines = []
    for path, name, state in records:
        known = RECORDS.get(path.name)
        options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in known[1].items()) if known and known[0] == name else ""
        lines.append(f"{path}: record of `metagrad reproduce {name}`{f' ({state})' if state else ''}; its cells and "
                     f"their progress: metagrad reproduce {name}{options} --out {path} --list")
        kept = sorted((path / "cells").glob("*.run.pt"))
        if kept:   # the meta-trained models themselves: metagrad eval / mg.load_run take these files
            lines.append(f"    {len(kept)} kept run(s), e.g. {kept[0]}: metagrad eval FILE [--set ...] or "
                         "mg.load_run(FILE)")
    return "\n".join(lines)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a run's log (``JsonLog.read``: a line cut by a crash is skipped); a log damaged
    elsewhere reads as empty here, so one bad run never stops the listing."""
    try:
        return JsonLog.read(path)
    except RunError:
        return []


def _best_val(rows: list[dict[str, Any]]) -> Optional[tuple[int, float, str]]:
    """The best logged validation: highest accuracy, lowest anything else (``val_mse``, a measure)."""
    vals = [(r["iteration"], v, k) for r in rows for k, v in r.items()
            if k.startswith("val_") and isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return None
    return max(vals, key=lambda t: t[1]) if vals[0][2] == "val_accuracy" else min(vals, key=lambda t: t[1])


def _test(ev: dict[str, Any]) -> str:
    scale, unit = (100, "%") if ev["metric"] == "accuracy" else (1, "")
    return (f"{ev['metric']} {scale * ev['mean']:.4g}{unit} ± {scale * ev['ci95']:.2g}{unit} "
            f"({ev['n_tasks']} tasks, {ev['steps']} steps)")


def read_run(path: str | Path) -> RunInfo:
    """The ``RunInfo`` of run folder ``path``."""
    path = Path(path)
    try:
        cfg = Config.load(path / "config.json")
        trains, iterations = cfg.summary(), cfg.outer["iterations"]
    except (MetagradError, OSError) as e:   # bad input: said on its line; a bug still raises
        trains, iterations = f"(config.json unreadable: {str(e).splitlines()[0]})", None
    metrics = _jsonl(path / "metrics.jsonl")
    iteration = max((r["iteration"] for r in metrics if isinstance(r.get("iteration"), int)), default=None)
    timing = _jsonl(path / "timing.jsonl")
    seconds = timing[-1].get("train_seconds") if timing else None
    test = None
    holder = lock_holder(path)
    if holder is not None:
        state = f"training (pid {holder})"
    elif (path / "eval.json").is_file():
        try:
            ev = json.loads((path / "eval.json").read_text())
            test, state = _test(ev), "finished" if ev.get("stopped") is None else f"stopped early ({ev['stopped']})"
        except (json.JSONDecodeError, KeyError) as e:
            state = f"eval.json unreadable ({e})"
    elif (path / "checkpoint.pt").is_file():
        state = "stopped; continue with metagrad train --resume " + str(path)
    else:
        state = "not started (no checkpoint)"
    return RunInfo(path, trains, state, iteration, iterations, _best_val(metrics), test, seconds)


def _duration(s: Optional[float]) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def format_runs(infos: list[RunInfo]) -> str:
    """One block per run: its path and state, then what it trains, its progress and its numbers."""
    if not infos:
        return "no runs found (a run folder is one `metagrad train` wrote: it has config.json)"
    lines = []
    for r in infos:
        done = "-" if r.iteration is None else f"{r.iteration:,}" + ("" if r.iterations is None else f" of {r.iterations:,}")
        val = "-" if r.val is None else f"{r.val[2]} {r.val[1]:.4g} at {r.val[0]:,}"
        lines += [f"{r.path}: {r.state}",
                  f"    {r.trains}",
                  f"    iteration {done} | {_duration(r.seconds)} | best {val} | test {r.test or '-'}"]
    return "\n".join(lines)


def plot_runs(infos: list[RunInfo], path: str | Path) -> None:
    """The runs side by side (``metagrad runs --plot``): meta-training loss (log scale) and validation
    metric against iterations, one colour per run, labelled by its folder."""
    from ..plotting import figure_path, log_axis, pyplot, save_figure
    path = figure_path(path, "runs --plot")
    if not infos:
        raise RunError("runs --plot: no runs to plot")
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    names = [r.path.name if len({i.path.name for i in infos}) == len(infos) else str(r.path) for r in infos]
    metric = None
    for i, (r, name) in enumerate(zip(infos, names)):
        rows = _jsonl(r.path / "metrics.jsonl")
        loss = [(m["iteration"], m["loss"]) for m in rows if isinstance(m.get("loss"), (int, float))]
        if loss:
            ax.plot(*zip(*loss), color=f"C{i % 10}", lw=1, label=name)
        key = r.val[2] if r.val else None
        val = [(m["iteration"], m[key]) for m in rows if key and isinstance(m.get(key), (int, float))]
        if val:
            bx.plot(*zip(*val), color=f"C{i % 10}", marker="o", ms=3, label=name)
            metric = metric or key[4:]
    log_axis(ax)
    ax.set(xlabel="iteration", ylabel="meta-training loss", title="training")
    bx.set(xlabel="iteration", ylabel=f"validation {metric or '(none logged)'}", title="validation")
    for axis in (ax, bx):
        axis.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=min(len(infos), 4), fontsize=8)
    save_figure(fig, path)
