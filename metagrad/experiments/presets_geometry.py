"""Presets of learned inner-loop geometry (001: Meta-SGD, T-net, MT-net) and the bias
transformation (000). Protocols: DESIGN.md section 4."""
from __future__ import annotations

import math
from typing import Any

__all__ = ["PRESETS"]

# Lee & Choi (001) sine family y = A sin(w x + b): w ~ U[0.8, 1.2], b ~ U[0, pi] (our phase is -b);
# two hidden layers of 40, W truncated normal std 0.01, one inner step of 0.01, Adam 1e-3,
# meta-batch 25, 70,000 iterations (MAML's defaults where 001 is silent), 600 test tasks.
_SINE001: dict[str, Any] = {
    "name": "sine001-maml",
    "task": {"name": "sine", "k_shot": 10, "k_query": 10, "frequency": [0.8, 1.2], "phase": [-math.pi, 0.0]},
    "model": {"name": "mlp", "hidden": [40, 40], "activation": "relu", "init": "normal"},
    "inner": {"learner": "sgd", "lr": 0.01, "steps": 1, "mode": "second_order"},
    "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 70000},
    "eval": {"tasks": 600},
}


def _with(name: str, **inner: Any) -> dict[str, Any]:
    return {**_SINE001, "name": name, "inner": {**_SINE001["inner"], **inner}}


PRESETS: dict[str, dict[str, Any]] = {
    "sine001-maml": _SINE001,
    # Li et al. 2017: per-parameter rates initialised from U[0.005, 0.1].
    "sine001-metasgd": _with("sine001-metasgd", learner="meta_sgd", lr_init="uniform"),
    "sine001-tnet": _with("sine001-tnet", learner="tnet"),
    # MT-net: mask logits 0, Gumbel-softmax temperature 1 (reference code), straight-through masks.
    "sine001-mtnet": _with("sine001-mtnet", learner="mtnet", temperature=1.0, hard=True, logit_init=0.0),
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
