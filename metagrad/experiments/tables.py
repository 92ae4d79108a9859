"""The tables of ``metagrad reproduce``: ``results.json`` rows and ``table.md`` (ours beside the paper).

Each row is one table cell::

    {"model": "MT-net", "setting": {"k_shot": 10, "steps": 5}, "metric": "mse",
     "mean": 0.49, "ci95": 0.02, "median": null, "paper": 0.49, "diverged": false}
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from ..io import write_json, write_text

__all__ = ["row", "write_results", "format_table", "claims_section", "pending_table"]


def row(model: str, setting: dict[str, Any], metric: str, mean: float, ci95: float,
        paper: Optional[float] = None, median: Optional[float] = None, diverged: bool = False,
        **extra: Any) -> dict[str, Any]:
    """One result cell in the ``results.json`` schema of DESIGN.md section 3."""
    diverged = diverged or not math.isfinite(mean)
    return {"model": model, "setting": dict(setting), "metric": metric,
            "mean": None if not math.isfinite(mean) else float(mean),
            "ci95": None if ci95 is None or not math.isfinite(ci95) else float(ci95),
            "median": median, "paper": paper, "diverged": bool(diverged), **extra}


def _fmt(x: Optional[float], metric: str) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.2f}" if metric == "accuracy" else f"{x:.3f}"


def format_table(name: str, rows: list[dict[str, Any]], note: str = "") -> str:
    """Markdown table: model, setting, ours (mean +- 95% CI), median, where rows carry it the
    95% interval of one run's mean over its test tasks (``test_set_ci95``: how far another draw
    of test tasks alone would move a number), paper (+- its interval where known), where rows
    carry one the verdict ``vs_paper`` (better/within/worse), and where rows carry it what became
    of the runs behind a number (``runs``: e.g. outliers dropped, runs lost), and where rows carry
    it the number the paper's own code would give (``thesis_restore`` +- ``thesis_restore_ci95``)."""
    verdict = any("vs_paper" in r for r in rows)
    restore = any("thesis_restore" in r for r in rows)
    test_set = any("test_set_ci95" in r for r in rows)
    runs = any("runs" in r for r in rows)
    final = any("final_state" in r for r in rows)
    every = any("all_runs" in r for r in rows)
    lines = [f"# {name}", ""] + ([note, ""] if note else []) + [
             "| model | setting | ours (mean ± 95% CI) | median |" + (" ± test tasks |" if test_set else "")
             + " paper |" + (" vs paper |" if verdict else "") + (" runs |" if runs else "")
             + (" as thesis code |" if restore else "") + (" final state |" if final else "")
             + (" all runs (sensitivity, not in the verdict) |" if every else ""),
             "| --- | --- | --- | --- |" + (" --- |" if test_set else "") + " --- |" + (" --- |" if verdict else "")
             + (" --- |" if runs else "") + (" --- |" if restore else "") + (" --- |" if final else "")
             + (" --- |" if every else "")]
    for r in rows:
        setting = ", ".join(f"{k}={v}" for k, v in r["setting"].items())
        if r["diverged"]:
            ours = "diverged"
        else:
            ours = f"{_fmt(r['mean'], r['metric'])} ± {_fmt(r['ci95'], r['metric'])}"
        paper = _fmt(r.get("paper"), r["metric"])
        if r.get("paper") is not None and r.get("paper_ci95") is not None:
            paper += f" ± {_fmt(r['paper_ci95'], r['metric'])}"
        lines.append(f"| {r['model']} | {setting} | {ours} | {_fmt(r.get('median'), r['metric'])} |"
                     + (f" {_fmt(r.get('test_set_ci95'), r['metric'])} |" if test_set else "")
                     + f" {paper} |" + (f" {r.get('vs_paper', '-')} |" if verdict else "")
                     + (f" {r.get('runs', '-')} |" if runs else "")
                     + (f" {_fmt(r['thesis_restore'], r['metric'])} ± {_fmt(r['thesis_restore_ci95'], r['metric'])} |"
                        if "thesis_restore" in r else " - |" if restore else "")
                     + (f" {_fmt(r.get('final_state'), r['metric'])} |" if final else "")
                     + ((f" {_fmt(r['all_runs']['mean'], r['metric'])} ± {_fmt(r['all_runs']['ci95'], r['metric'])}"
                         f" ({r['all_runs']['n']} runs) |" if "all_runs" in r else " - |") if every else ""))
    if not rows:   # a table whose cells are all still training
        lines += ["", "(no finished row yet)", ""]
        return "\n".join(lines)
    unit = "accuracy in %" if any(r["metric"] == "accuracy" for r in rows) else "metric: " + rows[0]["metric"]
    lines += ["", f"({unit}; '-' where the paper gives no number)", ""]
    return "\n".join(lines)


def _claim_value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_claim_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_claim_value(x) for x in v)
    return str(v)


def claims_section(claims: dict[str, Any]) -> str:
    """``## Claims checked``: a line per entry of the spec's ``claims`` (what it measured of the
    paper's claims: a verdict, a count, the numbers behind them), as a list a reader can scan."""
    if not claims:
        return ""
    return "\n".join(["", "## Claims checked", ""] + [f"- {k}: {_claim_value(v)}" for k, v in claims.items()]) + "\n"


def pending_table(pending: list[tuple[Any, str, str]], metric: Optional[str] = None) -> str:
    """``## Not finished``: the rows still waiting for runs (``(row, runs done, progress)``, a row with
    ``model``, ``setting``, ``paper`` and ``paper_ci95`` as ``sweep.Row``), with the paper's number,
    in % where the table's finished rows are accuracies (``metric``), as they are printed above it."""
    if not pending:
        return ""
    lines = ["", "## Not finished", "", "| model | setting | paper | runs done | progress |", "| --- | --- | --- | --- | --- |"]
    show = (lambda x: _fmt(x, "accuracy")) if metric == "accuracy" else (lambda x: f"{x:g}")
    for r, done, progress in pending:
        paper = "-" if r.paper is None else show(r.paper) + ("" if r.paper_ci95 is None else f" ± {show(r.paper_ci95)}")
        setting = ", ".join(f"{k}={v}" for k, v in r.setting.items())
        lines.append(f"| {r.model} | {setting} | {paper} | {done} | {progress} |")
    return "\n".join(lines) + "\n"


def write_results(out: str | Path, name: str, rows: list[dict[str, Any]], note: str = "",
                  **extra: Any) -> None:
    """Write ``out/results.json`` and ``out/table.md`` atomically."""
    out = Path(out)
    write_json(out / "results.json", {"experiment": name, "rows": rows, **extra})
    write_text(out / "table.md", format_table(name, rows, note))


def versus_paper(mean: float, paper: float, paper_ci: float) -> str:
    """``better`` (below the paper's interval), ``within`` it, ``worse`` (above) or ``diverged``."""
    if mean != mean:
        return "diverged"
    if mean < paper - paper_ci:
        return "better"
    return "within" if mean <= paper + paper_ci else "worse"
