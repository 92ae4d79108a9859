"""004 sine experiments as sweep specs (``specs/turtle.py``): the settings as configs, the quick runs."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from metagrad.cli import main as cli_main
from metagrad.errors import ConfigError
from metagrad.experiments import specs
from metagrad.experiments.building import build
from metagrad.experiments.config import Config
from metagrad.experiments.presets import get_preset
from metagrad.experiments.specs import turtle
from metagrad.experiments.specs.turtle import cell, config

ROOT = Path(__file__).resolve().parents[1]


def test_registered_and_every_cell_is_a_valid_config() -> None:
    assert specs.get("turtle-table6") is turtle.TABLE6 and specs.get("turtle-order") is turtle.ORDER
    cells = turtle.TABLE6.cells({"data": "metagrad"})
    assert len(cells) == 44 == len(turtle.TABLE6.rows({})) and {r.cell for r in turtle.TABLE6.rows({})} == {c.id for c in cells}
    for c in cells + turtle.ORDER.cells({}):
        Config.from_dict(c.config)
    assert cell("TrainFromScratch", None, 10).id == "TrainFromScratch_T-_k10"
    assert cell("TrainFromScratch", None, 10).trainer == "TrainFromScratch" and cell("LSTM", 5, 10).trainer == "meta"


def test_configs_follow_appendix_a1() -> None:
    maml = Config.from_dict(config("so-MAML", 5, 10))
    assert (maml.task["k_query"], maml.eval["tasks"], maml.eval["val_tasks"], maml.outer["lr"]) == (50, 2000, 1000, 1e-3)
    assert maml.outer["meta_batch"] == 1 and maml.outer["iterations"] == 70_000 and maml.eval["every"] == 2500
    assert maml.inner["grad_clip"] == 10.0 and maml.outer["clip_value"] == 10.0 and maml.outer["clip_scope"] == "all"
    assert config("so-MAML", 1, 5)["inner"]["grad_clip"] is None and maml.model["bias_init"] == "zero"
    t5, t10 = config("so-TURTLE", 5, 5), config("so-TURTLE", 10, 5)
    assert t5["inner"]["inputs"] == ["grad", "ema_grad", "time"] and t5["inner"]["beta"] == 0.9
    assert (t5["outer"]["meta_batch"], t5["outer"]["iterations"], t5["eval"]["every"]) == (2, 35_000, 1250)
    assert (t10["outer"]["meta_batch"], t10["outer"]["iterations"], t10["eval"]["every"]) == (4, 17_500, 625)
    assert t5["outer"]["clip_scope"] == "init" and t10["outer"]["clip_scope"] == "init_per_task"
    assert config("so-TURTLE", 1, 5)["inner"]["inputs"] == ["grad"] and config("fo-TURTLE-raw", 5, 5)["inner"]["mode"] == "first_order"
    lstm = config("LSTM", 5, 20)
    assert lstm["inner"]["grad_scale"] == 1 / 20 and lstm["outer"]["clip_norm"] == 0.25
    assert [config("LSTM", t, 10)["outer"]["nonfinite"] for t in (1, 5, 10)] == ["stop", "stop", "skip"]
    assert {config(m, t, 10)["outer"]["nonfinite"] for m in ("so-MAML", "so-TURTLE") for t in (1, 5, 10)} == {"stop"}
    with pytest.raises(ConfigError, match="unknown model 'iMAML'"):
        config("iMAML", 1, 5)
    # the rule and base-learner these configs build
    algo = build(Config.from_dict(config("LSTM", 1, 15)))[0]
    assert algo.learner.grad_scale == pytest.approx(1 / 15) and not algo.learner.second_order
    assert all(float(v.detach().abs().sum()) == 0 for n, v in algo.named_parameters() if n.endswith(".bias") and n.startswith("model."))


def test_presets_are_the_table_settings() -> None:
    assert get_preset("004-so-turtle-t10-k15") == Config.from_dict(config("so-TURTLE", 10, 15))
    assert get_preset("004-lstm-t10-k15").outer["nonfinite"] == "skip"


def test_table6_claims_and_the_row_columns() -> None:
    def r(model: str, t, k: int, mean: float, verdict: str = "within") -> dict:
        return {"model": model, "setting": {"k_shot": k, "steps": t}, "mean": mean, "vs_paper": verdict}
    c = turtle._claims6([r("so-TURTLE", 5, 5, 0.1), r("so-MAML", 5, 5, 0.3), r("Finetuning", None, 5, 3.0, "worse")])
    assert c == {"turtle_beats_maml_5step_5shot": True, "all_within_or_better_than_paper": False,
                 "baselines_worse_than_all_meta_learners_5shot": True}
    runs = [{"evals": {"test": {"mean": m, "ci95_tasks": ci, "diverged": False}}, "thesis_restore_mean": m + 1}
            for m, ci in ((0.40, 0.02), (0.45, 0.03), (0.50, 0.04), (0.42, 0.02), (8e4, 9e4))]
    extra = turtle._extra6(turtle.Row("LSTM", {}, "x"), runs)
    assert extra["test_set_ci95"] == pytest.approx(0.0275)       # the outlier's interval is left out
    assert "thesis_restore" in extra and "thesis_restore" not in turtle._extra6(turtle.Row("LSTM", {}, "x"), runs[:1] + [
        {"evals": runs[1]["evals"]}])


def test_table6_quick_runs_through_the_sweep(tmp_path: Path) -> None:
    out = tmp_path / "t6"
    assert cli_main(["reproduce", "turtle-table6", "--quick", "--out", str(out), "--only", "model=so-MAML,so-TURTLE",
                     "--only", "steps=1,5", "--only", "k_shot=5"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["experiment"] == "turtle-table6" and data["partial"]   # the whole table: other cells not run
    assert [(r["model"], r["setting"]["steps"]) for r in data["rows"]] == [("so-MAML", 1), ("so-MAML", 5),
                                                                          ("so-TURTLE", 1), ("so-TURTLE", 5)]
    assert all(math.isfinite(r["mean"]) and r["vs_paper"] in ("better", "within", "worse") for r in data["rows"])
    run = json.loads((out / "cells" / "so-TURTLE_T5_k5_s0.json").read_text())
    assert run["schema"] == 2 and run["config"]["outer"]["iterations"] == 10 and run["evals"]["test"]["n_tasks"] == 20


def test_order_quick_runs_through_the_sweep(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert cli_main(["reproduce", "turtle-order", "--quick", "--out", str(out), "--only", "steps=1"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in data["rows"]] == list(turtle.ORDER_MODELS)
    assert "T1" in specs.get("turtle-order").claims(data["rows"])   # a partial table states no claims itself
    assert (out / "order.png").stat().st_size > 10_000   # 004 Fig. 11 redrawn


def test_data_option_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli_main(["reproduce", "turtle-table6", "--out", str(tmp_path), "--data", "thesys"])
    assert "invalid choice: 'thesys'" in capsys.readouterr().err
    monkeypatch.setattr(turtle, "THESIS_FILE", tmp_path / "absent.py")
    monkeypatch.delitem(turtle.sys.modules, "metagrad_thesis_data", raising=False)
    monkeypatch.delitem(turtle.registry.TASKS, "thesis_sine", raising=False)
    assert cli_main(["reproduce", "turtle-table6", "--out", str(tmp_path), "--data", "thesis", "--report"]) == 2
    assert "absent.py, which is missing" in capsys.readouterr().err


def test_convert_records_turns_an_old_summary_into_schema_2() -> None:
    path = ROOT / "reproductions" / "convert_records.py"
    mod_spec = importlib.util.spec_from_file_location("convert_records", path)
    conv = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(conv)
    old = {"model": "so-TURTLE", "steps": 10, "k_shot": 15, "seed": 3, "mean": 0.5, "median": 0.4, "ci95_tasks": 0.0196,
           "diverged": False, "seconds": 9.0, "ms_per_iteration": 3.0, "iterations": 17500, "population": 5,
           "best_val": 0.3, "val_curve": [[2500, 1.0], [5000, 0.3]], "nonfinite_at": 4001, "skipped": 0,
           "protocol": {"tasks": 70000, "test_tasks": 2000, "val_every": 2500, "val_tasks": 1000},
           "thesis_restore_mean": 0.6}
    new = conv.convert(old)
    test = new["evals"]["test"]
    assert (new["cell"], new["seed"], test["n_tasks"]) == ("so-TURTLE_T10_k15", 3, 2000)
    assert test["std_tasks"] == pytest.approx(0.0196 * math.sqrt(2000) / 1.96)
    assert new["train"]["val_curve"] == [[625, 1.0], [1250, 0.3]] and new["train"]["nonfinite_at"] == 1001
    assert new["thesis_restore_mean"] == 0.6 and new["converted_from"]["protocol"] == old["protocol"]
    from metagrad.experiments import sweep
    c = cell("so-TURTLE", 10, 15)
    assert new["config"] == sweep._identity(Config.from_dict(c.config))


def test_mlp_zero_biases_draw_the_same_weights() -> None:
    cfg = Config.from_dict(config("so-MAML", 1, 5))
    zero = build(cfg)[0]
    default = build(cfg.override(["model.bias_init=default"]))[0]
    for (n, a), b in zip(zero.named_parameters(), default.parameters()):
        assert torch.equal(a, b) if n.endswith("weight") else not a.any()
    with pytest.raises(Exception, match="bias_init must be 'default' or 'zero'"):
        build(cfg.override(["model.bias_init=ones"]))
