"""The sweep runner: an experiment is data (a ``Spec``), and one function runs any of them.

A ``Spec`` is a grid of cells (each a ``Config`` that ``metagrad train`` could run) times a fixed
number of seeds, the evaluations of each run, the table rows with the paper's numbers, the
statistic, and the claims. ``run`` trains what is missing and writes the table::

    for cell in spec.cells(options):                 # filtered by --only key=value
        runs = cached runs of cell under OUT/cells/  # one JSON summary per (cell, seed)
        test the missing seeds kept under the same config here or in ``spec.reuse``'s records (``kept_runs``),
        train the others with ``train_runs`` (one fit; several seeds as one Population),
            checkpointing to OUT/cells/CELL.partial.pt, so a cut-off run resumes exactly, and keep
            each trained run (OUT/cells/CELL_sSEED.run.pt) for evaluations added later
    rows = aggregate each table row over seeds 0..N-1 (the same N for every row, fixed in the spec)
    write OUT/table.md and OUT/results.json ("partial": true while cells are missing)

A run summary is reused only when it was made under the same cell config (its ``config`` is
stored in it), so runs made with ``--set`` never mix with the default table's. ``--jobs N`` trains
cells as N independent processes (``metagrad reproduce NAME --cell ID``), which any scheduler can
also spread over machines.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..errors import ConfigError, TimeLimitReached, did_you_mean
from ..io import write_json, write_text
from ..runlog import RunLock
from .config import Config
from .tables import claims_section, format_table, pending_table
from .jobs import run_jobs
from .kept_runs import find_kept, find_summary, find_training, kept_path, test_kept
from .progress import progress_elsewhere, progress_file, progress_line
from .rows import table_row_of, verdict
from .train_runs import train_runs

__all__ = ["Cell", "Row", "Spec", "run", "report", "plan", "verdict", "SCHEMA"]   # verdict: rows.verdict

SCHEMA = 2


@dataclass(frozen=True)
class Cell:
    """One trained setting: ``config`` (a ``Config`` dict; each run sets ``seed``) and its evaluations,
    ``evals[name] = overrides`` applied to the config at test time (``[]``: as trained)."""

    id: str
    config: Mapping[str, Any]
    evals: Mapping[str, Sequence[str]] = field(default_factory=lambda: {"test": []})
    trainer: str = "meta"               # "meta" (fit) or a key of train_runs.BASELINES
    labels: Mapping[str, Any] = field(default_factory=dict)   # what --only filters on, e.g. model, steps
    measures: Sequence[str] = ()        # names in registry.MEASURES, computed on each trained run (summary "measures")
    separate: bool = False              # train its seeds one at a time (HF-MAML, 002's D_h: no Population)


@dataclass(frozen=True)
class Row:
    """One table row: evaluation ``eval`` of the runs of cell ``cell``, beside the paper's number."""

    model: str
    setting: Mapping[str, Any]
    cell: str
    eval: str = "test"
    paper: Optional[float] = None
    paper_ci95: Optional[float] = None
    measure: Optional[str] = None       # tabulate this per-run measure (over runs) instead of evaluation ``eval``


