"""A table row from its runs (metagrad/experiments/rows.py): the pooled-tasks statistic is the one
over every run's test tasks together, computed from each run's mean, spread and count alone."""
from __future__ import annotations

import math

import pytest
import torch

from metagrad.experiments.rows import table_row_of
from metagrad.experiments.sweep import Row


def _summary(values: torch.Tensor, seed: int) -> dict:
    return {"seed": seed, "evals": {"test": {"metric": "accuracy", "mean": float(values.mean()),
                                             "std_tasks": float(values.std()), "n_tasks": values.numel(),
                                             "ci95_tasks": 1.96 * float(values.std()) / math.sqrt(values.numel())}}}


@pytest.mark.parametrize("sizes", [(600,), (600, 600), (200, 350, 90)])
def test_pooled_tasks_equal_the_statistic_of_all_tasks_together(sizes):
    g = torch.Generator().manual_seed(len(sizes))
    runs = [torch.rand(n, generator=g, dtype=torch.float64) * (0.5 + i) for i, n in enumerate(sizes)]
    fixed = [_summary(v, i) for i, v in enumerate(runs)]
    row = table_row_of(Row("MAML", {"n_way": 5}, "c", "test", 0.9, 0.01), fixed, fixed, "tasks")
    every = torch.cat(runs)
    assert row["mean"] == pytest.approx(float(every.mean()), rel=1e-12)
    assert row["ci95"] == pytest.approx(1.96 * float(every.std()) / math.sqrt(every.numel()), rel=1e-9)
    assert row["runs"] == f"{len(sizes)} run(s), {sum(sizes)} tasks"
    assert row["vs_paper"] in ("better", "within", "worse") and row["paper"] == 0.9


def test_a_diverged_run_makes_the_pooled_row_diverged():
    ok = _summary(torch.rand(10, dtype=torch.float64), 0)
    bad = {"seed": 1, "evals": {"test": {**ok["evals"]["test"], "diverged": True}}}
    row = table_row_of(Row("MAML", {}, "c", "test", 0.9, 0.01), [ok, bad], [ok, bad], "tasks")
    assert row["mean"] is None and row["vs_paper"] == "diverged" and row["diverged"]   # JSON has no NaN


def test_an_unknown_statistic_is_named():
    ok = _summary(torch.rand(10, dtype=torch.float64), 0)
    with pytest.raises(Exception, match="statistic must be 'runs' or 'tasks', got 'median'"):
        table_row_of(Row("MAML", {}, "c"), [ok], [ok], "median")
