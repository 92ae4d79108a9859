"""004 Table 6: sine regression MSE of TrainFromScratch, Finetuning, LSTM, so-MAML and so-TURTLE
(1, 5, 10 inner steps; 5, 10, 15, 20 shots; query sets of 50; 2,000 test tasks; several runs
summarised with 004's statistics). Protocol: ``turtle_common``.

Run a part of the table (cells are cached under ``OUT/cells`` and merged)::

    python -m metagrad.experiments.reproduce.turtle_table6 --out runs/t6 --models so-TURTLE so-MAML \\
        --steps 5 --shots 5 10 --seeds 2 [--tasks 20000]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ...evaluation import robust_summary
from ...plotting import plot_lines
from ..tables import row, versus_paper, write_results
from .turtle_cells import Protocol, aggregate, cached_cells, kept_seeds, run_cells, with_settings
from .turtle_cli import parse_settings, protocol_arguments, set_threads, stderr_log
from .turtle_common import BASELINES, TASKS, fixed_test_tasks, sine, spec
from .turtle_data import DATA

NAME = "turtle-table6"
DESCRIPTION = "004 Table 6: TFS / Finetuning / LSTM / so-MAML / so-TURTLE on 004's sine tasks, 1/5/10 steps, 5-20 shots"

MODELS = ("TrainFromScratch", "Finetuning", "LSTM", "so-MAML", "so-TURTLE")
STEPS = (1, 5, 10)
SHOTS = (5, 10, 15, 20)
# 004 Table 6: mean MSE ± 95% interval across 30 runs; keys (model, steps), values per shot 5/10/15/20.
PAPER: dict[tuple[str, Optional[int]], tuple[tuple[float, float], ...]] = {
    ("TrainFromScratch", None): ((7.38, 0.12), (4.61, 0.03), (4.24, 0.01), (3.85, 0.01)),
    ("Finetuning", None): ((3.16, 0.01), (2.96, 0.01), (3.00, 0.01), (2.89, 0.01)),
    ("LSTM", 1): ((0.98, 0.14), (0.76, 0.05), (0.94, 0.14), (1.06, 0.12)),
    ("so-MAML", 1): ((0.68, 0.01), (0.39, 0.01), (0.31, 0.01), (0.24, 0.00)),
    ("so-TURTLE", 1): ((0.47, 0.01), (0.26, 0.00), (0.20, 0.00), (0.15, 0.00)),
    ("LSTM", 5): ((0.37, 0.03), (0.21, 0.03), (0.21, 0.04), (0.18, 0.04)),
    ("so-MAML", 5): ((0.39, 0.01), (0.10, 0.00), (0.05, 0.00), (0.03, 0.00)),
    ("so-TURTLE", 5): ((0.08, 0.01), (0.02, 0.00), (0.02, 0.00), (0.01, 0.00)),
    ("LSTM", 10): ((0.30, 0.02), (0.22, 0.03), (0.25, 0.07), (0.40, 0.22)),
    ("so-MAML", 10): ((0.30, 0.04), (0.07, 0.00), (0.03, 0.00), (0.02, 0.00)),
    ("so-TURTLE", 10): ((0.10, 0.02), (0.08, 0.02), (0.07, 0.02), (0.34, 0.24)),
}
QUICK = dict(models=MODELS, steps=(1, 5), shots=(5,))


def _paper(model: str, steps: Optional[int], k: int) -> tuple[Optional[float], Optional[float]]:
    vals = PAPER.get((model, steps))
    return vals[SHOTS.index(k)] if vals and k in SHOTS else (None, None)


def _cells(models: Sequence[str], steps: Sequence[int], shots: Sequence[int]) -> list[tuple[str, Optional[int], int]]:
    out = []
    for k in shots:
        for m in models:
            if m in BASELINES:
                out.append((m, None, k))
            else:
                out.extend((m, t, k) for t in steps)
    return out


def run(out: Path, quick: bool = False, seeds: Optional[int] = None, *, models: Sequence[str] = MODELS,
        steps: Sequence[int] = STEPS, shots: Sequence[int] = SHOTS, tasks: Optional[int] = None,
        test_tasks: Optional[int] = None, val_every: Optional[int] = -1, val_tasks: Optional[int] = None,
        log: Any = None, report: bool = False, threads: int = 1,
        changes: Optional[dict[str, Any]] = None, data: str = "metagrad",
        only_seeds: Optional[Sequence[int]] = None) -> list[dict[str, Any]]:
    """Run the table (``seeds`` runs per cell, seeds ``0..seeds-1``; default 5, ``quick``: 1 seed, 5 shots,
    1 and 5 steps, 300 tasks, 100 test tasks) and write ``table.md``/``results.json`` after every cell.
    A cell with kept runs of further seeds (``kept_seeds``) is tabulated with all of them.
    ``threads``: torch threads (default 1, for two jobs on two cores; one job alone trains faster on two).

    ``report``: train nothing; build the table from the runs cached under ``OUT/cells`` (cells
    with no cached run are left out; a row's ``seeds`` says how many runs it has; cells short of
    ``seeds`` runs are listed as ``missing_cells`` in ``results.json``, in ``table.md`` and on
    stderr; no wall clock is recorded, as nothing is trained). This is how a
    table trained by several processes or over several sessions is put together.
    A cell is "at most the paper's value or within its interval" when our mean, rounded to the
    thesis's two decimals, is at most the thesis's mean plus its interval.

    ``only_seeds``: train only these seeds of each cell (``0..seeds-1`` is not filled in), so the runs of
    one cell can be split across jobs (``[5, 6, 7]`` in one, ``[8, 9]`` in another); each cell is
    still tabulated with every kept run.

    ``changes``: train the meta-learners with settings other than ``spec``'s (``with_settings``:
    ``{"rule.prev_gate": "logit"}``, ``{"clip_value_scope": "init"}``); the table says which.

    ``data``: ``"metagrad"`` (our own task draws) or ``"thesis"`` (the thesis's own meta-training,
    validation and test tasks, ``turtle_data``); runs record it, so the two never mix."""
    out = Path(out)
    if quick:
        models, steps, shots = QUICK["models"], QUICK["steps"], QUICK["shots"]
    base = Protocol.quick() if quick else Protocol()
    proto = base.replace(tasks, test_tasks, val_every, val_tasks, data)
    n_seeds = seeds or (1 if quick else 5)
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise ValueError(f"{NAME}: unknown model {bad[0]!r}; choose from {', '.join(MODELS)}")
    set_threads(NAME, threads)
    check_only_seeds(only_seeds, report)
    check_changes(models, steps, shots, changes)     # a bad setting fails now, not after hours of training
    t0 = time.perf_counter()
    note = (f"Mean MSE on {proto.test_tasks} fixed test tasks (query sets of 50) per run; {n_seeds} run(s) per "
            f"cell (or more: the 'runs' column gives each cell's) summarised as in 004 (mean, median and 95% "
            f"interval across runs after IQR outlier removal; with one run the interval is over test tasks). Meta-training: {proto.tasks} tasks "
            f"(protocol: {TASKS}), validation every {proto.val_every} tasks on {proto.val_tasks} tasks. "
            f"'± test tasks': the 95% interval of one run's mean over its {proto.test_tasks} test tasks (mean over "
            f"the runs the across-run statistics keep); every run of every cell uses the same test tasks, so "
            f"this part of the uncertainty is not in the across-run interval"
            + (", and a comparison with the thesis (other test tasks) carries it. " if proto.data == "metagrad" else
               ". Tasks: the thesis's own (turtle_data: its 70,000 meta-training tasks in its order for every "
               "run, its validation and test tasks), so the comparison with the thesis carries no test-draw "
               "difference. ")
            + "Paper: 004 Table 6, mean over 30 runs.")
    if changes:
        note += (" Meta-learners trained with settings other than the protocol's: "
                 + ", ".join(f"{k}={v!r}" for k, v in changes.items()) + ".")
    scale, expected = target_scale(shots, proto.test_tasks, proto.data)
    note += (" Test-set scale, mean squared query target (the MSE of predicting 0; expectation "
             f"{expected:.2f}): " + ", ".join(f"k={k} {v:.2f} ({100 * (v / expected - 1):+.1f}%)" for k, v in scale.items())
             + "; every model's MSE grows with it.")
    scale_json = {"expected_mean_y2": expected, "mean_y2": {str(k): v for k, v in scale.items()}}
    rows: list[dict[str, Any]] = []
    missing: list[str] = []     # report: cells with fewer kept runs than ``seeds``
    for model, t, k in _cells(models, steps, shots):
        if not report:
            train = range(n_seeds) if only_seeds is None else sorted(set(only_seeds))
            run_cells(out, model, t, k, train, proto, log, changes=changes)
        # every kept run of the cell (seeds 0..n-1 and any further one, never left out once made),
        # trained now or before: a training run and --report tabulate the same runs
        cells = cached_cells(out, model, t, k, kept_seeds(out, model, t, k, n_seeds), proto, changes)
        if report and len(cells) < n_seeds:
            missing.append(f"{model}{'' if t is None else f' T={t}'} k={k}"
                           + (f" ({len(cells)} of {n_seeds} runs)" if cells else ""))
        if not cells:
            continue
        stats = aggregate(cells)
        paper, paper_ci = _paper(model, t, k)
        extra: dict[str, Any] = {"paper_ci95": paper_ci, "seeds": len(cells), "tasks": proto.tasks,
                                 "test_tasks": proto.test_tasks, "outliers": stats["outliers"],
                                 "ms_per_iteration": round(stats["ms_per_iteration"], 2),
                                 "train_seconds": round(stats["seconds"], 1),
                                 "per_seed_mean": [c["mean"] for c in cells],
                                 # the sampling error of the fixed test set, shared by every run of a cell
                                 "test_set_ci95": test_set_ci95(cells, stats),
                                 "runs": runs_note(cells, stats)}
        restored = thesis_restore(cells)
        if restored is not None:
            extra["thesis_restore"], extra["thesis_restore_ci95"] = restored
        if paper is not None and stats["mean"] == stats["mean"]:
            # compared at the thesis's precision (two decimals)
            extra["vs_paper"] = versus_paper(round(stats["mean"], 2), paper, paper_ci)
            extra["at_most_or_within_paper"] = extra["vs_paper"] in ("better", "within")
        rows.append(row(model, {"k_shot": k, "steps": t}, "mse", stats["mean"], stats["ci95"], paper=paper,
                        median=stats["median"], diverged=stats["diverged_runs"] == len(cells), **extra))
        if not report:
            write_results(out, NAME, rows, note + restore_note(rows), claims=claims(rows), wall_clock_s=round(time.perf_counter() - t0, 1),
                          test_set_scale=scale_json)
    if report:
        # no wall clock here: building a report trains nothing; what is not there yet is listed instead
        found = claims(rows)
        write_results(out, NAME, rows, note + restore_note(rows) + (f" Not measured yet: {'; '.join(missing)}." if missing else ""),
                      claims=found, missing_cells=missing, test_set_scale=scale_json)
        verdicts = ", ".join(f"{k} {'true' if v else 'FALSE'}" for k, v in found.items())
        print(f"{NAME} report: {len(rows)} of {len(_cells(models, steps, shots))} cells in {out / 'table.md'}; "
              f"claims: {verdicts}"
              + (f"; not measured yet: {'; '.join(missing)}" if missing else ""), file=sys.stderr)
    if rows:
        _plot(rows, out)
    return rows


def target_scale(shots: Sequence[int], n_tasks: int, data: str = "metagrad") -> tuple[dict[int, float], float]:
    """How hard each shot's fixed test set is: its mean squared query target ``mean y^2`` (the MSE of
    predicting 0), and the task distribution's expectation ``E[A^2] / 2`` (``sin^2`` has period pi
    and the phase is uniform over [0, pi], so ``E[sin^2] = 1/2`` at every ``x``).

    Every model's MSE grows with the amplitudes, so a test set above the expectation makes every
    cell of that shot look worse against the thesis (whose test tasks are other draws)."""
    lo, hi = sine(5).amplitude
    expected = (hi ** 3 - lo ** 3) / (3 * (hi - lo)) / 2
    return {k: float((fixed_test_tasks(k, n_tasks, data).query_y.double() ** 2).mean()) for k in shots}, expected


def _lost(cell: dict[str, Any]) -> bool:
    """Whether a run lost its parameters to a non-finite meta-gradient (``nonfinite="stop"``); runs
    from before ``nonfinite_at`` was recorded (2026-12-02) show it as ``nan`` validation."""
    if cell.get("skipped"):
        return False
    if cell.get("nonfinite_at") is not None:
        return True
    return "nonfinite_at" not in cell and any(not math.isfinite(v) for _, v in cell.get("val_curve", []))


def runs_note(cells: list[dict[str, Any]], stats: dict[str, Any]) -> str:
    """What became of a cell's runs, for the table's ``runs`` column: how many, then (where any)
    how many the IQR rule dropped, how many lost their parameters to a non-finite meta-gradient
    (``nonfinite="stop"``: tested at the best validated state from before), how many are not
    finite on the test tasks (left out of the statistics), and how many updates were skipped
    (``nonfinite="skip"``). E.g. ``5 (1 lost, 1 dropped as outlier)``."""
    lost = sum(1 for c in cells if _lost(c))
    skipped = sum(c.get("skipped", 0) for c in cells)
    parts = [f"{lost} lost"] if lost else []
    parts += [f"{stats['diverged_runs']} not finite on test"] if stats["diverged_runs"] else []
    parts += [f"{stats['outliers']} dropped as outlier{'s' if stats['outliers'] > 1 else ''}"] if stats["outliers"] else []
    parts += [f"{skipped} update{'s' if skipped > 1 else ''} skipped"] if skipped else []
    return f"{len(cells)}" + (f" ({', '.join(parts)})" if parts else "")


def test_set_ci95(cells: list[dict[str, Any]], stats: dict[str, Any]) -> float:
    """The mean over a cell's runs of one run's 95% interval over the test tasks, of the runs the
    across-run statistics keep (``aggregate``'s ``kept``: finite on every test task, not an IQR
    outlier; one run blown up on a few test tasks would otherwise dominate it); nan if none is kept."""
    used = [c["ci95_tasks"] for c, k in zip(cells, stats["kept"]) if k]
    return sum(used) / len(used) if used else math.nan


def restore_note(rows: list[dict[str, Any]]) -> str:
    """The note's sentence on the ``as thesis code`` column, where any row has one."""
    if not any("thesis_restore" in r for r in rows):
        return ""
    return (" 'as thesis code': the same statistics of the state the thesis's code tests where that is not the best "
            "validated one its text names (TURTLE: the best initialisation with the final meta-network and rates; "
            "LSTM: the final state; turtle_common.Spec.thesis_restores); '-' where not measured.")


