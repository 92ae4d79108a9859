"""Presets of Finn & Levine (000), "Meta-learning and universality", section 7 and appendix G.

``sine000`` and ``poly000`` are the settings the ``universality-*`` specs build their cells from, so
``metagrad train sine-ood`` (or ``sine-oracle``, ``sine-snail``) trains exactly one cell:

* sine: ``y = A sin(x - p)``, ``A ~ U[0.1, 5]``, ``p ~ U[0, pi]``, ``x ~ U[-5, 5]``, 5-shot (10 query
  points), MLP with two hidden layers of 100, ReLU, bias transformation of size 10, 5 inner steps of
  0.001, Adam 1e-3, meta-batch 25, 70,000 iterations, 1,200 evaluation tasks.
* polynomial (depth study): degree 3, coefficients ``U[-1, 1]``, ``x ~ U[-3, 3]``, 40 points per
  task (20 support + 20 query), one inner step, bias transformation 10.

Meta-training is always in distribution; 000's out-of-distribution tasks (amplitudes ``[5, 10]``,
phases ``[pi, 2 pi]``) are an evaluation setting:
``metagrad eval RUN --set task.amplitude=[5,10] --set task.phase=[3.14159,6.28319]``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["PRESETS", "sine000", "poly000", "oracle", "snail", "OOD_AMPLITUDE", "OOD_PHASE"]

OOD_AMPLITUDE = [5.0, 10.0]
OOD_PHASE = [math.pi, 2 * math.pi]


def sine000(name: str = "sine-ood", k_shot: int = 5) -> dict[str, Any]:
    """000 appendix G.1's MAML on sine, meta-trained in distribution (a ``Config`` dict)."""
    return {"name": name,
            "task": {"name": "sine", "k_shot": k_shot, "k_query": 10, "amplitude": [0.1, 5.0], "phase": [0.0, math.pi]},
            "model": {"name": "mlp", "hidden": [100, 100], "activation": "relu", "bias_transform": 10},
            "inner": {"learner": "sgd", "lr": 0.001, "steps": 5, "mode": "second_order"},
            "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 70000},
            "eval": {"tasks": 1200}, "threads": 1, "log_every": 500, "checkpoint_every": 2500}


def poly000(hidden: Sequence[int] = (100, 100, 100, 100, 100), name: str = "polynomial-depth") -> dict[str, Any]:
    """000 section 7.2's MAML on degree-3 polynomials with hidden layers ``hidden`` (a ``Config`` dict)."""
    return {"name": name,
            "task": {"name": "polynomial", "k_shot": 20, "k_query": 20, "degree": 3, "coef_range": [-1.0, 1.0],
                     "x_range": [-3.0, 3.0]},
            "model": {"name": "mlp", "hidden": list(hidden), "activation": "relu", "bias_transform": 10},
            "inner": {"learner": "sgd", "lr": 0.001, "steps": 1, "mode": "second_order"},
            "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 70000},
            "eval": {"tasks": 1200}, "threads": 1, "log_every": 500, "checkpoint_every": 2500}


def oracle(base: dict[str, Any], name: str) -> dict[str, Any]:
    """000's task-conditioned model in ``base``'s setting: the same hidden layers without the bias
    transformation (it reads the task description instead), trained supervised by ``fit`` with the
    same optimiser and iterations; fine-tuned at test time with ``base``'s inner rate (``inner.steps``
    0: tested as trained; 000 Fig. 2 passes more with ``eval.steps``)."""
    return {**base, "name": name, "algorithm": "oracle", "model": {**base["model"], "bias_transform": 0},
            "inner": {"learner": "sgd", "lr": base["inner"]["lr"], "steps": 0}}


def snail(base: dict[str, Any], name: str) -> dict[str, Any]:
    """000 appendix G's SNAIL in ``base``'s task setting: 2 x (dilations 1, 2, 4, 8 with 16 filters, attention
    with keys and values of 8), a 1x1 convolution; Adam 1e-3 (default hyperparameters), 70,000 iterations."""
    return {**base, "name": name, "algorithm": "blackbox",
            "model": {"name": "snail", "blocks": 2, "dilations": [1, 2, 4, 8], "filters": 16, "key_size": 8,
                      "value_size": 8},
            "inner": {"learner": "sgd", "steps": 0}}


PRESETS: dict[str, dict[str, Any]] = {
    # 000: meta-trained in distribution; test out of distribution with `metagrad eval --set task.*` (module doc).
    "sine-ood": sine000("sine-ood"),
    "sine-oracle": oracle(sine000(), "sine-oracle"),
    "sine-snail": snail(sine000(), "sine-snail"),
    "polynomial-oracle": oracle(poly000(), "polynomial-oracle"),
    "polynomial-snail": snail(poly000(), "polynomial-snail"),
    # SNAIL on Omniglot 5-way 1-shot on top of 000's conv4 embedding (4 x 3x3 conv, 64 filters, stride 2, batch
    # norm, ReLU; trained jointly). Smaller than Mishra et al.'s net (attention 64/32, TC 128, attention
    # 256/128, TC 128, attention 512/256: 3.2M parameters and several seconds per meta-batch on one CPU thread):
    # 2 x (TC of dilations 1, 2, 4 with 64 filters, attention 64/32) for sequences of 5 + 1 images, so that
    # it trains on CPUs; Adam 1e-3, meta-batch 32, 60,000 iterations.
    "omniglot-snail": {"name": "omniglot-snail", "algorithm": "blackbox",
                       "task": {"name": "omniglot", "n_way": 5, "k_shot": 1, "k_query": 1},
                       "model": {"name": "snail", "blocks": 2, "dilations": [1, 2, 4], "filters": 64,
                                 "key_size": 64, "value_size": 32},
                       "inner": {"learner": "sgd", "steps": 0},
                       "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 32, "iterations": 60000},
                       "eval": {"tasks": 600, "batch": 100, "every": 2000, "val_tasks": 200},
                       "log_every": 100, "checkpoint_every": 1000},
}
