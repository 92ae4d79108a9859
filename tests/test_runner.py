"""Config, runner and command line: overrides, runs on disk, exact resumption, errors."""
from __future__ import annotations

import json

import pytest
import torch

from metagrad.cli import main
from metagrad.experiments.config import Config, ConfigError
from metagrad.experiments.presets import PRESETS, get_preset
from metagrad.experiments.runner import RunError, evaluate_run, train
from metagrad.schedules import cosine_schedule
from metagrad.training import load_checkpoint

TINY = ["outer.iterations=20", "outer.meta_batch=4", "eval.tasks=30", "eval.batch=16",
        "model.hidden=[16]", "log_every=5", "checkpoint_every=5"]


def test_every_preset_is_a_valid_config():
    for name in PRESETS:
        assert get_preset(name).name == name


def test_overrides_apply_and_unknown_keys_are_named():
    cfg = get_preset("sine-maml").override(["inner.steps=5", "task.k_shot=5", "outer.lr=0.01", "compile=true"])
    assert (cfg.inner["steps"], cfg.task["k_shot"], cfg.outer["lr"], cfg.compile) == (5, 5, 0.01, True)
    with pytest.raises(ConfigError, match="unknown key inner.stepz"):
        cfg.override(["inner.stepz=5"])
    with pytest.raises(ConfigError, match="unknown key task.shots"):
        cfg.override(["task.shots=5"])
    with pytest.raises(ConfigError, match="unknown config key 'nope.x'"):
        cfg.override(["nope.x=1"])
    with pytest.raises(ConfigError, match=r"inner.steps must be an integer >= 0, got -1"):
        cfg.override(["inner.steps=-1"])
    with pytest.raises(ConfigError, match="inner.mode must be .* got 'fast'"):
        cfg.override(["inner.mode=fast"])
    with pytest.raises(ConfigError, match="unknown preset 'sine-mamll'"):
        get_preset("sine-mamll")


def test_config_roundtrip():
    cfg = get_preset("sine-maml-5step")
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_train_writes_a_complete_run(tmp_path):
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False)
    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "eval.json"):
        assert (run / f).is_file(), f
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [5, 10, 15, 20]
    ev = json.loads((run / "eval.json").read_text())
    assert ev["metric"] == "mse" and ev["n_tasks"] == 30 and ev["ci95"] > 0 and len(ev["curve"]) == 2
    assert not list(run.glob(".*tmp"))  # no temporary files left behind
    with pytest.raises(RunError, match="already holds a run"):
        train("sine-maml-quick", run, overrides=TINY, progress=False)