def thesis_restore(cells: list[dict[str, Any]]) -> Optional[tuple[float, float]]:
    """Mean and 95% interval (004's statistics, as the table's own number) of what the thesis's code
    would test for a cell (``Spec.thesis_restores``: TURTLE's best initialisation with its final
    rule, the LSTM's final state); ``None`` unless every run measured it (runs since 2026-12-02)."""
    if not cells or not all("thesis_restore_mean" in c for c in cells):
        return None
    stats = robust_summary([c["thesis_restore_mean"] for c in cells])
    return stats["mean"], stats["ci95"]


def claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's checks, for the cells present: so-TURTLE below so-MAML at 5 steps (5, 10 shots),
    every cell at most the paper's value or within its interval, baselines worse than every meta-learner."""
    by = {(r["model"], r["setting"]["steps"], r["setting"]["k_shot"]): r["mean"] for r in rows}
    out: dict[str, Any] = {}
    for k in (5, 10):
        a, b = by.get(("so-TURTLE", 5, k)), by.get(("so-MAML", 5, k))
        if a is not None and b is not None:
            out[f"turtle_beats_maml_5step_{k}shot"] = a < b
    flags = [r["at_most_or_within_paper"] for r in rows if "at_most_or_within_paper" in r]
    if flags:
        out["all_at_most_or_within_paper"] = all(flags)
    for k in sorted({r["setting"]["k_shot"] for r in rows}):
        base = [v for (m, _, kk), v in by.items() if kk == k and m in BASELINES and v is not None]
        meta = [v for (m, _, kk), v in by.items() if kk == k and m not in BASELINES and v is not None]
        if base and meta:
            out[f"baselines_worse_than_all_meta_learners_{k}shot"] = min(base) > max(meta)
    return out


