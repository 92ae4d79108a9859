"""``metagrad reproduce all``: every paper table and figure, one command, part by part.

``RECORDS`` lists every record the papers call for: its folder name under the output root, the
experiment (``specs.SPECS``) and the experiment's options (004 Table 6 twice: on our task draws and
on the thesis's own tasks). ``run_all`` runs them in that order, cheap first, each through the one
sweep (``sweep.run``: cached runs are reused, a cut-off run resumes, finished tables are rewritten
from their summaries), and returns one status line per record. A record whose data are missing
(miniImageNet, CUB: nothing is downloaded) is reported as skipped with its one-line reason, not as a
failure of the others. Past ``deadline`` no further record trains: the ones left are only tabulated
(where they have runs), so the same command in the next session continues where this one stopped.
Run over every record, it also writes ``OUT/README.md`` (``index``): what each record reproduces and
where it stands, linked, so that a reader of the committed ``reproductions/`` starts there.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..errors import ConfigError, MetagradError
from ..io import write_text
from . import specs
from .sweep import run, store

__all__ = ["RECORDS", "Status", "run_all", "format_status", "index"]

# The records in the order run_all follows (about cheapest first); each is the experiment of its name
# with default options, except where _OTHER says otherwise.
_ORDER = ("mtnet-table1", "mtnet-polynomial", "maml-convergence", "maml-convergence-sine", "universality-steps",
          "universality-ood", "mtnet-table2", "turtle-order", "turtle-table6", "turtle-table6-thesis-data",
          "universality-depth", "omniglot-table3", "universality-omniglot-ood", "universality-finetune",
          "omniglot-table3-official", "miniimagenet-table3", "turtle-images")
# 001 Table 3's Omniglot protocol on the official background/evaluation split too (issue 38: train on
# the background set, test on the evaluation set)
_OTHER: dict[str, tuple[str, Mapping[str, Any]]] = {"turtle-table6-thesis-data": ("turtle-table6", {"data": "thesis"}),
                                                    "omniglot-table3-official": ("omniglot-table3", {"split": "official"})}
# record folder -> (experiment, options)
RECORDS: dict[str, tuple[str, Mapping[str, Any]]] = {r: _OTHER.get(r, (r, {})) for r in _ORDER}


@dataclass(frozen=True)
class Status:
    """Where one record stands: ``state`` is complete, partial, not started or skipped."""

    record: str
    state: str
    rows: int = 0
    missing: int = 0
    note: str = ""


def run_all(out: str | Path, *, quick: bool = False, report_only: bool = False, deadline: Optional[float] = None,
            jobs: int = 1, only: Sequence[str] = (), log: Callable[[str], None] = print) -> list[Status]:
    """Run (or with ``report_only`` tabulate) every record of ``RECORDS`` (those named in ``only``, if
    given) under ``out/RECORD`` (``out/RECORD-quick`` with ``quick``); past ``deadline`` (a
    ``time.time()``) the rest are only tabulated."""
    unknown = [r for r in only if r not in RECORDS]
    if unknown:
        raise ConfigError(f"reproduce all: unknown record {unknown[0]!r}; choose from {', '.join(RECORDS)}")
    root, status = Path(out), []
    for record, (name, options) in RECORDS.items():
        if only and record not in only:
            continue
        folder = root / (record + ("-quick" if quick else ""))
        late = deadline is not None and time.time() >= deadline
        spec = specs.get(name)
        cells = store(spec, folder, quick) / "cells"
        # not started: no run summary and no run in training (an empty cells/ is not tracked by git)
        if (report_only or late) and not any(cells.glob("*.json")) and not any(cells.glob("*.partial.pt")):
            status.append(Status(record, "not started", note="past the time limit" if late else ""))
            continue
        log(f"reproduce all: {record} ({'tabulating' if report_only or late else 'training what is missing'})")
        existed = folder.exists()
        try:
            rows = run(spec, folder, quick=quick, options=options, jobs=jobs, deadline=deadline,
                       report_only=report_only or late)
        except MetagradError as e:   # its data are not here (miniImageNet, CUB): the others go on
            if not existed:   # leave nothing half-made behind
                shutil.rmtree(folder, ignore_errors=True)
            status.append(Status(record, "skipped", note=str(e)))
            log(f"reproduce all: {record} skipped: {e}")
            continue
        results = json.loads((folder / "results.json").read_text())
        missing = len(results.get("missing", []))
        status.append(Status(record, "partial" if results.get("partial") else "complete", len(rows), missing))
    if not only:
        write_text(root / "README.md", index(status, quick))
    return status


def index(status: list[Status], quick: bool = False) -> str:
    """``OUT/README.md``: one row per record of ``RECORDS`` with the paper's table or figure it
    reproduces and its state. Nothing in it depends on the machine (a skipped record's reason names
    local paths, so it is left out), so the committed index is rebuilt byte for byte by ``--report``."""
    lines = ["# Reproductions", "",
             "Every paper table and figure, one folder each, made by `metagrad reproduce all --out reproductions` "
             "(cheap first; rerun to continue) and rewritten from the committed run summaries by "
             "`metagrad reproduce all --out reproductions --report`, which also rewrites this page. A folder "
             "holds `table.md` (ours beside the paper's, with 95% intervals, and the paper's claims checked), "
             "`results.json`, the figure where the paper has one, `cells/` (one summary per run; the kept "
             "weights of each run, `*.run.pt`, which sibling records test, and the resume point of a run "
             "in training, `*.partial.pt`, so that a fresh checkout continues it) and a README "
             "with the protocol and the wall-clock time (000's sine figures: in `universality-sine/`, the "
             "folder of the runs they share).", "",
             "| record | reproduces | state | rows | cells missing |", "| --- | --- | --- | ---: | ---: |"]
    for s in status:
        name, options = RECORDS[s.record]
        what = (specs.get(name).description + "".join(f" ({k}={v})" for k, v in options.items())).replace("|", "\\|")
        folder = s.record + ("-quick" if quick else "")
        link = f"[{folder}]({folder}/table.md)" if s.state in ("complete", "partial") else folder
        state = "skipped: its data are not here" if s.state == "skipped" else s.state
        lines.append(f"| {link} | {what} | {state} | {s.rows} | {s.missing} |")
    return "\n".join(lines) + "\n"


def format_status(status: list[Status]) -> str:
    """The closing summary of ``reproduce all``: one line per record."""
    lines = ["| record | state | rows | cells missing | note |", "| --- | --- | ---: | ---: | --- |"]
    for s in status:
        lines.append(f"| {s.record} | {s.state} | {s.rows} | {s.missing} | {s.note} |")
    return "\n".join(lines)
