"""The 001 reproductions (mtnet-table1, mtnet-table2, mtnet-polynomial) as sweep specs, end to end."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from metagrad.cli import main
from metagrad.experiments import specs, sweep
from metagrad.experiments.building import build
from metagrad.experiments.config import Config
from metagrad.experiments.presets import PRESETS
from metagrad.experiments.presets_geometry import KINDS, poly001, sine001

TINY = ["--set", "outer.iterations=20", "--set", "eval.tasks=20"]


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_registered_and_listed(capsys):
    for name in ("mtnet-table1", "mtnet-table2", "mtnet-polynomial"):
        assert specs.get(name).name == name
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "mtnet-table2" in listed and "mtnet-polynomial" in listed and "sine001-mtnet" in listed


def test_presets_are_the_spec_settings():
    """One definition: each 001 preset is its spec cell's config (only the name differs)."""
    cells = {c.id: c.config for c in specs.get("mtnet-table1").cells({})}
    for kind in KINDS:
        preset = PRESETS[f"sine001-{kind.lower().replace('-', '')}"]
        assert {**preset, "name": ""} == {**cells[kind], "name": ""} == {**sine001(kind), "name": ""}
        Config.from_dict(preset)
    poly = {c.id: c.config for c in specs.get("mtnet-polynomial").cells({})}
    assert {**PRESETS["poly001-mtnet-order3"], "name": ""} == {**poly["order3"], "name": ""} == {**poly001(3), "name": ""}


def test_meta_sgd_rates_are_drawn_from_the_run_seed():
    cfg = Config.from_dict(sine001("Meta-SGD"))
    rates = [build(cfg.override([f"seed={s}"]))[0].meta_params() for s in (0, 0, 1)]
    k = next(iter(rates[0]))
    assert torch.equal(rates[0][k], rates[1][k]) and not torch.equal(rates[0][k], rates[2][k])
    assert 0.005 <= float(rates[0][k].detach().min()) and float(rates[0][k].detach().max()) <= 0.1


def test_table1_through_the_sweep_writes_table_and_results(tmp_path, capsys):
    assert main(["reproduce", "mtnet-table1", "--quick", "--out", str(tmp_path), *TINY]) == 0
    assert "| MT-net | k_shot=20, steps=1 |" in capsys.readouterr().out
    data = _results(tmp_path)
    assert data["experiment"] == "mtnet-table1" and not data["partial"] and len(data["rows"]) == 15
    for kind in KINDS:   # a row per K for every model
        assert sorted(r["setting"]["k_shot"] for r in data["rows"] if r["model"] == kind) == [5, 10, 20]
    assert sorted(r["setting"]["k_shot"] for r in data["rows"] if r["model"] == "MT-net (threshold)") == [5, 10, 20]
    maml10 = next(r for r in data["rows"] if r["model"] == "MAML" and r["setting"]["k_shot"] == 10)
    assert maml10["paper"] == 0.71 and maml10["metric"] == "mse" and maml10["mean"] > 0 and "vs_paper" in maml10
    assert set(data["claims"]) == {"mtnet_beats_maml_every_k", "all_within_or_better_than_paper"}
    summary = json.loads((tmp_path / "cells" / "MT-net_s0.json").read_text())
    assert summary["config"]["inner"]["learner"] == "mtnet" and summary["train"]["iterations"] == 20
    assert "| MT-net | k_shot=20, steps=1 |" in (tmp_path / "table.md").read_text()


def test_table2_diverged_run_is_a_row_not_a_crash(tmp_path):
    """A run whose meta-loss becomes non-finite stops (outer.nonfinite="stop") and its row says diverged."""
    t2 = specs.get("mtnet-table2")
    spec = dataclasses.replace(t2, cells=lambda o: [
        sweep.Cell("MAML-lr10", sine001("MAML", 1e30), labels={"model": "MAML", "inner_lr": "10"}),
        sweep.Cell("MAML-lr0.01", sine001("MAML", 0.01), labels={"model": "MAML", "inner_lr": "0.01"})])
    rows = sweep.run(spec, tmp_path, quick=True, overrides=["outer.iterations=20", "eval.tasks=20"], log=lambda m: None)
    big, ok = (next(r for r in rows if r["setting"]["inner_lr"] == lr) for lr in (10.0, 0.01))
    assert big["diverged"] and big["mean"] is None and big["vs_paper"] == "diverged"
    assert not ok["diverged"] and math.isfinite(ok["mean"])
    summary = json.loads((tmp_path / "cells" / "MAML-lr10_s0.json").read_text())
    assert summary["train"]["nonfinite_at"] is not None and summary["train"]["iterations"] < 20
    assert "| MAML | inner_lr=10.0, k_shot=10, steps=1 | diverged |" in (tmp_path / "table.md").read_text()
    assert _results(tmp_path)["claims"]["maml_degrades_at_extremes"] is None   # 1e-4 not run


def test_polynomial_tabulates_the_mask_fraction_per_order(tmp_path):
    rows = sweep.run(specs.get("mtnet-polynomial"), tmp_path, quick=True, only=["order=0,3"],
                     overrides=["outer.iterations=20", "eval.tasks=20"], log=lambda m: None)
    fr = [r for r in rows if r["metric"] == "update_fraction"]
    assert [r["setting"]["order"] for r in fr] == [0, 3] and all(0 < r["mean"] < 1 for r in fr)
    assert {r["metric"] for r in rows} == {"update_fraction", "threshold_fraction", "mse"} and len(rows) == 6
    summary = json.loads((tmp_path / "cells" / "order3_s0.json").read_text())
    assert set(summary["measures"]) == {"update_fraction", "threshold_fraction"}
    assert summary["config"]["task"]["degree"] == 3
    assert specs.get("mtnet-polynomial").claims(rows)["fraction_by_order"]["3"] == fr[1]["mean"]
    assert (tmp_path / "fig4.png").stat().st_size > 10_000   # 001 Fig. 4 redrawn, from the summaries


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mtnet-table1", "mtnet-table2", "mtnet-polynomial"])
def test_quick_reproductions(tmp_path, name):
    assert main(["reproduce", name, "--quick", "--out", str(tmp_path)]) == 0
    data = _results(tmp_path)
    assert not data["partial"] and data["claims"]
    assert all(r["diverged"] or math.isfinite(r["mean"]) for r in data["rows"])
    if name == "mtnet-polynomial":
        assert set(data["claims"]["fraction_by_order"]) == {"0", "1", "2", "3"}
