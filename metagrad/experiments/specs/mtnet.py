"""001 (Lee & Choi 2018) sine tables as sweep specs; protocol in DESIGN.md section 4.

Sine family ``y = A sin(w x + b)``, ``A ~ U[0.1, 5]``, ``w ~ U[0.8, 1.2]``, ``b ~ U[0, pi]`` (our
``sin(w x - p)`` with ``p ~ U[-pi, 0]``), ``x ~ U[-5, 5]``, 10 query points; MLP 1-40-40-1 (ReLU,
weights normal with std 0.01, zero biases); one inner SGD step; Adam 1e-3, meta-batch 25, 70,000
iterations, second order. Tested after one step on 600 tasks; the interval is over test tasks.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from ..sweep import Cell, Row, Spec

__all__ = ["TABLE1", "config"]

SHOTS = (5, 10, 20)
KINDS = {"MAML": {"learner": "sgd"}, "Meta-SGD": {"learner": "meta_sgd", "lr_init": "uniform"},
         "T-net": {"learner": "tnet"}, "MT-net": {"learner": "mtnet"}}
# 001 Table 1: mean ± 95% interval over test tasks at K = 5, 10, 20
PAPER1 = {"MAML": ((1.07, 0.11), (0.71, 0.07), (0.50, 0.05)), "Meta-SGD": ((0.88, 0.14), (0.53, 0.09), (0.35, 0.06)),
          "T-net": ((0.83, 0.08), (0.56, 0.06), (0.38, 0.04)), "MT-net": ((0.76, 0.09), (0.49, 0.05), (0.33, 0.04))}


def config(kind: str, lr: float = 0.01, k_shot: int = 10) -> dict[str, Any]:
    """001's sine setting for ``kind`` (a ``Config`` dict that ``metagrad train`` also runs)."""
    return {"name": f"001-{kind}", "task": {"name": "sine", "k_shot": k_shot, "k_query": 10, "amplitude": [0.1, 5.0],
                                           "phase": [-math.pi, 0.0], "frequency": [0.8, 1.2]},
            "model": {"name": "mlp", "hidden": [40, 40], "init": "normal"},
            "inner": {**KINDS[kind], "lr": lr, "steps": 1, "mode": "second_order"},
            "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 70000, "nonfinite": "stop"},
            "eval": {"tasks": 600, "steps": 1, "seed": 90_000}, "vectorize": True, "threads": 1}


def _evals(kind: str) -> dict[str, list[str]]:
    out = {f"k{k}": [f"task.k_shot={k}"] for k in SHOTS}
    if kind == "MT-net":   # the hard mask sigmoid(zeta) > 1/2 beside the sampled one
        out.update({f"k{k}-threshold": [f"task.k_shot={k}", "inner.mask=threshold"] for k in SHOTS})
    return out


def _cells1(opts: Mapping[str, Any]) -> list[Cell]:
    return [Cell(f"{k}", config(k), _evals(k), labels={"model": k}) for k in KINDS]


def _rows1(opts: Mapping[str, Any]) -> list[Row]:
    rows = []
    for k in KINDS:
        for i, shot in enumerate(SHOTS):
            rows.append(Row(k, {"k_shot": shot, "steps": 1}, k, f"k{shot}", *PAPER1[k][i]))
            if k == "MT-net":
                rows.append(Row("MT-net (threshold)", {"k_shot": shot, "steps": 1}, k, f"k{shot}-threshold"))
    return rows


def _claims1(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["model"], r["setting"]["k_shot"]): r["mean"] for r in rows}
    return {"mtnet_beats_maml_every_k": all(by[("MT-net", k)] < by[("MAML", k)] for k in SHOTS),
            "all_within_or_better_than_paper": all(r.get("vs_paper") in ("within", "better")
                                                   for r in rows if r.get("paper") is not None)}


TABLE1 = Spec("mtnet-table1", "001 Table 1: MAML / Meta-SGD / T-net / MT-net on 001's sine family, K = 5, 10, 20",
              _cells1, _rows1, seeds=1, statistic="tasks", claims=_claims1,
              quick=["outer.iterations=300", "eval.tasks=100"],
              note="Loss after one inner step, meta-trained at K = 10; 95% interval over test tasks.")
