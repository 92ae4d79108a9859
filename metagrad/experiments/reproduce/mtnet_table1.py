"""001 Table 1: sine regression loss of MAML, Meta-SGD, T-net and MT-net (meta-trained at
K = 10, tested at K = 5, 10, 20 after one inner step). Protocol: ``mtnet_common``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from ...learners.tnet import update_fraction, update_fractions
from ..tables import row, versus_paper, write_results
from .mtnet_common import (ITERATIONS, KINDS, QUICK_ITERATIONS, QUICK_TEST_TASKS, TEST_TASKS, build,
                           evaluate, sine_task, summarise, train)

NAME = "mtnet-table1"
DESCRIPTION = "001 Table 1: MAML / Meta-SGD / T-net / MT-net on 001's sine family, K = 5, 10, 20"

SHOTS = (5, 10, 20)
# 001 Table 1: mean ± 95% interval over test tasks.
PAPER: dict[str, tuple[tuple[float, float], ...]] = {
    "MAML": ((1.07, 0.11), (0.71, 0.07), (0.50, 0.05)),
    "Meta-SGD": ((0.88, 0.14), (0.53, 0.09), (0.35, 0.06)),
    "T-net": ((0.83, 0.08), (0.56, 0.06), (0.38, 0.04)),
    "MT-net": ((0.76, 0.09), (0.49, 0.05), (0.33, 0.04)),
}


def run(out: Path, quick: bool = False, seeds: Optional[int] = None, iterations: Optional[int] = None,
        test_tasks: Optional[int] = None, kinds: tuple[str, ...] = KINDS) -> list[dict[str, Any]]:
    """Train each model (``seeds`` runs each, default 1) and write ``table.md``/``results.json``.

    ``iterations``/``test_tasks`` override the protocol (70,000 / 600; ``quick``: 300 / 100);
    the table note says which were used. Results are rewritten after every model.
    """
    out = Path(out)
    seeds = seeds or 1
    iters = iterations or (QUICK_ITERATIONS if quick else ITERATIONS)
    n_test = test_tasks or (QUICK_TEST_TASKS if quick else TEST_TASKS)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    records: dict[str, Any] = {}
    note = (f"Loss after one inner step; {iters} meta-iterations (protocol: {ITERATIONS}), "
            f"{n_test} test tasks per cell, {seeds} training seed(s); 95% interval over test tasks"
            + (" pooled over seeds" if seeds > 1 else "") + ". MT-net (threshold): hard mask sigmoid(zeta) > 1/2.")
    for kind in kinds:
        losses: dict[tuple[str, int], list[torch.Tensor]] = {}
        for s in range(seeds):
            algo = build(kind, seed=s)
            rec = train(algo, sine_task(10), iters, seed=s, progress=None if quick else f"{kind} seed {s}")
            records[f"{kind}/seed{s}"] = rec.as_dict()
            evals = [(kind, None)]
            if kind == "MT-net":
                evals.append(("MT-net (threshold)", algo.learner.evaluation("threshold")))
            for label, learner in evals:
                for k in SHOTS:
                    if rec.diverged:
                        v = torch.full((n_test,), float("nan"))
                    else:
                        v = evaluate(algo, sine_task(k), n_test, seed=s, learner=learner)
                    losses.setdefault((label, k), []).append(v)
            if kind == "MT-net" and not rec.diverged:
                meta = algo.meta_params()
                records[f"{kind}/seed{s}"]["update_fraction"] = update_fraction(meta)
                records[f"{kind}/seed{s}"]["update_fractions"] = update_fractions(meta)
        for (label, k), vs in losses.items():
            pooled = torch.cat(vs)
            mean, ci, _ = summarise(pooled)
            seed_means = [summarise(v)[0] for v in vs]
            median = float(torch.tensor(seed_means).median()) if seeds > 1 else None
            base = PAPER.get(label)
            paper, paper_ci = (base[SHOTS.index(k)] if base else (None, None))
            extra: dict[str, Any] = {"paper_ci95": paper_ci, "seeds": seeds, "iterations": iters,
                                     "test_tasks": n_test}
            if paper is not None:
                extra["vs_paper"] = versus_paper(mean, paper, paper_ci)
            rows.append(row(label, {"k_shot": k, "steps": 1}, "mse", mean, ci, paper=paper,
                            median=median, diverged=mean != mean, **extra))
        write_results(out, NAME, rows, note, training=records,
                      wall_clock_s=round(time.perf_counter() - t0, 1))
    _claims(rows, out, note, records, t0)
    return rows


def _claims(rows: list[dict[str, Any]], out: Path, note: str, records: dict[str, Any], t0: float) -> None:
    """Add the issue's checks (MT-net below MAML at every K; each cell within/better than paper)."""
    by = {(r["model"], r["setting"]["k_shot"]): r for r in rows}
    claims: dict[str, Any] = {}
    if all(("MT-net", k) in by and ("MAML", k) in by for k in SHOTS):
        claims["mtnet_beats_maml_every_k"] = all(
            by[("MT-net", k)]["mean"] is not None and by[("MAML", k)]["mean"] is not None
            and by[("MT-net", k)]["mean"] < by[("MAML", k)]["mean"] for k in SHOTS)
    claims["all_within_or_better_than_paper"] = all(
        r.get("vs_paper") in ("within", "better") for r in rows if r.get("paper") is not None)
    write_results(out, NAME, rows, note + f" Claims: {claims}.", training=records, claims=claims,
                  wall_clock_s=round(time.perf_counter() - t0, 1))
