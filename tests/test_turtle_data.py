"""The thesis's own sine tasks (``reproductions/turtle-table6-thesis-data/thesis_data.py``) and training on them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metagrad.errors import ConfigError
from metagrad.experiments.building import build
from metagrad.experiments.config import Config
from metagrad.experiments.specs.turtle import config, load_thesis_data
from metagrad.experiments.train_runs import train_runs

thesis = load_thesis_data()
SPLITS, thesis_tasks = thesis.SPLITS, thesis.thesis_tasks


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


def test_thesis_task_distribution_gives_its_splits_and_stream() -> None:
    cfg = Config.from_dict(config("so-MAML", 1, 5, "thesis"))
    assert cfg.task["name"] == "thesis_sine"
    val, test, train = (build(cfg, split)[1] for split in ("val", "test", "train"))
    assert torch.equal(test.fixed(6, 123).query_y, thesis_tasks(5).test.query_y[:6])    # in order, seed unused
    assert torch.equal(val.fixed(3).support_x, thesis_tasks(5).val.support_x[:3])
    stream = train.stream(2, [0, 1, 2])
    first, second = stream.next().batch, stream.next().batch
    pool = thesis_tasks(5).train
    assert torch.equal(first.support_x, torch.cat([pool.support_x[0:2]] * 3))           # the same for every member
    assert torch.equal(second.query_y[:2], pool.query_y[2:4]) and stream.state_dict() == {"position": 4}
    with pytest.raises(ConfigError, match="test split holds 2000 tasks, 2001 asked for"):
        test.fixed(2001)
    stream.load_state_dict({"position": 69_999})
    with pytest.raises(ConfigError, match="holds 70000 meta-training tasks"):
        stream.next()


def test_training_on_the_thesis_stream_is_maml_stepped_by_hand() -> None:
    """Every seed meta-trains on the thesis's tasks in order and is tested on its test tasks."""
    cfg = Config.from_dict(config("so-MAML", 1, 5, "thesis")).override(
        ["outer.iterations=6", "eval.every=0", "eval.tasks=7"])
    got = train_runs(cfg, [0, 3], {"test": []}, log=lambda m: None)
    test = thesis_tasks(5).test[:7]
    for seed, run in zip((0, 3), got):
        algo = build(cfg.override([f"seed={seed}"]))[0]
        opt = torch.optim.Adam(algo.parameters(), lr=1e-3)
        for i in range(6):
            opt.zero_grad()
            algo.meta_loss(thesis_tasks(5).train[i:i + 1]).backward()
            opt.step()
        want = algo.adaptation_curve(test, 1)[:, -1].detach()
        assert run["evals"]["test"]["mean"] == pytest.approx(float(want.mean()), rel=1e-4)
