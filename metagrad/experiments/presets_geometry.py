"""Presets of learned inner-loop geometry (001: Meta-SGD, T-net, MT-net) and the bias
transformation (000). Protocols: DESIGN.md section 4.

``sine001`` and ``poly001`` are the settings of 001's tables: the sweep specs
(``specs/mtnet.py``) build every cell from them, and the ``sine001-*``/``poly001-*`` presets are
their defaults, so ``metagrad train sine001-mtnet`` trains exactly a table cell.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["PRESETS", "KINDS", "sine001", "poly001"]

# 001's models: MAML's SGD, Meta-SGD (Li et al. 2017: rates from U[0.005, 0.1], drawn from the run's
# seed), T-net, MT-net (mask logits 0, Gumbel-softmax temperature 1, straight-through masks).
KINDS: dict[str, dict[str, Any]] = {"MAML": {"learner": "sgd"}, "Meta-SGD": {"learner": "meta_sgd", "lr_init": "uniform"},
                                    "T-net": {"learner": "tnet"}, "MT-net": {"learner": "mtnet"}}


def sine001(kind: str, lr: float = 0.01, k_shot: int = 10) -> dict[str, Any]:
    """Lee & Choi (001) sine family ``y = A sin(w x + b)``: ``w ~ U[0.8, 1.2]``, ``b ~ U[0, pi]`` (our
    phase is ``-b``); two hidden layers of 40, ``W`` normal with std 0.01, one inner step of ``lr``,
    Adam 1e-3, meta-batch 25, 70,000 iterations (MAML's defaults where 001 is silent), 600 test tasks;
    a non-finite meta-loss stops the run (reported as diverged)."""
    return {"name": f"001-{kind}", "task": {"name": "sine", "k_shot": k_shot, "k_query": 10, "amplitude": [0.1, 5.0],
                                           "phase": [-math.pi, 0.0], "frequency": [0.8, 1.2]},
            "model": {"name": "mlp", "hidden": [40, 40], "init": "normal"},
            "inner": {**KINDS[kind], "lr": lr, "steps": 1, "mode": "second_order"},
            "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 70000, "nonfinite": "stop"},
            "eval": {"tasks": 600, "steps": 1, "seed": 90_000}, "vectorize": True, "threads": 1}


def poly001(order: int) -> dict[str, Any]:
    """001 Fig. 4: an MT-net on ``y = sum_{i<=order} c_i x^i``, ``c_i ~ U[-1, 1]``, 10-shot, with the sine
    runs' model and settings. The reference code draws ``x ~ U[-2, 2]`` and divides ``c_i`` by ``2^i``:
    the same distribution of ``y`` as ``x ~ U[-1, 1]`` with undivided coefficients, which we use."""
    cfg = sine001("MT-net")
    return {**cfg, "name": f"001-poly{order}", "task": {"name": "polynomial", "k_shot": 10, "k_query": 10,
                                                       "degree": order, "coef_range": [-1.0, 1.0], "x_range": [-1.0, 1.0]}}


PRESETS: dict[str, dict[str, Any]] = {
    **{f"sine001-{k.lower().replace('-', '')}": {**sine001(k), "name": f"sine001-{k.lower().replace('-', '')}"}
       for k in KINDS},   # sine001-maml, sine001-metasgd, sine001-tnet, sine001-mtnet
    **{f"poly001-mtnet-order{o}": {**poly001(o), "name": f"poly001-mtnet-order{o}"} for o in range(4)},
    # Finn & Levine (000): 5-shot, two hidden layers of 100, bias transformation of size 10,
    # five inner steps of 0.001, 70,000 iterations.
    "sine-maml-bt": {
        "name": "sine-maml-bt",
        "task": {"name": "sine", "k_shot": 5, "k_query": 10},
        "model": {"name": "mlp", "hidden": [100, 100], "activation": "relu", "bias_transform": 10},
        "inner": {"learner": "sgd", "lr": 0.001, "steps": 5, "mode": "second_order"},
        "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 70000},
        "eval": {"tasks": 1200},
    },
}
