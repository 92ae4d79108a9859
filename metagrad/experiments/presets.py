"""Named experiment configs (``metagrad list`` shows them; ``metagrad train NAME`` runs one).

Each preset is a partial config dict completed by ``Config.from_dict``; the protocols are those
of DESIGN.md section 4. Other modules add their presets at the end of this file.
"""
from __future__ import annotations

from typing import Any

from ..errors import did_you_mean
from .config import Config, ConfigError

__all__ = ["PRESETS", "get_preset"]

# Finn et al. 2017 sine regression: 10-shot, one inner SGD step of 0.01, meta-batch 25,
# Adam 1e-3, 70,000 iterations, MLP 1-40-40-1 with ReLU.
_SINE_MAML: dict[str, Any] = {
    "name": "sine-maml",
    "task": {"name": "sine", "k_shot": 10, "k_query": 10},
    "model": {"name": "mlp", "hidden": [40, 40], "activation": "relu"},
    "inner": {"learner": "sgd", "lr": 0.01, "steps": 1, "mode": "second_order"},
    "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 70000},
    "eval": {"tasks": 600},
}

PRESETS: dict[str, dict[str, Any]] = {
    "sine-maml": _SINE_MAML,
    # 004 Table 6, 5-step second-order MAML: query sets of 50, gradient value clipping at 10
    # (more than one inner step), evaluation on 2,000 test tasks. To fit a 10-minute budget on
    # 2 cores we train 30,000 meta-batches of 25 tasks (750,000 tasks) with Adam at 2e-3 and a
    # cosine decay, instead of 004's 70,000 single-task iterations; one thread (small ops).
    "sine-maml-5step": {
        **_SINE_MAML, "name": "sine-maml-5step",
        "task": {"name": "sine", "k_shot": 10, "k_query": 50},
        "inner": {"learner": "sgd", "lr": 0.01, "steps": 5, "mode": "second_order", "grad_clip": 10.0},
        "outer": {"optimizer": "adam", "lr": 2e-3, "meta_batch": 25, "iterations": 30000, "schedule": "cosine"},
        "eval": {"tasks": 2000}, "threads": 1, "log_every": 500, "checkpoint_every": 2500,
    },
    "sine-fomaml": {**_SINE_MAML, "name": "sine-fomaml",
                    "inner": {**_SINE_MAML["inner"], "mode": "first_order"}},
    "sine-hfmaml": {**_SINE_MAML, "name": "sine-hfmaml",
                    "inner": {**_SINE_MAML["inner"], "mode": "hessian_free", "hf_delta": 1e-3}},
    # A seconds-long smoke run.
    "sine-maml-quick": {**_SINE_MAML, "name": "sine-maml-quick",
                        "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 300},
                        "eval": {"tasks": 200}, "log_every": 50, "checkpoint_every": 100},
    "polynomial-maml": {**_SINE_MAML, "name": "polynomial-maml",
                        "task": {"name": "polynomial", "k_shot": 10, "k_query": 10, "degree": 3}},
}


def get_preset(name: str) -> Config:
    """The preset ``name`` as a validated ``Config`` (one-line error listing the presets)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; choose one of {', '.join(sorted(PRESETS))} "
                          "(or pass a path to a JSON config)")
    return Config.from_dict(PRESETS[name])

# --- presets contributed by other modules (one line each) --------------------------------
from .presets_images import PRESETS as _p_images; PRESETS.update(_p_images)
from .presets_geometry import PRESETS as _p_geometry; PRESETS.update(_p_geometry)
from .specs.turtle import PRESETS as _p_turtle; PRESETS.update(_p_turtle)
from .presets_universality import PRESETS as _p_000; PRESETS.update(_p_000)
