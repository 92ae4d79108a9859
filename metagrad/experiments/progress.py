"""How far a table's runs in training are, in a few committed bytes.

A run in training checkpoints to ``cells/CELL_sSEEDS.partial.pt`` (megabytes, rewritten every few
minutes; under ``reproductions/`` committed with the record, so a fresh checkout continues the run).
At each report its iteration, last validation and training seconds are copied to
``cells/CELL_sSEEDS.progress.json`` (committed with the table), which the table shows:
``training s0: iteration 12000 of 60000 (validation 0.962 at 12000), about 3.5 h left at its pace since
iteration 8000``. The pace is that of the latest stretch between two reports (a session's, as the record is
reported at each stop), since a long run's earlier stretches may have shared the machine differently;
where there is none yet, that of the whole run. Where the checkpoint is gone and its progress file is not,
the table says how far the run got and that it will train again from the start.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import write_json

__all__ = ["progress_line", "progress_elsewhere", "progress_file", "time_left"]

_MIN_STRETCH_S = 600   # a pace over less training time than this is too noisy to plan by


def progress_file(part: Path) -> Path:
    """``cells/CELL_sSEEDS.progress.json`` beside the checkpoint ``cells/CELL_sSEEDS.partial.pt``."""
    return part.with_name(part.name[:-len(".partial.pt")] + ".progress.json")


def _refresh(part: Path, iterations: int) -> None:
    """Copy checkpoint ``part``'s progress to its progress file (rewritten only when it changed)."""
    import torch
    try:
        ck = torch.load(part, map_location="cpu", weights_only=False)
    except Exception:   # a checkpoint being written or damaged: keep the last progress, never an error
        return
    last = [c[-1] for c in ck.get("fit", {}).get("curves", []) if c]   # validations so far, per run
    info = {"iteration": int(ck["iteration"]), "iterations": iterations,
            "validation": None if not last else [last[-1][0], sum(v for _, v in last) / len(last), len(last)],
            "seconds": round(float(ck.get("timing", {}).get("train_seconds", 0.0)))}
    path = progress_file(part)
    before = json.loads(path.read_text()) if path.exists() else None
    if before is not None and before.get("seconds") is not None:   # where the latest stretch starts
        kept = before.get("since")
        if before["iteration"] == info["iteration"] and kept:
            info["since"] = kept
        elif before["iteration"] < info["iteration"] and before["seconds"] < info["seconds"]:
            # the report before starts it, unless that one's own stretch was under ten minutes (reports
            # a few minutes apart): then the stretch grows from where that one began
            short = kept and before["seconds"] - kept[1] < _MIN_STRETCH_S
            info["since"] = kept if short else [before["iteration"], before["seconds"]]
    if before != info:
        write_json(path, info)


def time_left(info: dict[str, Any]) -> str:
    """``", about 3.5 h left at its pace since iteration 8000"`` from a progress file: the pace of its latest
    stretch (``since``: the iteration and training seconds of the report before) where that stretch is
    at least ten minutes long, else ``"at its pace so far"`` (none in files without training seconds).

    remaining = (iterations - iteration) * (seconds - seconds_since) / (iteration - iteration_since)"""
    done, secs = info["iteration"], info.get("seconds")
    if not secs or not done:
        return ""
    since = info.get("since")
    if since and secs - since[1] >= _MIN_STRETCH_S and done > since[0]:
        per, pace = (secs - since[1]) / (done - since[0]), f"its pace since iteration {since[0]}"
    else:
        per, pace = secs / done, "its pace so far"
    left = per * (info["iterations"] - done)
    return f", about {left / 3600:.1f} h left at {pace}" if left >= 3600 else \
        f", about {max(left / 60, 1):.0f} min left at {pace}"


def progress_line(store: Path, cell_id: str, iterations: int, where: str = "") -> str:
    """``"; training s0: iteration 12000 of 60000 (validation 0.962 at 12000), ..."`` for each run of cell
    ``cell_id`` in training under ``store/cells`` (empty when none is); ``where`` follows the seeds
    (``" in omniglot-table3 (MAML_5way)"``, for another record's run that a table waits for)."""
    cells = store / "cells"
    for part in sorted(cells.glob(f"{cell_id}_s*.partial.pt")):
        _refresh(part, iterations)
    parts = []
    for p in sorted(cells.glob(f"{cell_id}_s*.progress.json")):
        info = json.loads(p.read_text())
        v = info["validation"]
        val = "" if v is None else f" (validation {v[1]:.4g} at {v[0]}{f', mean of {v[2]} runs' if v[2] > 1 else ''})"
        head = f"; training {p.name[len(cell_id) + 1:-len('.progress.json')]}{where}: "
        if (cells / p.name.replace(".progress.json", ".partial.pt")).exists():
            parts.append(f"{head}iteration {info['iteration']} of {info['iterations']}{val}{time_left(info)}")
        else:   # the resume point is committed with the record: without it the run starts again
            parts.append(f"{head}reached iteration {info['iteration']} of {info['iterations']}{val}, but its "
                         "checkpoint is not here: it trains again from the start")
    return "".join(parts)


def progress_elsewhere(part: Path, iterations: int) -> str:
    """``progress_line`` of the run whose resume point is ``part`` in another record's ``cells/``
    (``kept_runs.find_training``): ``"; training s0 in omniglot-table3 (MAML_5way): iteration ..."``."""
    cell_id = part.name.rsplit("_s", 1)[0]   # cells/CELL_sSEEDS.partial.pt
    return progress_line(part.parent.parent, cell_id, iterations, where=f" in {part.parent.parent.name} ({cell_id})")
