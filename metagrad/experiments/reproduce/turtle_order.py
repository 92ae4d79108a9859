"""004 Fig. 11 (section 4.2.2): first- against second-order meta-gradients for TURTLE and MAML.

5-shot sine regression, T = 1, 5, 10 inner steps. TURTLE as in that section: raw gradient input,
five hidden layers of 20 ReLU units, no per-parameter rates, meta-batch 1; MAML with inner SGD
0.01. fo- variants use the core's ``mode="first_order"`` (inner gradients are constants). The
thesis's finding: fo-MAML is close to so-MAML, while fo-TURTLE is far worse than so-TURTLE.
Fig. 11 shows validation MSE (no table of numbers), so ``paper`` is empty here; the claim is the
gap. Protocol and cell caching: ``turtle_common``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ...plotting import plot_lines
from ..tables import row, write_results
from .turtle_cells import Protocol, aggregate, run_cells
from .turtle_cli import protocol_arguments, set_threads, stderr_log
from .turtle_common import TASKS

NAME = "turtle-order"
DESCRIPTION = "004 Fig. 11: first- vs second-order TURTLE and MAML on 5-shot sine, T = 1, 5, 10"

MODELS = ("fo-MAML", "so-MAML", "fo-TURTLE-raw", "so-TURTLE-raw")
STEPS = (1, 5, 10)
K_SHOT = 5


def run(out: Path, quick: bool = False, seeds: Optional[int] = None, *, steps: Sequence[int] = STEPS,
        tasks: Optional[int] = None, test_tasks: Optional[int] = None, val_every: Optional[int] = -1,
        val_tasks: Optional[int] = None, log: Any = None, threads: int = 1) -> list[dict[str, Any]]:
    """Train the four models at each ``T`` (``seeds`` runs, default 5; ``quick``: 1 seed, T = 1 and 5,
    300 tasks, 100 test tasks) and write ``table.md``/``results.json``/``order.png``."""
    out = Path(out)
    if quick:
        steps = (1, 5)
    base = Protocol.quick() if quick else Protocol()
    proto = base.replace(tasks, test_tasks, val_every, val_tasks)
    n_seeds = seeds or (1 if quick else 5)
    set_threads(NAME, threads)
    t0 = time.perf_counter()
    note = (f"{K_SHOT}-shot sine, mean test MSE on {proto.test_tasks} tasks; {n_seeds} run(s) per cell (004 "
            f"statistics across runs); {proto.tasks} meta-training tasks (protocol: {TASKS}). TURTLE-raw: raw "
            f"gradient input, 5x20 ReLU, no per-parameter rates, meta-batch 1 (004 section 4.2.2). "
            f"The paper (Fig. 11) gives no numbers.")
    rows: list[dict[str, Any]] = []
    for t in steps:
        for model in MODELS:
            cells = run_cells(out, model, t, K_SHOT, range(n_seeds), proto, log)
            stats = aggregate(cells)
            rows.append(row(model, {"k_shot": K_SHOT, "steps": t}, "mse", stats["mean"], stats["ci95"],
                            median=stats["median"], diverged=stats["diverged_runs"] == n_seeds,
                            seeds=n_seeds, tasks=proto.tasks, ms_per_iteration=round(stats["ms_per_iteration"], 2),
                            per_seed_mean=[c["mean"] for c in cells]))
            write_results(out, NAME, rows, note, claims=claims(rows), wall_clock_s=round(time.perf_counter() - t0, 1))
    _plot(rows, out)
    return rows


def claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per T: the first-order penalty of TURTLE (fo - so) and of MAML, and whether TURTLE's is larger."""
    by = {(r["model"], r["setting"]["steps"]): r["mean"] for r in rows}
    out: dict[str, Any] = {}
    for t in sorted({r["setting"]["steps"] for r in rows}):
        vals = [by.get((m, t)) for m in MODELS]
        if any(v is None for v in vals):
            continue
        fo_m, so_m, fo_t, so_t = vals
        out[f"T{t}"] = {"turtle_fo_minus_so": fo_t - so_t, "maml_fo_minus_so": fo_m - so_m,
                        "turtle_gap_larger": (fo_t - so_t) > abs(fo_m - so_m)}
    return out


def _plot(rows: list[dict[str, Any]], out: Path) -> None:
    lines = {m: [(r["setting"]["steps"], r["mean"]) for r in rows if r["model"] == m and r["mean"] is not None]
             for m in MODELS}
    plot_lines(lines, out / "order.png", "inner steps T", "test MSE (5-shot)", logy=True,
               styles={m: {"linestyle": "--"} for m in MODELS if m.startswith("fo")})


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    protocol_arguments(p, STEPS)
    a = p.parse_args(argv)
    run(a.out, a.quick, a.seeds, steps=a.steps, tasks=a.tasks, test_tasks=a.test_tasks, val_every=a.val_every,
        val_tasks=a.val_tasks, log=stderr_log, threads=a.threads)


if __name__ == "__main__":
    main()