def check_changes(models: Sequence[str], steps: Sequence[int], shots: Sequence[int],
                  changes: Optional[dict[str, Any]]) -> None:
    """Raise ``ValueError`` (naming the setting) if ``changes`` do not apply to every meta-learner cell."""
    for model, t, k in _cells(models, steps, shots) if changes else ():
        if model not in BASELINES:
            with_settings(spec(model, t, k), changes)


def _plot(rows: list[dict[str, Any]], out: Path) -> None:
    # colour = model, line style and marker = inner steps: 20 lines stay tellable apart
    look = {None: ("-", "o"), 1: (":", "v"), 5: ("--", "s"), 10: ("-", "D")}
    lines, styles = {}, {}
    for i, model in enumerate(MODELS):
        for t in (None, *STEPS):
            label = model + ("" if t is None else f" T={t}")
            lines[label] = [(r["setting"]["k_shot"], r["mean"]) for r in rows
                            if r["model"] == model and r["setting"]["steps"] == t and r["mean"] is not None]
            styles[label] = {"color": f"C{i}", "linestyle": look[t][0], "marker": look[t][1]}
    plot_lines(lines, out / "table6.png", "shots k", "test MSE (2,000 tasks, mean over seeds)", logy=True,
               styles=styles, figsize=(6, 4))


