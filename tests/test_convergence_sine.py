"""``||grad F||`` with a very large batch (metagrad.stationarity) and ``reproduce maml-convergence-sine``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import metagrad as mg
from metagrad.errors import ConfigError, InputError
from metagrad.experiments import specs, sweep
from metagrad.stationarity import meta_gradient_norm


def test_meta_gradient_norm_is_the_exact_meta_gradient_of_the_sampled_tasks():
    torch.manual_seed(0)
    task = mg.tasks.Sinusoid(k_shot=5, k_query=5)
    fo = mg.MAML(mg.models.MLP([1, 8, 1]).double(), inner_lr=0.1, inner_steps=2, mode="first_order")
    norm, se = meta_gradient_norm(fo, task, n_tasks=12, k=7, seed=4, chunks=3)
    # by hand: the same tasks and examples, MAML second order on a batch of support D_in and query D_o
    g = torch.Generator().manual_seed(4)
    tasks = task.sample(12, g, torch.float64)
    s, q = task.resample(tasks, 7, g, torch.float64), task.resample(tasks, 7, g, torch.float64)
    so = mg.MAML(fo.model, inner_lr=0.1, inner_steps=2, mode="second_order")
    so.meta_loss(mg.TaskBatch(s.support_x, s.support_y, q.support_x, q.support_y)).backward()
    want = torch.cat([p.grad.flatten() for p in fo.model.parameters()]).norm()
    assert norm == pytest.approx(float(want), rel=1e-10)
    assert fo.mode == "first_order" and se > 0
    # its standard error falls with the number of tasks (about 1/sqrt(n))
    _, se_big = meta_gradient_norm(fo, task, n_tasks=192, k=7, seed=4, chunks=3)
    assert se_big < se / 2
    with pytest.raises(InputError, match="chunks must be at most n_tasks=4, got 8"):
        meta_gradient_norm(fo, task, n_tasks=4)
    with pytest.raises(ConfigError, match="no resample"):
        meta_gradient_norm(fo, object())


def test_sweep_subset_writes_table_and_both_panels(tmp_path):
    spec = specs.get("maml-convergence-sine")
    rows = sweep.run(spec, tmp_path, quick=True, only=["batch=10"], overrides=["outer.iterations=4", "eval.every=2"],
                     log=lambda m: None)
    assert {r["model"] for r in rows} == {"MAML", "FO-MAML", "HF-MAML"} and all(r["mean"] > 0 for r in rows)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["claims"] == {}   # they need both batch sizes
    assert (tmp_path / "convergence_sine.png").stat().st_size > 10_000


def test_committed_record_is_the_report_of_its_runs(tmp_path):
    from metagrad.cli import main
    kept = Path(__file__).resolve().parents[1] / "reproductions" / "maml-convergence-sine"
    shutil.copytree(kept / "cells", tmp_path / "cells", ignore=shutil.ignore_patterns(".*"))
    assert main(["reproduce", "maml-convergence-sine", "--out", str(tmp_path), "--report"]) == 0
    assert (tmp_path / "table.md").read_bytes() == (kept / "table.md").read_bytes()
    assert (tmp_path / "results.json").read_bytes() == (kept / "results.json").read_bytes()
    res = json.loads((kept / "results.json").read_text())
    assert not res["partial"]
    # as the README states: at this budget neither (a) nor (b) is resolved beyond the intervals
    assert res["claims"]["maml_hf_fall_with_batch_beyond_intervals"] == {"MAML": False, "HF-MAML": False}
    assert res["claims"]["fo_above_maml_at_largest_batch_beyond_intervals"] is False
