"""004 sine reproductions (``turtle-table6``, ``turtle-order``): protocol pieces and the quick runs."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from metagrad.experiments.reproduce import EXPERIMENTS, load
from metagrad.experiments.reproduce import turtle_order, turtle_table6
from metagrad.evaluation import robust_summary
from metagrad.experiments.reproduce.common import format_table, row
from metagrad.experiments.reproduce.turtle_cells import aggregate, cached_cells, run_cell, run_cells, with_settings
from metagrad.experiments.reproduce.turtle_cli import parse_settings
from metagrad.experiments.reproduce.turtle_cells import Protocol
from metagrad.experiments.reproduce.turtle_common import clip_grads, spec
from metagrad.experiments.reproduce.turtle_train import build_meta
from metagrad.population import Population


def test_registered() -> None:
    assert EXPERIMENTS["turtle-table6"] == "turtle_table6" and EXPERIMENTS["turtle-order"] == "turtle_order"
    assert load("turtle-table6").NAME == "turtle-table6"


def test_specs_follow_appendix_a1() -> None:
    maml = spec("so-MAML", 5)
    assert maml.meta_batch == 1 and maml.grad_clip == 10.0 and maml.mode == "second_order"
    assert spec("so-MAML", 1).grad_clip is None
    t5 = spec("so-TURTLE", 5)
    rule = t5.learner()
    assert t5.meta_batch == 2 and rule.inputs == ("grad", "ema_grad", "time") and rule.beta == 0.9
    assert rule.hidden_layers == 5 and rule.width == 20 and rule.learn_lr
    assert spec("so-TURTLE", 10).meta_batch == 4 and spec("fo-TURTLE-raw", 5).mode == "first_order"
    lstm = spec("LSTM", 5, 20)
    assert lstm.clip_norm == 0.25 and not lstm.learner().second_order and lstm.learner().grad_scale == 1 / 20
    assert spec("LSTM", 5, 10).describe() != lstm.describe()     # a k=20 run is not reused for k=10
    # only the LSTM at T = 10 skips non-finite updates; a run under the other policy is not reused
    assert spec("LSTM", 10, 10).nonfinite == "skip" and "nonfinite" in spec("LSTM", 10, 10).describe()
    assert {spec(m, t, 10).nonfinite for m in ("so-MAML", "so-TURTLE", "LSTM") for t in (1, 5)} == {"stop"}
    assert spec("so-TURTLE", 10).nonfinite == "stop"
    with pytest.raises(ValueError, match="pass spec\\('LSTM', steps, k_shot\\), got k_shot=None"):
        spec("LSTM", 5)
    with pytest.raises(ValueError, match="unknown model 'iMAML'"):
        spec("iMAML", 1)


def test_run_cell_trains_validates_caches(tmp_path: Path) -> None:
    proto = Protocol(tasks=6, test_tasks=8, val_every=2, val_tasks=4)
    a = run_cell(tmp_path, "so-TURTLE", 5, 5, 0, proto)
    assert a["iterations"] == 3 and len(a["val_curve"]) == 3 and math.isfinite(a["mean"])
    path = tmp_path / "cells" / "so-TURTLE_T5_k5_s0.json"
    assert json.loads(path.read_text())["mean"] == a["mean"]
    assert run_cell(tmp_path, "so-TURTLE", 5, 5, 0, proto) == a        # served from the cache
    assert json.loads(path.read_text())["spec"] == spec("so-TURTLE", 5).describe()
    assert a["spec"]["clip_value_scope"] == "init"
    other = dict(a, spec=dict(a["spec"], clip_value_scope="all"), mean=-1.0)   # trained under other settings
    path.write_text(json.dumps(other))
    assert run_cell(tmp_path, "so-TURTLE", 5, 5, 0, proto)["mean"] == a["mean"]   # not reused: trained again
    one = run_cell(tmp_path, "so-TURTLE", 1, 5, 0, proto)        # T = 1: no clipping, so its scope changes nothing
    path1 = tmp_path / "cells" / "so-TURTLE_T1_k5_s0.json"
    path1.write_text(json.dumps(dict(one, spec=dict(one["spec"], clip_value_scope="all"), mean=-1.0)))
    assert run_cell(tmp_path, "so-TURTLE", 1, 5, 0, proto)["mean"] == -1.0   # reused
    # runs from before settings were recorded were value-clipped with scope "all": reused only where that is the same
    five = dict(a, mean=-2.0)
    five.pop("spec")
    path.write_text(json.dumps(five))
    assert run_cell(tmp_path, "so-TURTLE", 5, 5, 0, proto)["mean"] == a["mean"]   # T = 5 clips: retrained
    path1.write_text(json.dumps({k: v for k, v in dict(one, mean=-2.0).items() if k != "spec"}))
    assert run_cell(tmp_path, "so-TURTLE", 1, 5, 0, proto)["mean"] == -2.0        # T = 1 does not: reused
    lstm = run_cell(tmp_path, "LSTM", 1, 5, 0, proto)
    path2 = tmp_path / "cells" / "LSTM_T1_k5_s0.json"
    assert json.loads(path2.read_text())["spec"]["learner"].count("grad_scale=0.2") == 1
    path2.write_text(json.dumps({k: v for k, v in dict(lstm, mean=-1.0).items() if k != "spec"}))
    assert run_cell(tmp_path, "LSTM", 1, 5, 0, proto)["mean"] == lstm["mean"]   # unrecorded LSTM settings: retrained
    b = run_cell(tmp_path, "Finetuning", None, 5, 0, Protocol(tasks=5, test_tasks=8, val_every=None, val_tasks=0))
    assert b["iterations"] == 5 and math.isfinite(b["mean"])


def test_value_clipping_scope_init_spares_the_meta_network() -> None:
    # scope "init" is the thesis's turtle.py (it clamps only the initialisation's meta-gradient)
    sp = spec("so-TURTLE", 5)
    assert sp.describe()["clip_value_scope"] == "init" and spec("fo-TURTLE-raw", 5).clip_value_scope == "init"
    assert spec("so-MAML", 5).clip_value_scope == "all"     # the same thing for MAML: all it has is the init
    # at T = 10 (meta-batch 4) each task's meta-gradient is clamped before the sum, as turtle.py does;
    # the key carries it, so a run trained with the mean clamped is not reused
    assert spec("so-TURTLE", 10).describe()["clip_value_scope"] == "init_per_task"
    algo = build_meta(sp, 5, 0)
    for p in algo.parameters():
        p.grad = torch.full_like(p, -50.0)
    clip_grads(sp, algo)
    for name, p in algo.named_parameters():
        assert float(p.grad.min()) == (-10.0 if name.startswith("model.") else -50.0), name
    pop = Population([build_meta(sp, 5, s) for s in (0, 1)])
    for p in pop.stacked:
        p.grad = torch.full_like(p, 50.0)
    clip_grads(sp, pop)
    assert {n.split(".")[0]: float(p.grad.max()) for n, p in zip(pop.names, pop.stacked)} == {"model": 10.0, "meta": 50.0}
    clip_grads(dataclasses.replace(sp, clip_value_scope="all"), pop)       # every meta-parameter
    assert max(float(p.grad.max()) for p in pop.stacked) == 10.0
    with pytest.raises(ValueError, match="clip_value_scope must be 'all', 'init' or 'init_per_task', got 'initialisation'"):
        dataclasses.replace(sp, clip_value_scope="initialisation")


def test_aggregate_uses_robust_statistics() -> None:
    cells = [{"mean": m, "diverged": False, "ci95_tasks": 0.1, "seconds": 1.0, "ms_per_iteration": 2.0}
             for m in (1.0, 1.1, 0.9, 1.0, 50.0)]
    stats = aggregate(cells)
    assert stats["outliers"] == 1 and stats["mean"] == pytest.approx(1.0) and stats["seeds"] == 5


def test_target_scale_matches_the_task_distribution() -> None:
    # the closed form E[A^2]/2 against 200,000 sampled tasks (standard error of the mean ~0.01)
    from metagrad.experiments.reproduce.turtle_common import sine
    scale, expected = turtle_table6.target_scale([5, 10], 100)
    assert set(scale) == {5, 10} and all(v > 0 for v in scale.values())
    big = sine(1).sample(200_000, torch.Generator().manual_seed(0))
    assert abs(float((big.query_y.double() ** 2).mean()) - expected) < 0.05
    assert expected == pytest.approx(4.2517, abs=1e-4)


def test_table6_claims_logic() -> None:
    def r(model: str, t, k: int, mean: float, paper=None, ok=None) -> dict:
        d = {"model": model, "setting": {"k_shot": k, "steps": t}, "mean": mean}
        if ok is not None:
            d["at_most_or_within_paper"] = ok
        return d
    rows = [r("so-TURTLE", 5, 5, 0.1, ok=True), r("so-MAML", 5, 5, 0.3, ok=True), r("Finetuning", None, 5, 3.0, ok=False)]
    c = turtle_table6.claims(rows)
    assert c["turtle_beats_maml_5step_5shot"] and not c["all_at_most_or_within_paper"]
    assert c["baselines_worse_than_all_meta_learners_5shot"]
    with pytest.raises(ValueError, match="unknown model 'MAML'"):
        turtle_table6.run(Path("/nonexistent"), models=("MAML",))
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=f"turtle-table6: threads must be a positive integer, got {bad}"):
            turtle_table6.run(Path("/nonexistent"), report=True, threads=bad)


def test_threads_option_sets_torch_threads(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        turtle_table6.main(["--out", str(tmp_path), "--report", "--threads", "2"])
        assert torch.get_num_threads() == 2
        turtle_order.main(["--out", str(tmp_path / "o"), "--steps", "1", "--seeds", "1", "--tasks", "2",
                           "--test-tasks", "4", "--val-every", "0", "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_table6_runs_column_says_what_became_of_the_runs() -> None:
    def cell(mean: float, **kw) -> dict:
        return {"mean": mean, "diverged": mean != mean, "seconds": 1.0, "ms_per_iteration": 1.0,
                "ci95_tasks": 0.0, "val_curve": [[2500, 1.0]], "nonfinite_at": None, "skipped": 0, **kw}
    plain = [cell(0.30), cell(0.31), cell(0.29)]
    assert turtle_table6.runs_note(plain, aggregate(plain)) == "3"
    # a run lost under "stop" (tested at its best validated state), one far off, one NaN on test
    stop = plain + [cell(0.32, nonfinite_at=6113), cell(5.0), cell(math.nan)]
    assert turtle_table6.runs_note(stop, aggregate(stop)) == "6 (1 lost, 1 not finite on test, 1 dropped as outlier)"
    # runs kept before nonfinite_at was recorded show the loss as nan validation
    old = [cell(0.3, val_curve=[[2500, 1.0], [5000, math.nan]])]
    del old[0]["nonfinite_at"]
    assert turtle_table6.runs_note(old, aggregate(old)) == "1 (1 lost)"
    skip = plain + [cell(0.31, nonfinite_at=6113, skipped=5), cell(0.3, skipped=1)]
    assert turtle_table6.runs_note(skip, aggregate(skip)) == "5 (6 updates skipped)"
    table = format_table("t", [row("LSTM", {"k_shot": 5}, "mse", 0.3, 0.01, runs="5 (1 lost)"), row("x", {}, "mse", 1, 0)])
    assert "| runs |" in table and "| 5 (1 lost) |" in table and table.splitlines()[-3].endswith("| - |")
    # the number the thesis's code would give, where measured
    table = format_table("t", [row("LSTM", {"k_shot": 5}, "mse", 0.3, 0.01, thesis_restore=0.4, thesis_restore_ci95=0.02),
                               row("x", {}, "mse", 1, 0)])
    assert "| as thesis code |" in table and "| 0.400 ± 0.020 |" in table and table.splitlines()[-3].endswith("| - |")
    rows = [dict(c, thesis_restore_mean=m) for c, m in zip(plain, (0.5, 0.6, 0.4))]
    assert turtle_table6.thesis_restore(rows) == pytest.approx((0.5, robust_summary([0.5, 0.6, 0.4])["ci95"]))
    assert turtle_table6.thesis_restore(rows + plain[:1]) is None     # a run made before it was measured
    # a run not finite on the test tasks has no interval over them either
    lost = [cell(0.3, ci95_tasks=0.02), cell(math.nan, ci95_tasks=math.nan)]
    assert turtle_table6.test_set_ci95(lost, aggregate(lost)) == 0.02
    # nor does a run the IQR rule drops (finite, but blown up on a few test tasks)
    runs = [cell(m, ci95_tasks=c) for m, c in ((0.40, 0.02), (0.45, 0.03), (0.50, 0.04), (0.42, 0.02), (8e4, 9e4))]
    assert turtle_table6.test_set_ci95(runs, aggregate(runs)) == pytest.approx(0.0275)
    assert turtle_table6.restore_note([]) == "" and "'as thesis code'" in turtle_table6.restore_note([{"thesis_restore": 1}])


@pytest.mark.slow
@pytest.mark.parametrize("module", [turtle_table6, turtle_order])
def test_quick_run_writes_table(module, tmp_path: Path) -> None:
    rows = module.run(tmp_path, quick=True)
    assert (tmp_path / "table.md").exists() and (tmp_path / "results.json").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["experiment"] == module.NAME and len(data["rows"]) == len(rows) > 0
    assert all(r["mean"] is not None for r in rows)


def test_table6_report_tabulates_cached_runs_only(tmp_path: Path) -> None:
    from metagrad.experiments.reproduce.turtle_cells import run_cells
    proto = Protocol(tasks=4, test_tasks=8, val_every=None, val_tasks=0)
    run_cells(tmp_path, "so-MAML", 1, 5, [0, 1], proto)
    before = sorted(p.name for p in (tmp_path / "cells").iterdir())
    rows = turtle_table6.run(tmp_path, seeds=2, models=["so-MAML", "so-TURTLE"], steps=[1], shots=[5], tasks=4,
                             test_tasks=8, val_every=None, val_tasks=0, report=True)
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == before      # nothing trained
    assert [(r["model"], r["seeds"]) for r in rows] == [("so-MAML", 2)]
    assert "so-MAML" in (tmp_path / "table.md").read_text()
    # the test set's own sampling error, shared by the runs, is shown beside the across-run interval
    assert rows[0]["test_set_ci95"] == pytest.approx(sum(c["ci95_tasks"] for c in run_cells(
        tmp_path, "so-MAML", 1, 5, [0, 1], proto)) / 2)
    assert "| ± test tasks |" in (tmp_path / "table.md").read_text()


def test_table6_tabulates_every_kept_run_of_a_cell(tmp_path: Path) -> None:
    """Runs of seeds beyond ``--seeds`` (a cheap cell given the thesis's 30) are never left out of the table."""
    from metagrad.experiments.reproduce.turtle_cells import kept_seeds, run_cells
    proto = Protocol(tasks=4, test_tasks=8, val_every=None, val_tasks=0)
    run_cells(tmp_path, "so-MAML", 1, 5, [0, 1, 7], proto)
    run_cells(tmp_path, "so-MAML", 1, 15, [3], proto)          # another cell's run (k=15 is not k=1 + "5")
    assert kept_seeds(tmp_path, "so-MAML", 1, 5, 2) == [0, 1, 7]
    assert kept_seeds(tmp_path, "so-MAML", 1, 1, 2) == [0, 1]
    kw = dict(models=["so-MAML"], steps=[1], shots=[5], tasks=4, test_tasks=8, val_every=None, val_tasks=0)
    assert [r["seeds"] for r in turtle_table6.run(tmp_path, seeds=2, report=True, **kw)] == [3]
    assert [r["seeds"] for r in turtle_table6.run(tmp_path, seeds=2, **kw)] == [3]      # nothing to train
    assert [r["seeds"] for r in turtle_table6.run(tmp_path, seeds=2, report=True, data="thesis", **kw)] == []


def test_table6_report_lists_what_is_not_measured(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from metagrad.experiments.reproduce.turtle_cells import run_cells
    proto = Protocol(tasks=4, test_tasks=8, val_every=None, val_tasks=0)
    run_cells(tmp_path, "so-MAML", 1, 5, [0, 1], proto)
    rows = turtle_table6.run(tmp_path, seeds=3, models=["so-MAML", "so-TURTLE"], steps=[1], shots=[5], tasks=4,
                             test_tasks=8, val_every=None, val_tasks=0, report=True)
    assert [(r["model"], r["seeds"]) for r in rows] == [("so-MAML", 2)]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["missing_cells"] == ["so-MAML T=1 k=5 (2 of 3 runs)", "so-TURTLE T=1 k=5"]
    assert "wall_clock_s" not in data      # a report trains nothing; its own run time would only churn the file
    assert "Not measured yet: so-MAML T=1 k=5 (2 of 3 runs); so-TURTLE T=1 k=5." in (tmp_path / "table.md").read_text()
    assert "1 of 2 cells" in capsys.readouterr().err


def test_state_dict_follows_later_adam_steps() -> None:
    # the premise of Spec.thesis_restores: the thesis's dump_state keeps nn.Module.state_dict(), whose
    # tensors share storage with the parameters, so the optimiser's later in-place steps carry into it
    layer = torch.nn.Linear(2, 1)
    kept, before = layer.state_dict(), layer.weight.detach().clone()
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.ones(3, 2)).sum().backward()
    opt.step()
    assert torch.equal(kept["weight"], layer.weight.detach()) and not torch.equal(kept["weight"], before)


def test_changed_settings_train_apart_and_bad_ones_are_named(tmp_path: Path) -> None:
    changes = parse_settings(["rule.prev_gate=logit", "rule.layer1_init=torch", "clip_norm=1", "clip_value=none"])
    assert changes == {"rule.prev_gate": "logit", "rule.layer1_init": "torch", "clip_norm": 1, "clip_value": None}
    assert parse_settings(["rule.second_order=False", "rule.p=2.5"]) == {"rule.second_order": False, "rule.p": 2.5}
    sp = with_settings(spec("LSTM", 1, 5), changes)
    rule = sp.learner()
    assert (rule.prev_gate, rule.layer1_init, rule.grad_scale, sp.clip_norm) == ("logit", "torch", 0.2, 1)
    assert "prev_gate='logit'" in sp.describe()["learner"] and spec("LSTM", 1, 5).learner().prev_gate == "value"
    proto = Protocol(tasks=2, test_tasks=4, val_every=None, val_tasks=0)
    run_cells(tmp_path, "LSTM", 1, 5, [0], proto, changes=changes)
    # the run records its settings: the default table does not take it, the same changes do
    assert cached_cells(tmp_path, "LSTM", 1, 5, [0], proto) == []
    assert len(cached_cells(tmp_path, "LSTM", 1, 5, [0], proto, changes)) == 1
    with pytest.raises(ValueError, match="LSTM's rule LSTMMetaLearner has no field 'prev_gat'"):
        with_settings(spec("LSTM", 1, 5), {"rule.prev_gat": "logit"})
    with pytest.raises(ValueError, match="so-MAML has no setting 'clip_scope'"):
        with_settings(spec("so-MAML", 5), {"clip_scope": "all"})
    with pytest.raises(ValueError, match="clip_value_scope must be .* got 'each'"):
        with_settings(spec("so-TURTLE", 5), {"clip_value_scope": "each"})
    with pytest.raises(ValueError, match="expected KEY=VALUE .* got 'logit'"):
        parse_settings(["logit"])
    with pytest.raises(SystemExit):    # the CLI: one line on stderr before any training
        turtle_table6.main(["--out", str(tmp_path / "t"), "--models", "so-MAML", "--set", "rule.prev_gate=logit"])


def test_table6_only_seeds_trains_just_those_seeds_and_tabulates_all(tmp_path: Path) -> None:
    """``--only-seeds`` splits a cell's runs across jobs: each job trains its seeds, the table has them all."""
    kw = dict(models=["so-MAML"], steps=[1], shots=[5], tasks=4, test_tasks=8, val_every=None, val_tasks=0)
    rows = turtle_table6.run(tmp_path, seeds=2, only_seeds=[3], **kw)
    assert sorted(p.name for p in (tmp_path / "cells").glob("*.json")) == ["so-MAML_T1_k5_s3.json"]
    assert [r["seeds"] for r in rows] == [1]
    rows = turtle_table6.run(tmp_path, seeds=2, only_seeds=[0], **kw)   # the other job
    assert [r["seeds"] for r in rows] == [2]
    assert [r["seeds"] for r in turtle_table6.run(tmp_path, seeds=2, report=True, **kw)] == [2]
    with pytest.raises(ValueError, match="-1"):
        turtle_table6.run(tmp_path, seeds=2, only_seeds=[-1], **kw)
    with pytest.raises(ValueError, match="only-seeds"):
        turtle_table6.run(tmp_path, seeds=2, only_seeds=[1], report=True, **kw)
    with pytest.raises(SystemExit):    # the CLI: one line on stderr, nothing trained
        turtle_table6.main(["--out", str(tmp_path / "t"), "--only-seeds", "-1"])
    assert not (tmp_path / "t").exists()