def check_only_seeds(only_seeds: Optional[Sequence[int]], report: bool) -> None:
    """``only_seeds`` are integers >= 0 and go with training, not ``report`` (a ValueError naming the bad one)."""
    bad = [s for s in only_seeds or () if not (isinstance(s, int) and s >= 0)]
    if bad:
        raise ValueError(f"{NAME}: seeds are integers >= 0, got {bad[0]!r} in only_seeds")
    if report and only_seeds:
        raise ValueError(f"{NAME}: a report trains nothing; drop only_seeds (--only-seeds) or report")


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    protocol_arguments(p, STEPS)
    p.add_argument("--models", nargs="+", default=list(MODELS), help=f"default: {' '.join(MODELS)}")
    p.add_argument("--shots", nargs="+", type=int, default=list(SHOTS),
                   help=f"support points k (default {' '.join(map(str, SHOTS))})")
    p.add_argument("--report", action="store_true", help="train nothing; tabulate the runs cached under OUT/cells")
    p.add_argument("--data", choices=DATA, default="metagrad",
                   help="tasks: our own draws (default) or the thesis's own meta-training, validation and test "
                        "tasks (turtle_data); runs record it, use a new --out")
    p.add_argument("--only-seeds", nargs="+", type=int, metavar="S",
                   help="train only these seeds of each cell, to split a cell's runs across jobs "
                        "(--only-seeds 5 6 7 in one, --only-seeds 8 9 in another); the table has every kept run")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", dest="changes",
                   help="train the meta-learners with other settings: a Spec field (clip_value_scope=init) or a "
                        "field of the update rule (rule.prev_gate=logit); runs record them, use a new --out")
    a = p.parse_args(argv)
    try:
        changes = parse_settings(a.changes)
        if a.quick:
            a.models, a.steps, a.shots = QUICK["models"], QUICK["steps"], QUICK["shots"]
        check_changes(a.models, a.steps, a.shots, changes)
        check_only_seeds(a.only_seeds, a.report)
    except ValueError as e:
        p.error(str(e))
    run(a.out, a.quick, a.seeds, models=a.models, steps=a.steps, shots=a.shots, tasks=a.tasks,
        test_tasks=a.test_tasks, val_every=a.val_every, val_tasks=a.val_tasks,
        log=stderr_log, report=a.report, threads=a.threads, changes=changes, data=a.data, only_seeds=a.only_seeds)


if __name__ == "__main__":
    main()
