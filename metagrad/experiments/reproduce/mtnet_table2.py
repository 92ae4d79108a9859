"""001 Table 2: robustness to the inner learning rate (10-shot sine, MAML vs MT-net).

Same protocol as Table 1 (``mtnet_common``) with the inner step size ``a`` in
``10, 1, 0.1, 0.01, 0.001, 0.0001``. A run whose meta-loss, gradients or test losses become
non-finite is reported as ``diverged`` (a row with ``mean: null``), never as a crash.
001 section 6.2: an MT-net can undo a bad ``a`` by scaling ``T`` by ``sqrt(a0/a)`` and ``W``
by ``sqrt(a/a0)``; MAML cannot.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from ..tables import row, write_results
from .mtnet_common import (ITERATIONS, QUICK_ITERATIONS, QUICK_TEST_TASKS, TEST_TASKS, build, evaluate,
                           sine_task, summarise, train)

NAME = "mtnet-table2"
DESCRIPTION = "001 Table 2: MAML and MT-net for inner learning rates 10 ... 0.0001 (10-shot sine)"

RATES = (10.0, 1.0, 0.1, 0.01, 0.001, 0.0001)
KINDS = ("MAML", "MT-net")
PAPER: dict[str, tuple[tuple[float, float], ...]] = {
    "MAML": ((171.92, 25.04), (5.81, 0.49), (1.05, 0.11), (0.71, 0.07), (0.82, 0.08), (2.54, 0.19)),
    "MT-net": ((4.18, 0.30), (0.61, 0.07), (0.54, 0.05), (0.49, 0.05), (0.59, 0.06), (0.72, 0.07)),
}


def run(out: Path, quick: bool = False, seeds: Optional[int] = None, iterations: Optional[int] = None,
        test_tasks: Optional[int] = None, rates: tuple[float, ...] = RATES,
        kinds: tuple[str, ...] = KINDS) -> list[dict[str, Any]]:
    """Train MAML and MT-net (or ``kinds``) at every inner rate; write ``table.md``/``results.json``
    after each."""
    out = Path(out)
    seeds = seeds or 1
    # 12 runs: quick halves the per-run iterations so the whole table takes about a minute.
    iters = iterations or (QUICK_ITERATIONS // 2 if quick else ITERATIONS)
    n_test = test_tasks or (QUICK_TEST_TASKS if quick else TEST_TASKS)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    records: dict[str, Any] = {}
    note = (f"10-shot loss after one inner step; {iters} meta-iterations (protocol: {ITERATIONS}), "
            f"{n_test} test tasks per cell, {seeds} training seed(s).")
    for kind in kinds:
        for lr in rates:
            vs = []
            for s in range(seeds):
                algo = build(kind, inner_lr=lr, seed=s)
                rec = train(algo, sine_task(10), iters, seed=s,
                            progress=None if quick else f"{kind} lr={lr} seed {s}")
                records[f"{kind}/lr={lr}/seed{s}"] = rec.as_dict()
                if rec.diverged:
                    vs.append(torch.full((n_test,), float("nan")))
                    continue
                with torch.no_grad():
                    vs.append(evaluate(algo, sine_task(10), n_test, seed=s))
            pooled = torch.cat(vs)
            mean, ci, _ = summarise(pooled)
            median = float(torch.tensor([summarise(v)[0] for v in vs]).median()) if seeds > 1 else None
            paper, paper_ci = PAPER[kind][RATES.index(lr)] if lr in RATES else (None, None)
            rows.append(row(kind, {"inner_lr": lr, "k_shot": 10, "steps": 1}, "mse", mean, ci,
                            paper=paper, median=median, diverged=mean != mean, paper_ci95=paper_ci,
                            seeds=seeds, iterations=iters, test_tasks=n_test))
            write_results(out, NAME, rows, note, training=records,
                          wall_clock_s=round(time.perf_counter() - t0, 1))
    claims = _claims(rows)
    write_results(out, NAME, rows, note + f" Claims: {claims}.", training=records, claims=claims,
                  wall_clock_s=round(time.perf_counter() - t0, 1))
    return rows


def _claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's checks: MT-net < 1.0 for rates 1 ... 0.0001; MAML worse at both extremes."""
    by = {(r["model"], r["setting"]["inner_lr"]): r for r in rows}

    def loss(kind: str, lr: float) -> float:
        r = by.get((kind, lr))
        return float("inf") if r is None or r["mean"] is None else r["mean"]

    claims: dict[str, Any] = {}
    mid = [lr for lr in (1.0, 0.1, 0.01, 0.001, 0.0001) if ("MT-net", lr) in by]
    if mid:
        claims["mtnet_below_1_for_rates_1_to_1e-4"] = all(loss("MT-net", lr) < 1.0 for lr in mid)
    if all(("MAML", lr) in by for lr in (10.0, 0.01, 0.0001)):
        claims["maml_degrades_at_extremes"] = (loss("MAML", 10.0) > loss("MAML", 0.01)
                                              and loss("MAML", 0.0001) > loss("MAML", 0.01))
    return claims