@dataclass(frozen=True)
class Spec:
    """A paper table: cells x ``seeds`` runs, rows, statistic (``"runs"``: 004's robust summary of the
    runs' means; ``"tasks"``: mean and interval over the test tasks of every run), claims."""

    name: str
    description: str
    cells: Callable[[Mapping[str, Any]], list[Cell]]
    rows: Callable[[Mapping[str, Any]], list[Row]]
    seeds: int
    statistic: str = "runs"
    quick: Sequence[str] = ()                        # overrides of every cell for --quick
    options: Mapping[str, Any] = field(default_factory=dict)   # experiment options and their defaults
    claims: Optional[Callable[[list[dict[str, Any]]], dict[str, Any]]] = None
    note: str | Callable[[Mapping[str, Any]], str] = ""      # the table's note (of the options)
    choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)   # allowed values of options
    row_extra: Optional[Callable[[Row, list[dict[str, Any]]], dict[str, Any]]] = None  # more columns of a row
    figure: Optional[Callable[[Path, list[dict[str, Any]]], None]] = None   # (out, rows): plots read from out/cells
    quick_options: Mapping[str, Any] = field(default_factory=dict)   # options under --quick (unless given)
    # the paper's figure redrawn: plot(out, rows, runs) with runs[cell id] = the runs behind the rows
    # (their summaries: evals with curves); called by report, also on a partial table
    plot: Optional[Callable[[Path, list[dict[str, Any]], dict[str, list[dict[str, Any]]]], None]] = None
    # experiments whose cells are the same runs (000's sine figures) name one store: their runs live in
    # OUT/../STORE/cells/, shared by sibling output folders, while each writes its own table and figure
    cell_store: str = ""
    # records (sibling folders of the output) whose kept runs made under a cell's config are tested for it
    # instead of training it again (``kept_runs``; 000's Omniglot figures reuse 001 Table 3's MAML runs)
    reuse: Sequence[str] = ()


def store(spec: Spec, out: Path, quick: bool = False) -> Path:
    """The folder whose ``cells/`` holds ``spec``'s runs: ``out``, or ``out/../cell_store`` when shared
    (``cell_store-quick`` for ``--quick``: a quick run's summary must never replace a full run's)."""
    return out.parent / (spec.cell_store + ("-quick" if quick else "")) if spec.cell_store else out


def _summary_path(out: Path, cell: Cell, seed: int) -> Path:
    return out / "cells" / f"{cell.id}_s{seed}.json"


def _cell_config(cell: Cell, overrides: Sequence[str]) -> Config:
    return Config.from_dict(cell.config).override(list(overrides))


