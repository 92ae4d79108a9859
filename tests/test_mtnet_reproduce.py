"""The 001 reproductions (mtnet-table1, mtnet-table2, mtnet-polynomial) run end to end."""
from __future__ import annotations

import json
import math

import pytest

from metagrad.experiments.reproduce import EXPERIMENTS, load
from metagrad.experiments.reproduce.mtnet_common import build, train, sine_task


def test_registered():
    for name in ("mtnet-table1", "mtnet-table2", "mtnet-polynomial"):
        assert name in EXPERIMENTS and load(name).NAME == name


def test_table1_tiny_run_writes_schema(tmp_path):
    rows = load("mtnet-table1").run(tmp_path, iterations=5, test_tasks=6)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["experiment"] == "mtnet-table1" and len(data["rows"]) == len(rows) == 15
    maml10 = next(r for r in rows if r["model"] == "MAML" and r["setting"]["k_shot"] == 10)
    assert maml10["paper"] == 0.71 and maml10["metric"] == "mse" and maml10["mean"] > 0
    assert "mtnet_beats_maml_every_k" in data["claims"]
    assert "| MT-net | k_shot=20, steps=1 |" in (tmp_path / "table.md").read_text()


def test_diverged_run_is_reported_not_raised(tmp_path):
    algo = build("MAML", inner_lr=1e30, seed=0)
    rec = train(algo, sine_task(10), 30, seed=0, meta_batch=4)
    assert rec.diverged and rec.done < 30
    rows = load("mtnet-table2").run(tmp_path, iterations=30, test_tasks=5, rates=(1e30, 0.01))
    big = next(r for r in rows if r["model"] == "MAML" and r["setting"]["inner_lr"] == 1e30)
    assert big["diverged"] and big["mean"] is None
    assert "diverged" in (tmp_path / "table.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mtnet-table1", "mtnet-table2", "mtnet-polynomial"])
def test_quick_reproductions(tmp_path, name):
    rows = load(name).run(tmp_path, quick=True)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["rows"] == rows and data["claims"]
    assert all(r["diverged"] or math.isfinite(r["mean"]) for r in rows)
    if name == "mtnet-polynomial":
        assert (tmp_path / "fraction.png").stat().st_size > 1000
        assert set(data["claims"]["fraction_by_order"]) == {"0", "1", "2", "3"}
