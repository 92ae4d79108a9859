"""000 (Finn & Levine 2018) section 7: the sine-ood preset, the oracle, the SNAIL learner, the specs."""
from __future__ import annotations

import math

import pytest

from metagrad.experiments import runner
from metagrad.experiments.presets import get_preset


def test_sine_ood_meta_trains_in_distribution_and_evaluates_out_of_it(tmp_path):
    cfg = get_preset("sine-ood")
    assert cfg.task["amplitude"] == [0.1, 5.0] and cfg.task["phase"] == [0.0, math.pi]
    assert cfg.model["hidden"] == [100, 100] and cfg.model["bias_transform"] == 10
    assert (cfg.inner["steps"], cfg.inner["lr"], cfg.task["k_shot"]) == (5, 0.001, 5)
    run = runner.train("sine-ood", tmp_path / "r", overrides=["outer.iterations=2", "eval.tasks=20"], progress=False)
    ood = ["task.amplitude=[5,10]", "task.phase=[3.14159,6.28319]"]
    res = runner.evaluate_run(run, overrides=ood, progress=False)
    assert res["overrides"] == ood and math.isfinite(res["mean"])
    assert runner.resolve_config(run / "config.json").task["amplitude"] == [0.1, 5.0]   # training unchanged