def _summaries(out: Path, cell: Cell, cfg: Config, seeds: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The summaries of ``cell`` under ``out/cells`` made under ``cfg`` (any seed in ``seeds``)."""
    want = _identity(cfg)
    found = {}
    for s in seeds:
        p = _summary_path(out, cell, s)
        if p.exists():
            d = json.loads(p.read_text())
            if d.get("schema") == SCHEMA and Config.stored_identity(d.get("config"), _NOT_IDENTITY) == want:
                found[s] = d
    return found


def _complete(cell: Cell, summary: dict[str, Any]) -> bool:
    return set(cell.evals) <= set(summary.get("evals", {})) and set(cell.measures) <= set(summary.get("measures", {}))


def cached(out: Path, cell: Cell, cfg: Config, seeds: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The summaries of ``cell`` under ``out/cells`` made under ``cfg`` with every evaluation and
    measure the cell asks for (any seed in ``seeds``)."""
    return {s: d for s, d in _summaries(out, cell, cfg, seeds).items() if _complete(cell, d)}


# Per-run settings that do not change what a cell computes.
_NOT_IDENTITY = ("name", "seed", "threads", "device", "log_every", "checkpoint_every")


def _identity(cfg: Config) -> dict[str, Any]:
    return cfg.identity(_NOT_IDENTITY)


def _write_summary(out: Path, cell: Cell, cfg: Config, seed: int, summ: dict[str, Any],
                   log: Callable[[str], None]) -> None:
    write_json(_summary_path(out, cell, seed), {"schema": SCHEMA, "cell": cell.id, "seed": seed, "trainer": cell.trainer,
                                                "labels": dict(cell.labels), "config": _identity(cfg), **summ})
    means = ", ".join(f"{k} {v['mean']:.4g}" for k, v in summ["evals"].items())
    log(f"{cell.id} seed {seed}: {means} ({summ['train']['seconds']:.0f} s)")


def train_cell(out: Path, cell: Cell, cfg: Config, seeds: Sequence[int], log: Callable[[str], None],
               reuse: Sequence[Path] = (), deadline: Optional[float] = None) -> None:
    """Make the summaries of ``cell``'s seeds that are not cached yet: from a run kept here or in a
    record of ``reuse`` under the same config (``kept_runs``: tested, not trained), else by training (a
    cut-off run resumes from ``cells/CELL_sSEEDS.partial.pt``: the seeds of a Population, or one seed)."""
    todo = [s for s in seeds if s not in cached(out, cell, cfg, seeds)]
    if not todo:
        return
    tag = "-".join(map(str, todo))
    with RunLock(out / "cells" / f".{cell.id}_s{tag}", f"reproduce {cell.id}"):
        have = _summaries(out, cell, cfg, todo)   # another job may have finished some meanwhile
        todo = [s for s in todo if s not in have or not _complete(cell, have[s])]
        for s in list(todo) if cell.trainer == "meta" else []:
            done = find_summary(reuse, _identity(cfg), s, SCHEMA, _NOT_IDENTITY, lambda d: _complete(cell, d))
            if done is not None:   # the same run, finished for another record: taken as it is
                log(f"{cell.id} seed {s}: the summary of the same run in {done[0]}: no training")
                write_json(_summary_path(out, cell, s), {**done[1], "cell": cell.id, "trainer": cell.trainer,
                                                         "labels": dict(cell.labels),
                                                         "taken_from": str(done[0].relative_to(out.parent))})
                todo.remove(s)
                continue
            kept = find_kept([out, *reuse], _identity(cfg), s, SCHEMA, _NOT_IDENTITY)
            if kept is not None:
                _write_summary(out, cell, cfg, s, test_kept(kept, cfg, s, cell.evals, cell.measures, have.get(s), log),
                               log)
                todo.remove(s)
                continue
            part = find_training(reuse, _identity(cfg), s, _NOT_IDENTITY)
            # cut off while its own record trained it: continued there, not twice (unless it is in
            # training here too: then each record would wait for the other)
            if part is not None and find_training([out], _identity(cfg), s, _NOT_IDENTITY) is None:
                log(f"{cell.id} seed {s}: the same run is in training in {part.parent.parent.name} ({part.name}): "
                    f"`metagrad reproduce {part.parent.parent.name}` continues it, and this record tests it then")
                todo.remove(s)
        tag = "-".join(map(str, todo))
        # Only MAML's seeds train together (a Population); the others one at a time, each summary
        # written as soon as it is made, so a run cut off at its last seed keeps the ones before.
        together = not cell.separate and cfg.algorithm == "maml"
        groups = [todo] if together and todo else [[s] for s in todo]
        for group in groups:
            part = out / "cells" / f"{cell.id}_s{tag if together else group[0]}.partial.pt"
            summaries = train_runs(cfg, group, cell.evals, trainer=cell.trainer, checkpoint=part, log=log,
                                   label=cell.id, measures=cell.measures,
                                   keep=lambda s: kept_path(_summary_path(out, cell, s)), deadline=deadline)
            for s, summ in zip(group, summaries):
                _write_summary(out, cell, cfg, s, summ, log)
            part.unlink(missing_ok=True)
            progress_file(part).unlink(missing_ok=True)


def select(cells: list[Cell], only: Sequence[str]) -> list[Cell]:
    """The cells whose labels match every ``key=value`` of ``only`` (values compared as text)."""
    filters = [o.split("=", 1) for o in only]
    for f in filters:
        if len(f) != 2:
            raise ConfigError(f"reproduce: --only takes key=value (e.g. model=so-TURTLE), got {'='.join(f)!r}")
    chosen = [c for c in cells if all(str(c.labels.get(k)) in v.split(",") for k, v in filters)]
    if cells and not chosen:   # a typo in a key or value must not train nothing in silence
        labels: dict[str, dict[str, None]] = {}   # each key's values in order of appearance
        for c in cells:
            for k, v in c.labels.items():
                labels.setdefault(k, {})[str(v)] = None
        known = "; ".join(f"{k}={','.join(v)}" for k, v in labels.items())
        hints = [did_you_mean(k, labels) if k not in labels else
                 next((did_you_mean(x, labels[k]) for x in v.split(",") if x not in labels[k]), "") for k, v in filters]
        hint = next((h for h in hints if h), "")
        raise ConfigError(f"reproduce: no cell matches --only {' --only '.join(only)}{hint}; the cells' labels: {known}")
    return chosen


def run(spec: Spec, out: str | Path, *, quick: bool = False, seeds: Optional[int] = None, overrides: Sequence[str] = (),
        only: Sequence[str] = (), only_seeds: Optional[Sequence[int]] = None, options: Optional[Mapping[str, Any]] = None,
        jobs: int = 1, cell_id: Optional[str] = None, report_only: bool = False, deadline: Optional[float] = None,
        log: Callable[[str], None] = lambda m: print(time.strftime("%H:%M:%S"), m, file=sys.stderr, flush=True)
        ) -> list[dict[str, Any]]:
    """Train the missing runs of ``spec``'s selected cells, then write and return the whole table's rows
    (every cell's, so a run with ``--only`` never overwrites a committed table with its selection). Past ``deadline`` (a ``time.time()``) the run in training checkpoints, no other starts, and the
    table is written as it stands (the same call continues)."""
    out = Path(out)
    opts, n, over = _setting(spec, options, quick, seeds, overrides)
    cells = select(spec.cells(opts), only)
    if cell_id is not None:
        if cell_id not in {c.id for c in cells}:
            raise ConfigError(f"reproduce: no cell {cell_id!r} among the selected ones ({', '.join(c.id for c in cells)})")
        cells = [c for c in cells if c.id == cell_id]
    train_seeds = list(only_seeds) if only_seeds is not None else list(range(n))
    if not report_only and jobs > 1 and cell_id is None:
        run_jobs(spec, out, cells, jobs, quick, n, overrides, only_seeds, opts, deadline)
    elif not report_only:
        try:
            for c in cells:
                train_cell(store(spec, out, quick), c, _cell_config(c, over), train_seeds, log,
                           reuse=[out.parent / r for r in spec.reuse], deadline=deadline)
        except TimeLimitReached as e:
            log(f"{e}; the same command continues it")
    if cell_id is not None:
        return []
    return report(spec, out, quick=quick, seeds=n, overrides=overrides, options=opts)


def plan(spec: Spec, out: str | Path, *, quick: bool = False, seeds: Optional[int] = None,
         overrides: Sequence[str] = (), only: Sequence[str] = (), options: Optional[Mapping[str, Any]] = None
         ) -> list[dict[str, Any]]:
    """What ``run`` would do, without doing it (``metagrad reproduce NAME --list``): per selected cell its
    id, its labels (what ``--only`` filters on), what its config trains, the runs done and in training."""
    out = Path(out)
    opts, n, over = _setting(spec, options, quick, seeds, overrides)
    rows, where = [], store(spec, out, quick)
    for c in select(spec.cells(opts), only):
        cfg = _cell_config(c, over)
        done = cached(where, c, cfg, range(n))
        rows.append({"cell": c.id, "labels": dict(c.labels), "trains": cfg.summary() if c.trainer == "meta" else
                     f"{c.trainer} baseline | {cfg.summary().split(' | ', 1)[1]}", "done": len(done), "runs": n,
                     "progress": _progress(spec, out, quick, c, cfg, set(range(n)) - set(done)).lstrip("; ")})
    return rows


def _progress(spec: Spec, out: Path, quick: bool, cell: Cell, cfg: Config, seeds: set[int]) -> str:
    """Where ``cell``'s missing ``seeds`` stand: its runs in training here, else the same runs in
    training in a record of ``spec.reuse`` (which this table waits for), else ``""``."""
    here = progress_line(store(spec, out, quick), cell.id, cfg.outer["iterations"])
    if here or cell.trainer != "meta":
        return here
    parts = (find_training([out.parent / r for r in spec.reuse], _identity(cfg), s, _NOT_IDENTITY) for s in sorted(seeds))
    return "".join(progress_elsewhere(p, cfg.outer["iterations"]) for p in dict.fromkeys(parts) if p is not None)


def _setting(spec: Spec, options: Optional[Mapping[str, Any]], quick: bool, seeds: Optional[int],
             overrides: Sequence[str]) -> tuple[dict[str, Any], int, list[str]]:
    """``(options, runs per cell, overrides of every cell)`` of a call of ``run``, ``report`` or ``plan``."""
    n = seeds if seeds is not None else (1 if quick else spec.seeds)
    return _options(spec, options, quick), n, [*(spec.quick if quick else ()), *overrides]


def _options(spec: Spec, options: Optional[Mapping[str, Any]], quick: bool) -> dict[str, Any]:
    """The experiment's options: its defaults, then ``quick_options`` under ``--quick``, then those given
    (an option given at its default value counts as not given)."""
    given = {k: v for k, v in (options or {}).items() if v != spec.options.get(k)}
    return {**spec.options, **(spec.quick_options if quick else {}), **given}


def report(spec: Spec, out: str | Path, *, quick: bool = False, seeds: Optional[int] = None,
           overrides: Sequence[str] = (), options: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """Tabulate the cached runs (no training): each row over seeds ``0..N-1``; runs of further seeds
    go in a separate "all runs" column, never into the verdict. Writes ``table.md``/``results.json``."""
    out = Path(out)
    opts, n, over = _setting(spec, options, quick, seeds, overrides)
    by_id = {c.id: c for c in spec.cells(opts)}
    rows, missing, pending, used = [], [], [], {}
    for r in spec.rows(opts):
        if r.cell not in by_id:
            continue
        cell = by_id[r.cell]
        extra_seeds = _seeds_on_disk(store(spec, out, quick), cell)
        runs = cached(store(spec, out, quick), cell, _cell_config(cell, over), sorted(set(range(n)) | extra_seeds))
        fixed = [runs[s] for s in range(n) if s in runs]
        if len(fixed) < n:
            cfg = _cell_config(cell, over)
            progress = _progress(spec, out, quick, cell, cfg, set(range(n)) - set(runs))
            missing.append(f"{r.cell} ({len(fixed)} of {n} runs{progress})")
            pending.append((r, f"{len(fixed)} of {n}", progress.lstrip("; ") or "not started"))
            if not fixed:
                continue
        rows.append(table_row_of(r, fixed, [runs[s] for s in sorted(runs)], spec.statistic, spec.row_extra))
        used[r.cell] = fixed
    missing = list(dict.fromkeys(missing))   # a cell behind several rows is missing once
    claims = spec.claims(rows) if spec.claims is not None and not missing else {}
    note = (spec.note(opts) if callable(spec.note) else spec.note) + (f" Runs per row: {n}, fixed in advance for every row." if n else "")
    if missing:
        note += f" PARTIAL: {len(missing)} cell(s) incomplete: {', '.join(missing)}."
    write_json(out / "results.json", {"experiment": spec.name, "schema": SCHEMA, "partial": bool(missing),
                                      "missing": missing, "runs_per_row": n, "rows": rows, "claims": claims})
    write_text(out / "table.md", format_table(spec.name, rows, note) + claims_section(claims) +
               pending_table(pending, rows[0]["metric"] if rows else None))
    if spec.figure is not None and rows:
        spec.figure(out, rows)
    if spec.plot is not None and rows:
        spec.plot(out, rows, used)
    return rows


def _seeds_on_disk(out: Path, cell: Cell) -> set[int]:
    stem = f"{cell.id}_s"
    return {int(p.name[len(stem):-5]) for p in (out / "cells").glob(f"{stem}*.json") if p.name[len(stem):-5].isdigit()}
