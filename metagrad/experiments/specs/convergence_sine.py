"""002 (Fallah, Mokhtari & Ozdaglar 2020) on a real model: ``||grad F||`` of MAML, FO-MAML and HF-MAML
on sine regression, where ``F`` has no closed form.

Each run trains the 1-40-40-1 ReLU MLP in 002's setting (plain SGD on ``w`` with a constant step
``BETA``, one inner SGD step of ``ALPHA``, batches of ``B`` tasks with ``D_in = D_o = D_h = D`` examples,
``D_h`` fresh data of the same tasks; the meta-gradient's norm clipped at ``CLIP`` against rare spikes,
with which plain SGD at a larger step diverged) and records ``||grad F(w_k)||`` every ``EVERY`` iterations,
estimated with a very large batch (``eval.measure=grad_norm_F_sampled``:
``metagrad.stationarity.meta_gradient_norm`` with 2,000 tasks of 100 support and 100 query examples,
the same sample for every state, exact second-order gradient). The table gives the level each run
settles at (the mean of the last fifth of its curve), over seeds, at two batch sizes: 002 predicts that
MAML's and HF-MAML's level falls as the batches grow, while FO-MAML keeps a floor of order
``a * sigma`` (Theorems 4.12, 4.15, 4.17).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from ..sweep import Cell, Row, Spec
from .convergence import MODES, grad_norm_panel

__all__ = ["CONVERGENCE_SINE", "config"]

BATCHES = (10, 50)                 # B = D (tasks per batch = examples per D_in, D_o, D_h)
ALPHA, BETA, ITERATIONS, EVERY = 0.01, 0.003, 4000, 250
CLIP = 10.0                        # meta-gradient norm clipping, against rare spikes (plain SGD at 0.01 diverged)
MEASURE_TASKS, MEASURE_K = 2000, 100   # metagrad.stationarity's defaults (registry "grad_norm_F_sampled")


def config(mode: str, batch: int, iterations: int = ITERATIONS, every: int = EVERY) -> dict[str, Any]:
    """One run: ``mode`` on sine tasks, batches ``B = D = batch``, SGD step ``BETA``, one inner step ``ALPHA``."""
    return {"name": f"convergence-sine-{mode}", "task": {"name": "sine", "k_shot": batch, "k_query": batch},
            "model": {"name": "mlp", "hidden": [40, 40], "activation": "relu"},
            "inner": {"learner": "sgd", "lr": ALPHA, "steps": 1, "mode": mode, "hf_delta": 1e-3},
            "outer": {"optimizer": "sgd", "lr": BETA, "meta_batch": batch, "iterations": iterations,
                      "clip_norm": CLIP, "hvp_batch": batch if mode != "first_order" else False},
            "eval": {"tasks": 100, "every": every, "measure": "grad_norm_F_sampled", "test_state": "final"},
            "threads": 1, "log_every": iterations}


def _id(mode: str, batch: int) -> str:
    return f"sine-{mode}-B{batch}"


def _cells(opts: Mapping[str, Any]) -> list[Cell]:
    return [Cell(_id(m, b), config(m, b), labels={"mode": m, "batch": b}, separate=True) for m in MODES for b in BATCHES]


def _rows(opts: Mapping[str, Any]) -> list[Row]:
    return [Row(MODES[m], {"B=D": b, "a": ALPHA}, _id(m, b), measure="grad_norm_F_sampled_tail")
            for m in MODES for b in BATCHES]


def _level(rows: list[dict[str, Any]], model: str, batch: int) -> Optional[tuple[float, float]]:
    """(mean, 95% half-width; 0 for one run) of ``model``'s row at ``batch``."""
    for r in rows:
        if r["model"] == model and r["setting"].get("B=D") == batch:
            return r["mean"], r["ci95"] or 0.0
    return None


def _claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lv = {m: [_level(rows, m, b) for b in BATCHES] for m in MODES.values()}
    if any(v is None for vals in lv.values() for v in vals):
        return {}

    def apart(lo: tuple[float, float], hi: tuple[float, float]) -> bool:   # intervals do not overlap
        return hi[0] - hi[1] > lo[0] + lo[1]
    big = len(BATCHES) - 1
    return {
        "levels_by_batch": {m: [round(v[0], 4) for v in vals] for m, vals in lv.items()},
        "ci95_by_batch": {m: [round(v[1], 4) for v in vals] for m, vals in lv.items()},
        "batches": list(BATCHES),
        "relative_drop_small_to_large_batch": {m: round(1 - vals[-1][0] / vals[0][0], 3) for m, vals in lv.items()},
        "maml_hf_fall_with_batch_beyond_intervals": {m: apart(lv[m][big], lv[m][0]) for m in ("MAML", "HF-MAML")},
        "fo_above_maml_at_largest_batch_beyond_intervals": apart(lv["MAML"][big], lv["FO-MAML"][big]),
        "hf_over_maml_at_largest_batch": round(lv["HF-MAML"][big][0] / lv["MAML"][big][0], 3),
    }


def figure(out: Path, rows: list[dict[str, Any]]) -> None:
    """convergence_sine.png: ||grad F|| against meta-iterations (left) and against examples processed (right)."""
    from ...plotting import pyplot, save_figure
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    styles = {BATCHES[0]: "--", BATCHES[-1]: "-"}
    lines = [(m, b, _id(m, b)) for m in MODES for b in BATCHES]
    for j, ax in enumerate(axes):
        grad_norm_panel(ax, out, lines, styles, by_samples=j == 1)
        ax.set_ylabel(f"||grad F(w_k)|| ({MEASURE_TASKS} tasks x {MEASURE_K}+{MEASURE_K} examples)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"sine, MLP 1-40-40-1, one inner step a={ALPHA:g}, SGD beta={BETA:g}: geometric mean and 95% "
                 "band over seeds", fontsize=10)
    save_figure(fig, out / "convergence_sine.png")


CONVERGENCE_SINE = Spec(
    "maml-convergence-sine", "002 on sine regression: ||grad F|| (very large batch) of MAML, FO-MAML and HF-MAML",
    _cells, _rows, seeds=3, statistic="runs", claims=_claims, figure=figure,
    quick=["outer.iterations=40", "eval.every=20", "eval.tasks=10"],
    note=f"Sine tasks (A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]); MLP 1-40-40-1 (ReLU); one inner SGD step "
         f"of a={ALPHA:g}; plain SGD meta-step {BETA:g} (meta-gradient norm clipped at {CLIP:g}), {ITERATIONS} "
         f"iterations; B tasks of D_in = D_o = D_h = D "
         f"examples (D_h: fresh examples of the same tasks; FO-MAML draws none); HF-MAML's central difference with "
         f"d = 1e-3. ||grad F|| every {EVERY} iterations, estimated with {MEASURE_TASKS} fixed tasks of {MEASURE_K} "
         f"support and {MEASURE_K} query examples (exact second-order meta-gradient). Rows: its mean over the last "
         "fifth of each run, mean ± 95% interval over seeds.")
