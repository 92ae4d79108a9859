"""001 (Lee & Choi 2018) sine and polynomial experiments as sweep specs; protocol in DESIGN.md section 4.

Every cell is a setting of ``presets_geometry`` (``sine001``, ``poly001``): the sine family
``y = A sin(w x + b)``, MLP 1-40-40-1 (ReLU, weights normal with std 0.01, zero biases), one inner
SGD step, Adam 1e-3, meta-batch 25, 70,000 iterations, second order; tested after one step on 600
tasks. A run whose meta-loss or meta-gradient becomes non-finite stops (``outer.nonfinite="stop"``)
and its rows show ``diverged``, as do non-finite test losses. Runs are seeded by their seed alone
(model, Meta-SGD's rates, task stream, MT-net's Gumbel noise); the test tasks by ``eval.seed``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional

from ..presets_geometry import KINDS, poly001, sine001
from ..sweep import Cell, Row, Spec

__all__ = ["TABLE1", "TABLE2", "POLYNOMIAL", "config"]

config = sine001   # 001's sine setting for a kind (a Config dict that ``metagrad train`` also runs)

SHOTS = (5, 10, 20)
# 001 Table 1: mean ± 95% interval over test tasks at K = 5, 10, 20
PAPER1 = {"MAML": ((1.07, 0.11), (0.71, 0.07), (0.50, 0.05)), "Meta-SGD": ((0.88, 0.14), (0.53, 0.09), (0.35, 0.06)),
          "T-net": ((0.83, 0.08), (0.56, 0.06), (0.38, 0.04)), "MT-net": ((0.76, 0.09), (0.49, 0.05), (0.33, 0.04))}
RATES = (10.0, 1.0, 0.1, 0.01, 0.001, 0.0001)
# 001 Table 2: 10-shot, mean ± 95% interval over test tasks at inner learning rates RATES
PAPER2 = {"MAML": ((171.92, 25.04), (5.81, 0.49), (1.05, 0.11), (0.71, 0.07), (0.82, 0.08), (2.54, 0.19)),
          "MT-net": ((4.18, 0.30), (0.61, 0.07), (0.54, 0.05), (0.49, 0.05), (0.59, 0.06), (0.72, 0.07))}
ORDERS = (0, 1, 2, 3)


def _mean(rows: list[dict[str, Any]], model: str, **setting: Any) -> Optional[float]:
    """The mean of the row of ``model`` whose setting includes ``setting`` (``inf``: diverged; ``None``: not run)."""
    for r in rows:
        if r["model"] == model and all(r["setting"].get(k) == v for k, v in setting.items()):
            return math.inf if r["mean"] is None else r["mean"]
    return None


# --- Table 1: MAML / Meta-SGD / T-net / MT-net, meta-trained at K = 10, tested at K = 5, 10, 20 --------

def _evals(kind: str) -> dict[str, list[str]]:
    out = {f"k{k}": [f"task.k_shot={k}"] for k in SHOTS}
    if kind == "MT-net":   # the hard mask sigmoid(zeta) > 1/2 beside the sampled one
        out.update({f"k{k}-threshold": [f"task.k_shot={k}", "inner.mask=threshold"] for k in SHOTS})
    return out


def _cells1(opts: Mapping[str, Any]) -> list[Cell]:
    return [Cell(k, sine001(k), _evals(k), labels={"model": k}) for k in KINDS]


def _rows1(opts: Mapping[str, Any]) -> list[Row]:
    rows = []
    for k in KINDS:
        for i, shot in enumerate(SHOTS):
            rows.append(Row(k, {"k_shot": shot, "steps": 1}, k, f"k{shot}", *PAPER1[k][i]))
            if k == "MT-net":
                rows.append(Row("MT-net (threshold)", {"k_shot": shot, "steps": 1}, k, f"k{shot}-threshold"))
    return rows


def _claims1(rows: list[dict[str, Any]]) -> dict[str, Any]:
    mt, maml = ([_mean(rows, m, k_shot=k) for k in SHOTS] for m in ("MT-net", "MAML"))
    return {"mtnet_beats_maml_every_k": None if None in mt + maml else all(a < b for a, b in zip(mt, maml)),
            "all_within_or_better_than_paper": all(r.get("vs_paper") in ("within", "better")
                                                   for r in rows if r.get("paper") is not None)}


TABLE1 = Spec("mtnet-table1", "001 Table 1: MAML / Meta-SGD / T-net / MT-net on 001's sine family, K = 5, 10, 20",
              _cells1, _rows1, seeds=1, statistic="tasks", claims=_claims1,
              quick=["outer.iterations=300", "eval.tasks=100"],
              note="Loss after one inner step, meta-trained at K = 10; 95% interval over test tasks. "
                   "MT-net (threshold): the hard mask sigmoid(zeta) > 1/2.")


# --- Table 2: robustness to the inner learning rate (10-shot, MAML vs MT-net) ----------------------------

def _cells2(opts: Mapping[str, Any]) -> list[Cell]:
    return [Cell(f"{k}-lr{lr:g}", sine001(k, lr), labels={"model": k, "inner_lr": f"{lr:g}"})
            for k in PAPER2 for lr in RATES]


def _rows2(opts: Mapping[str, Any]) -> list[Row]:
    return [Row(k, {"inner_lr": lr, "k_shot": 10, "steps": 1}, f"{k}-lr{lr:g}", "test", *PAPER2[k][i])
            for k in PAPER2 for i, lr in enumerate(RATES)]


def _claims2(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """001 section 6.2: MT-net below 1.0 for rates 1 ... 1e-4; MAML worse at both extremes than at 0.01."""
    mt = [_mean(rows, "MT-net", inner_lr=lr) for lr in RATES[1:]]
    maml = [_mean(rows, "MAML", inner_lr=lr) for lr in (10.0, 0.0001, 0.01)]
    return {"mtnet_below_1_for_rates_1_to_1e-4": None if None in mt else all(m < 1.0 for m in mt),
            "maml_degrades_at_extremes": None if None in maml else maml[0] > maml[2] < maml[1]}


TABLE2 = Spec("mtnet-table2", "001 Table 2: MAML and MT-net for inner learning rates 10 ... 0.0001 (10-shot sine)",
              _cells2, _rows2, seeds=1, statistic="tasks", claims=_claims2,
              quick=["outer.iterations=150", "eval.tasks=100"],
              note="10-shot loss after one inner step; 95% interval over test tasks. 001 section 6.2: an MT-net "
                   "can undo a bad inner rate a by scaling T by sqrt(a0/a) and W by sqrt(a/a0); MAML cannot.")


# --- Fig. 4: fraction of rows the MT-net mask updates vs polynomial order ----------------------------------

def _cells3(opts: Mapping[str, Any]) -> list[Cell]:
    return [Cell(f"order{o}", poly001(o), labels={"order": o}, measures=("update_fraction", "threshold_fraction"))
            for o in ORDERS]


def _rows3(opts: Mapping[str, Any]) -> list[Row]:
    rows = []
    for o in ORDERS:
        s = {"order": o, "k_shot": 10}
        rows += [Row("MT-net: fraction of rows updated", s, f"order{o}", measure="update_fraction"),
                 Row("MT-net: rows with sigmoid(zeta) > 1/2", s, f"order{o}", measure="threshold_fraction"),
                 Row("MT-net: 10-shot MSE after one step", s, f"order{o}")]
    return rows


def _claims3(rows: list[dict[str, Any]]) -> dict[str, Any]:
    # 001's Fig. 4 text averages e^{-l}/(e^{-l}+1) = 1 - sigmoid(l), the probability that a row is *not*
    # updated under its own mask (the reference code's summary); both directions are reported.
    f = [_mean(rows, "MT-net: fraction of rows updated", order=o) for o in ORDERS]
    ok = all(v is not None and math.isfinite(v) for v in f)
    return {"fraction_by_order": {str(o): v if v is None or math.isfinite(v) else None for o, v in zip(ORDERS, f)},
            "rises_with_order": ok and all(a < b for a, b in zip(f, f[1:])),
            "highest_order_above_lowest": ok and f[-1] > f[0],
            "paper_formula_rises_with_order": ok and all(a > b for a, b in zip(f, f[1:]))}


def _plot3(out: Path, rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> None:
    """001 Fig. 4 redrawn (``fig4.png``): the mask's update fraction (and 001's formula, its complement)
    and the 10-shot MSE against the polynomial order, mean ± std over runs (``runs``: each cell's run
    summaries), each run a dot."""
    from ...plotting import pyplot, save_figure
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")

    def value(summary: dict[str, Any], key: str) -> Optional[float]:   # a run's measure, or its test MSE
        v = summary["evals"]["test"]["mean"] if key == "mse" else summary.get("measures", {}).get(key)
        return v if v is not None and math.isfinite(v) else None

    lines = (("update_fraction", "mean sigmoid(zeta): rows updated (eq. 9)", "C0", False, ax),
             ("update_fraction", "1 - mean sigmoid(zeta): 001's formula", "C1", True, ax),
             ("threshold_fraction", "rows with sigmoid(zeta) > 1/2", "C2", False, ax),
             ("mse", "10-shot MSE after one step", "C3", False, bx))
    for key, label, colour, complement, axis in lines:
        pts = [(o, [v for v in (value(s, key) for s in runs.get(f"order{o}", [])) if v is not None]) for o in ORDERS]
        pts = [(o, vs) for o, vs in pts if vs]
        if not pts:
            continue
        orders = [o for o, _ in pts]
        vals = [[1 - v if complement else v for v in vs] for _, vs in pts]
        mean = [sum(v) / len(v) for v in vals]
        std = [math.sqrt(sum((x - m) ** 2 for x in v) / max(len(v) - 1, 1)) for v, m in zip(vals, mean)]
        axis.errorbar(orders, mean, yerr=std, color=colour, marker="o", capsize=3, label=label,
                      ls="--" if complement else "-")
        for o, v in zip(orders, vals):
            axis.scatter([o] * len(v), v, color=colour, s=8, alpha=0.5)
    for axis, ylabel in ((ax, "fraction (mean ± std over runs; dots: runs)"), (bx, "test MSE (mean ± std over runs)")):
        axis.set_xticks(ORDERS)
        axis.set_xlabel("polynomial order")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    bx.set_yscale("log")
    ax.legend(fontsize=8)
    fig.suptitle("001 Fig. 4 redrawn: MT-net's mask against task complexity (10-shot polynomials)", fontsize=10)
    save_figure(fig, out / "fig4.png")


POLYNOMIAL = Spec("mtnet-polynomial", "001 Fig. 4: fraction of MT-net rows updated vs polynomial order 0..3",
                  _cells3, _rows3, seeds=3, statistic="runs", claims=_claims3, plot=_plot3,
                  quick=["outer.iterations=300", "eval.tasks=100"],
                  note="MT-net; fraction = mean sigmoid(zeta) over every row of every layer (the update probability "
                       "of eq. (9)); 001's formula 1 - fraction is its complement. Mean over runs. The paper gives "
                       "the fraction only as a plot (Fig. 4).")