def test_resume_continues_exactly(tmp_path):
    straight = train("sine-maml-quick", tmp_path / "a", overrides=TINY + ["checkpoint_every=7"], progress=False,
                     evaluate_at_end=False)
    part = train("sine-maml-quick", tmp_path / "b", overrides=TINY + ["checkpoint_every=7"], progress=False,
                 stop_after=8, evaluate_at_end=False)
    assert load_checkpoint(part / "checkpoint.pt")["iteration"] == 8
    train(out=part, resume=True, progress=False, evaluate_at_end=False)
    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(part / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 20
    assert a["module"].keys() == b["module"].keys()
    for k in a["module"]:
        assert torch.equal(a["module"][k], b["module"][k]), k
    assert torch.equal(a["stream"]["generator"], b["stream"]["generator"])
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    # the log too, line for line (checkpoint_every=7 is not a multiple of log_every=5)
    assert (straight / "metrics.jsonl").read_text() == (part / "metrics.jsonl").read_text()


def test_a_time_limit_checkpoints_and_the_resumed_run_is_the_uninterrupted_one(tmp_path, capsys):
    """``--time-limit`` (``deadline``): past it, training checkpoints and stops with ``TimeLimitReached``
    (exit status 0 from the CLI, the resume command named); resumed, the run ends as one never stopped."""
    import time
    from metagrad.errors import TimeLimitReached
    straight = train("sine-maml-quick", tmp_path / "a", overrides=TINY, progress=False, evaluate_at_end=False)
    with pytest.raises(TimeLimitReached, match=r"stopped at the time limit at iteration 1 of 20 .*train --resume"):
        train("sine-maml-quick", tmp_path / "b", overrides=TINY, progress=False, deadline=time.time() - 1)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["iteration"] == 1 and not (tmp_path / "b" / "eval.json").exists()
    assert main(["train", "--resume", str(tmp_path / "b"), "--time-limit", "0.001s", "--no-progress"]) == 0
    assert "iteration 2 of 20" in capsys.readouterr().err
    train(out=tmp_path / "b", resume=True, progress=False, evaluate_at_end=False)
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert b["iteration"] == 20 and all(torch.equal(a["module"][k], b["module"][k]) for k in a["module"])
    assert (straight / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit):   # a duration argparse cannot read: its one-line usage error
        main(["train", "sine-maml-quick", "--time-limit", "2x"])
    assert "invalid duration '2x'" in capsys.readouterr().err


def test_resume_may_change_threads_only(tmp_path):
    part = train("sine-maml-quick", tmp_path / "b", overrides=TINY + ["checkpoint_every=7"], progress=False,
                 stop_after=8, evaluate_at_end=False)
    before = torch.get_num_threads()
    try:
        train(out=part, resume=True, progress=False, evaluate_at_end=False, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert load_checkpoint(part / "checkpoint.pt")["iteration"] == 20
    assert json.loads((part / "config.json").read_text())["threads"] is None    # the config is unchanged
    with pytest.raises(RunError, match="threads must be an integer >= 1, got 0"):
        train(out=part, resume=True, progress=False, threads=0)


def test_checkpoint_from_before_a_new_config_key_still_resumes(tmp_path):
    """A checkpoint's key written before a setting existed (here: without ``compile`` and
    ``inner.mode``) resumes, the setting taking its default; a key that differs does not."""
    part = train("sine-maml-quick", tmp_path / "b", overrides=TINY, progress=False,
                 stop_after=8, evaluate_at_end=False)
    ck = load_checkpoint(part / "checkpoint.pt")
    old = ck["key"]["config"]
    assert old["inner"]["mode"] == Config().inner["mode"]
    del old["compile"], old["inner"]["mode"]
    torch.save(ck, part / "checkpoint.pt")
    train(out=part, resume=True, progress=False, evaluate_at_end=False, stop_after=2)
    assert load_checkpoint(part / "checkpoint.pt")["iteration"] == 10
    ck = load_checkpoint(part / "checkpoint.pt")
    ck["key"]["config"]["inner"]["steps"] += 1
    torch.save(ck, part / "checkpoint.pt")
    with pytest.raises(RunError, match="written under other settings .*config"):
        train(out=part, resume=True, progress=False, evaluate_at_end=False)


def test_eval_with_overrides_and_more_steps(tmp_path):
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False)
    res = evaluate_run(run, tasks=20, steps=4, overrides=["task.k_shot=5"], plot=True, progress=False)
    assert res["k_shot"] == 5 and res["steps"] == 4 and len(res["curve"]) == 5 and res["n_tasks"] == 20
    assert (run / "eval-k5-s4-n20.json").is_file()
    assert (run / "adaptation.png").stat().st_size > 1000 and (run / "training.png").is_file()


def test_eval_tests_the_state_train_tested_unless_told_otherwise(tmp_path):
    # validation every 5 iterations of 20: the best validated state is kept in the checkpoint
    run = train("sine-maml-quick", tmp_path / "r", overrides=[*TINY, "eval.every=5", "eval.val_tasks=20", "outer.lr=0.03"],
                progress=False)   # at this rate the best validation comes at iteration 15 (measured)
    trained = json.loads((run / "eval.json").read_text())
    assert trained["state"].startswith("best_validated (iteration ")
    again = evaluate_run(run, progress=False)   # the run's eval.test_state, as train tested it
    assert again["state"] == trained["state"] and again["mean"] == trained["mean"]
    final = evaluate_run(run, state="final", progress=False)
    assert final["state"] == "final" and trained["state"] != "best_validated (iteration 20)"
    assert final["mean"] != trained["mean"]   # the best is not the last state: another number
    unvalidated = train("sine-maml-quick", tmp_path / "u", overrides=TINY, progress=False)
    assert evaluate_run(unvalidated, progress=False)["state"] == "final"   # nothing validated: the final state
    with pytest.raises(RunError, match="eval --state best: this run kept no validated state"):
        evaluate_run(unvalidated, state="best", progress=False)
    with pytest.raises(ConfigError, match="eval: --state must be best or final, got 'last'"):
        evaluate_run(run, state="last", progress=False)


def test_eval_rejects_unreadable_run_dirs(tmp_path):
    with pytest.raises(RunError, match="not a directory"):
        evaluate_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no config.json"):
        evaluate_run(tmp_path / "empty")


def test_cli_train_eval_list_and_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "sine-maml-quick", "--out", str(out), "--no-progress"]
    for a in TINY:
        args += ["--set", a]
    assert main(args) == 0
    assert "mse" in capsys.readouterr().out
    assert main(["eval", str(out), "--tasks", "10", "--steps", "3", "--no-progress"]) == 0
    assert "(10 tasks, 3 steps" in capsys.readouterr().out
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "sine-maml-5step               maml: sgd, 5 steps of 0.01, second order | mlp | sine 10-shot | adam 0.002, " \
           "meta-batch 25, 30,000 iterations" in listed   # each preset with what it trains
    assert "poly001-mtnet-order2          maml: mtnet, 1 step of 0.01, second order | mlp | polynomial 10-shot degree 2" in listed
    # the LSTM rule's default (its gradient inputs detached) is said, not hidden behind "second order"
    assert "004-lstm-t10-k15              maml: lstm, 10 steps, second order (the rule's gradient inputs detached, " \
           "as Ravi & Larochelle) | mlp" in listed
    assert "detached" not in Config.from_dict({"inner": {"learner": "lstm", "second_order": True}}).summary()
    assert main(["train", "no-such-preset"]) == 2
    assert "unknown preset 'no-such-preset'" in capsys.readouterr().err
    assert main(["train", "sine-maml", "--set", "inner.lrr=3"]) == 2
    assert "inner.lrr" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    cfg = tmp_path / "bad.json"
    cfg.write_text("{not json")
    assert main(["train", str(cfg)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    # an option that an experiment does not have is a usage error of that experiment's parser
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "mtnet-table1", "--data", "thesis"])
    assert exc.value.code == 2
    assert "metagrad reproduce mtnet-table1: error: unrecognized arguments: --data thesis" in capsys.readouterr().err
    assert main(["reproduce", "no-such-experiment"]) == 2
    assert "no-such-experiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(out), "--data", "thesis"])
    assert "unrecognized arguments: --data thesis" in capsys.readouterr().err


def test_cosine_schedule_and_threads_option():
    from metagrad.experiments.building import schedule
    cfg = get_preset("sine-maml").override(["outer.schedule=cosine", "outer.lr=0.002", "outer.iterations=100",
                                            "threads=1"])
    for sched in (cosine_schedule(0.002, 100), schedule(cfg)):   # the function, and the one a config builds
        assert sched(0, None, None) == pytest.approx(0.002)
        assert sched(50, None, None) == pytest.approx(0.001)
        assert sched(100, None, None) == pytest.approx(0.0, abs=1e-12)
    assert schedule(cfg.override(["outer.schedule=constant"]))(50, None, None) == 0.002
    with pytest.raises(ConfigError, match="outer.schedule must be .* got 'step'"):
        cfg.override(["outer.schedule=step"])
    with pytest.raises(ConfigError, match="threads must be an integer >= 1, got 0"):
        cfg.override(["threads=0"])
