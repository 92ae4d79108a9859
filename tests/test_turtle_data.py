"""The thesis's own sine tasks (``turtle_data``) and training on them (``--data thesis``)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from metagrad.experiments.reproduce import turtle_table6
from metagrad.experiments.reproduce.turtle_cells import Protocol, cached_cells, run_baseline, run_cell
from metagrad.experiments.reproduce.turtle_common import fixed_test_tasks, spec
from metagrad.experiments.reproduce.turtle_train import build_meta, train_meta
from metagrad.experiments.reproduce.turtle_data import SPLITS, check_data, thesis_tasks


def _loader_loop(k: int, k_test: int, seed: int = 1337) -> tuple[np.ndarray, np.ndarray]:
    """The thesis's ``SineLoader._load_data``, call for call: every task's (x, y), train, val, test."""
    np.random.seed(seed)
    xs, ys = [], []
    for _ in range(sum(SPLITS)):
        amplitude, phase = np.random.uniform(0.1, 5.0), np.random.uniform(0, np.pi)
        x = np.random.uniform(-5.0, 5.0, k + k_test).reshape(-1, 1).astype("float32")
        xs.append(x)
        ys.append((amplitude * np.sin(x + phase)).reshape(-1, 1).astype("float32"))
    return np.stack(xs), np.stack(ys)


def test_thesis_tasks_are_the_loaders_draws() -> None:
    s = thesis_tasks(5)
    assert (s.train.n_tasks, s.val.n_tasks, s.test.n_tasks) == SPLITS
    assert s.train.support_x.shape == (70_000, 5, 1) and s.test.query_x.shape == (2_000, 50, 1)
    x, y = _loader_loop(5, 50)
    for got, (a, b) in ((s.train, (0, 70_000)), (s.val, (70_000, 71_000)), (s.test, (71_000, 73_000))):
        assert np.array_equal(torch.cat([got.support_x, got.query_x], 1).numpy(), x[a:b])    # bit for bit
        assert np.array_equal(torch.cat([got.support_y, got.query_y], 1).numpy(), y[a:b])
    # task_params (A, 1, -p) in our A sin(w x - p) convention give back the targets
    a, w, p = s.test.task_params.double().unbind(-1)
    pred = a[:, None, None] * torch.sin(w[:, None, None] * s.test.query_x.double() - p[:, None, None])
    assert torch.allclose(pred, s.test.query_y.double(), atol=1e-5)
    assert thesis_tasks(5) is s          # drawn once per support size


def test_thesis_data_sizes_and_names_are_checked() -> None:
    with pytest.raises(ValueError, match="data must be one of metagrad, thesis, got 'thesys'"):
        check_data("x", "thesys", 1, 1, 1)
    with pytest.raises(ValueError, match="hold 70000 tasks, tasks=70001 asks for more"):
        Protocol(tasks=70_001, data="thesis")
    with pytest.raises(ValueError, match="test_tasks=2001"):
        fixed_test_tasks(5, 2_001, "thesis")
    Protocol(tasks=100_000)             # our own draws have no such limit
    with pytest.raises(SystemExit):
        turtle_table6.main(["--out", "unused", "--data", "thesys"])


def test_thesis_data_trains_every_seed_on_the_thesis_stream() -> None:
    """``train_meta(data="thesis")`` is MAML stepped by hand on the thesis's tasks in order, tested on its test tasks."""
    sp, tasks, test = spec("so-MAML", 1), 6, thesis_tasks(5).test[:7]
    got = train_meta(sp, 5, 1, [0, 3], tasks, val_every=None, test=test, data="thesis")
    for seed, rec in zip((0, 3), got):
        algo = build_meta(sp, 1, seed)
        opt = torch.optim.Adam(algo.parameters(), lr=1e-3)
        for i in range(tasks):
            opt.zero_grad()
            algo.meta_loss(thesis_tasks(5).train[i:i + 1]).backward()
            opt.step()
        want = algo.adaptation_curve(test, 1)[:, -1].detach()
        assert torch.allclose(rec.test_mse, want, rtol=1e-4, atol=1e-6)


def test_thesis_runs_are_kept_apart(tmp_path: Path) -> None:
    mine = Protocol(tasks=4, test_tasks=6, val_every=2, val_tasks=3)
    thesis = mine.replace(data="thesis")
    a = run_cell(tmp_path, "so-MAML", 1, 5, 0, thesis)
    assert json.loads((tmp_path / "cells" / "so-MAML_T1_k5_s0.json").read_text())["protocol"]["data"] == "thesis"
    assert cached_cells(tmp_path, "so-MAML", 1, 5, [0], mine) == []       # not one of our own draws' runs
    assert cached_cells(tmp_path, "so-MAML", 1, 5, [0], thesis) == [a]
    assert run_cell(tmp_path, "so-MAML", 1, 5, 0, mine)["mean"] != a["mean"]
    assert "data" not in json.loads((tmp_path / "cells" / "so-MAML_T1_k5_s0.json").read_text())["protocol"]
    # the baselines test on the thesis's tasks too, and Finetuning pre-trains on its meta-training tasks
    assert torch.equal(fixed_test_tasks(5, 6, "thesis").query_y, thesis_tasks(5).test.query_y[:6])
    ft = run_baseline("Finetuning", 5, 0, 3, test=thesis_tasks(5).test[:6], data="thesis")
    assert ft.iterations == 3 and math.isfinite(float(ft.test_mse.mean()))
