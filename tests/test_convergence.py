"""``metagrad reproduce maml-convergence`` (002): the ||grad F|| curve hook, the spec, its claims and plot."""
from __future__ import annotations

import json

import pytest

from metagrad.errors import ConfigError, InputError
from metagrad.experiments import specs, sweep
from metagrad.experiments.config import Config
from metagrad.experiments.specs.convergence import config, floor
from metagrad.experiments.train_runs import curve_measure, train_runs


def test_run_records_grad_norm_F_curve_and_levels():
    cfg = Config.from_dict(config("first_order", 5, 0.1, 1.0, iterations=20, every=5)).override(["eval.tasks=5"])
    (summary,) = train_runs(cfg, [0], {"test": []}, log=lambda m: None)
    curve = summary["train"]["val_curve"]
    assert [i for i, _ in curve] == [5, 10, 15, 20]
    assert curve[-1][1] < curve[0][1]                     # ||grad F|| falls from w = 0
    m = summary["measures"]
    assert m["grad_norm_F_final"] == curve[-1][1] and m["grad_norm_F_tail"] == curve[-1][1]
    assert summary["train"]["ms_per_iteration"] > 0
    # HF with its D_h trains seed by seed; two seeds as a Population are refused for it
    with pytest.raises(ConfigError, match="one seed at a time"):
        train_runs(Config.from_dict(config("hessian_free", 5, 0.1, 1.0, iterations=2)), [0, 1], {})


def test_measure_refusals():
    with pytest.raises(ConfigError, match="eval.measure must be null or one of grad_norm_F, grad_norm_F_sampled, got 'nope'"):
        Config.from_dict({"eval": {"measure": "nope"}})
    from metagrad.experiments.building import build
    algo, task = build(Config.from_dict({}))
    with pytest.raises(InputError, match="needs task.name=quadratic"):
        curve_measure("grad_norm_F", task)(algo)


def test_sweep_subset_writes_table_claims_and_plot(tmp_path):
    spec = specs.get("maml-convergence")
    only = ["part=convergence", "alpha=0.1", "spread=1", "batch=5,25"]
    rows = sweep.run(spec, tmp_path, quick=True, only=only, overrides=["outer.iterations=10", "eval.tasks=2"],
                     log=lambda m: None)
    assert {r["model"] for r in rows} == {"MAML", "FO-MAML", "HF-MAML"} and len(rows) == 6
    hf = {r["setting"]["B=D"]: r["mean"] for r in rows if r["model"] == "HF-MAML"}
    so = {r["setting"]["B=D"]: r["mean"] for r in rows if r["model"] == "MAML"}
    for b in hf:   # on a quadratic the finite difference is exact: HF-MAML is MAML on the same D_h
        assert hf[b] == pytest.approx(so[b], rel=1e-3)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["partial"] is True and res["claims"] == {}   # the whole table is written: the other cells missing
    assert spec.claims(rows) == {}   # and the claims need the largest batch
    assert (tmp_path / "convergence.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_reproduction_cli(tmp_path):
    from metagrad.cli import main
    assert main(["reproduce", "maml-convergence", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert not res["partial"] and res["claims"]["c_dims"] == [10, 100]
    assert res["claims"]["b_fo_floor_closed_form"] == pytest.approx(floor(0.1, 1.0), abs=1e-4)
    assert (tmp_path / "convergence.png").exists()


def test_committed_record_is_the_report_of_its_runs(tmp_path):
    """reproductions/maml-convergence: the committed table.md and results.json are what --report builds
    from the kept run summaries (no training), and its claims hold as the README states."""
    import shutil
    from pathlib import Path
    from metagrad.cli import main
    kept = Path(__file__).resolve().parents[1] / "reproductions" / "maml-convergence"
    shutil.copytree(kept / "cells", tmp_path / "cells", ignore=shutil.ignore_patterns(".*"))
    assert main(["reproduce", "maml-convergence", "--out", str(tmp_path), "--report"]) == 0
    assert (tmp_path / "table.md").read_bytes() == (kept / "table.md").read_bytes()
    assert (tmp_path / "results.json").read_bytes() == (kept / "results.json").read_bytes()
    claims = json.loads((kept / "results.json").read_text())["claims"]
    assert claims["a_maml_hf_fall_with_batch_and_go_below_fo_floor"] and claims["b_fo_stalls_at_floor"]
    assert claims["b_maml_below_fo_everywhere"]
