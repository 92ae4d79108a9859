"""A table row from its runs: the statistic over runs or over pooled test tasks, and the verdict.

Two statistics (``Spec.statistic``):

* ``"runs"`` (004's): a robust summary of the runs' means (``evaluation.robust_summary``: outliers
  out by the interquartile rule, mean and 95% interval over the runs kept); one run: its interval
  over test tasks;
* ``"tasks"`` (001's, one run per cell): every run's test tasks pooled, mean and 95% interval
  ``1.96 * sqrt(s^2 / n)`` from each run's mean, standard deviation and task count.

The verdict against the paper comes from the two intervals, never from rounding (``verdict``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..errors import ConfigError
from ..evaluation import robust_summary
from .tables import row as table_row

if TYPE_CHECKING:
    from .sweep import Row

__all__ = ["table_row_of", "verdict"]


def _measured(r: "Row", runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A measure row's runs as evaluations of one number each (aggregated over runs, 004's statistic)."""
    # a measure of the run (summary "measures"), else a number of its training (e.g. "ms_per_iteration")
    vals = [f.get("measures", {}).get(r.measure, f.get("train", {}).get(r.measure, math.nan)) for f in runs]
    return [{"evals": {r.eval: {"metric": r.measure, "mean": v, "ci95_tasks": math.nan, "diverged": v != v}},
             "seed": f["seed"]} for f, v in zip(runs, vals)]


def table_row_of(r: "Row", fixed: list[dict[str, Any]], every: list[dict[str, Any]], statistic: str,
                 row_extra: Optional[Callable[["Row", list[dict[str, Any]]], dict[str, Any]]] = None) -> dict[str, Any]:
    """Row ``r`` of a table from its runs' summaries: ``fixed`` (seeds 0..N-1, the verdict's) and ``every``
    run on disk (a labelled sensitivity column where there are more), aggregated by ``statistic``
    (``Spec.statistic``), with the spec's own columns (``row_extra``) and the verdict against the paper."""
    statistic = statistic if r.measure is None else "runs"
    if r.measure is not None:
        fixed, every = _measured(r, fixed), _measured(r, every)
    stat = _aggregate(statistic, [f["evals"][r.eval] for f in fixed])
    metric = fixed[0]["evals"][r.eval].get("metric", "mse")
    extra: dict[str, Any] = {"runs_used": len(fixed), "paper_ci95": r.paper_ci95, "seeds": [f["seed"] for f in fixed],
                             "runs": stat.pop("runs_note")}
    if row_extra is not None:   # a spec's own columns, from the runs in the verdict
        extra.update(row_extra(r, fixed))
    for k in ("final",):   # the final state's number beside the best validated one, where runs carry it
        if all(k in f["evals"][r.eval] for f in fixed):
            extra["final_state"] = _aggregate(statistic, [f["evals"][r.eval][k] for f in fixed])["mean"]
    if len(every) > len(fixed):   # a sensitivity column: every run on disk, labelled, never in the verdict
        allstat = _aggregate(statistic, [f["evals"][r.eval] for f in every])
        extra["all_runs"] = {"n": len(every), "mean": allstat["mean"], "ci95": allstat["ci95"]}
    if r.paper is not None:
        extra["vs_paper"] = verdict(stat["mean"], stat["ci95"], r.paper, r.paper_ci95, higher_is_better=metric == "accuracy")
    return table_row(r.model, dict(r.setting), metric, stat["mean"], stat["ci95"], paper=r.paper,
                     median=stat.get("median"), diverged=stat["mean"] != stat["mean"], **extra)


def _aggregate(statistic: str, evals: list[dict[str, Any]]) -> dict[str, Any]:
    if statistic == "runs":
        means = [e["mean"] if not e.get("diverged") else math.nan for e in evals]
        s = robust_summary(means)
        if len(evals) == 1:
            s["ci95"] = evals[0]["ci95_tasks"]
        s["runs_note"] = f"{s['n']} of {len(evals)}" + (f", {s['outliers']} outlier(s) out" if s["outliers"] else "") + \
            (f", {len(evals) - s['n'] - s['outliers']} diverged" if len(evals) - s['n'] - s['outliers'] else "")
        return s
    if statistic == "tasks":   # pooled over every run's test tasks, from each run's mean, std and count
        if any(e.get("diverged") for e in evals):
            return {"mean": math.nan, "ci95": math.nan, "median": None, "runs_note": "diverged"}
        n = sum(e["n_tasks"] for e in evals)
        mean = sum(e["mean"] * e["n_tasks"] for e in evals) / n
        ss = sum((e["n_tasks"] - 1) * e["std_tasks"] ** 2 + e["n_tasks"] * (e["mean"] - mean) ** 2 for e in evals)
        median = sorted(e["mean"] for e in evals)[len(evals) // 2] if len(evals) > 1 else None
        return {"mean": mean, "ci95": 1.96 * math.sqrt(ss / (n - 1) / n), "median": median,
                "runs_note": f"{len(evals)} run(s), {n} tasks"}
    raise ConfigError(f"sweep: statistic must be 'runs' or 'tasks', got {statistic!r}")


def verdict(mean: float, ci: Optional[float], paper: float, paper_ci: Optional[float],
            higher_is_better: bool = False) -> str:
    """``better`` / ``worse`` when our 95% interval and the paper's do not overlap, else ``within``
    (``diverged`` for a NaN); never from rounding our mean to the paper's decimals."""
    if mean != mean:
        return "diverged"
    lo, hi = mean - (ci or 0.0) if ci == ci else mean, mean + (ci or 0.0) if ci == ci else mean
    plo, phi = paper - (paper_ci or 0.0), paper + (paper_ci or 0.0)
    if hi < plo:
        return "worse" if higher_is_better else "better"
    if lo > phi:
        return "better" if higher_is_better else "worse"
    return "within"

