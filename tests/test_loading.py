"""mg.load_run: a trained run folder back as the algorithm train tested, exactly."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

import metagrad as mg
from metagrad.errors import ConfigError, RunError
from metagrad.experiments.runner import train
import json
from metagrad.training import load_checkpoint

TINY = ["outer.iterations=20", "outer.meta_batch=4", "eval.tasks=30", "eval.batch=16", "eval.every=10",
        "eval.val_tasks=10", "outer.lr=0.01"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train("sine-maml-quick", tmp_path_factory.mktemp("runs") / "r", overrides=TINY, progress=False)


def test_the_loaded_run_gives_the_number_train_printed(run):
    loaded = mg.load_run(run)
    cfg = loaded.config
    res = mg.evaluate(loaded.algo, (loaded.task, cfg.eval["tasks"], cfg.eval["seed"]), cfg.eval["steps"],
                      chunk=cfg.eval["batch"])
    ev = json.loads((run / "eval.json").read_text())
    assert res["mean"] == ev["mean"] and loaded.state == ev["state"] and loaded.iteration == 20


def test_best_and_final_states_are_the_checkpoints(run):
    ck = load_checkpoint(run / "checkpoint.pt")
    final = mg.load_run(run, state="final")
    best = mg.load_run(run, state="best")
    assert final.state == "final" and best.state.startswith("best_validated (iteration ")
    for n, p in final.algo.named_parameters():
        assert torch.equal(p, ck["module"][n])
    for n, p in best.algo.named_parameters():
        assert torch.equal(p, ck["fit"]["best"][0][n])


def test_adapt_and_predict_on_a_loaded_run(run):
    loaded = mg.load_run(run, overrides=["task.k_shot=5"])
    batch = loaded.task.sample(1, torch.Generator().manual_seed(1))
    assert batch.support_x.shape[1] == 5
    fast = loaded.algo.adapt(batch.support_x[0], batch.support_y[0])
    assert loaded.algo.predict(fast, batch.query_x[0]).shape == batch.query_y[0].shape


def test_bad_state_and_folders_are_one_line_errors(run, tmp_path):
    with pytest.raises(ConfigError, match="load_run: state must be 'best', 'final' or None.*got 'last'"):
        mg.load_run(run, state="last")
    with pytest.raises(RunError, match="no config.json"):
        mg.load_run(tmp_path)
    with pytest.raises(RunError, match=r"^load_run: .* was trained with shape .*model.hidden"):
        mg.load_run(run, overrides=["model.hidden=[20, 20]"])
    unvalidated = train("sine-maml-quick", tmp_path / "u", overrides=[*TINY, "eval.every=0"], progress=False)
    with pytest.raises(RunError, match=r"load_run\(state='best'\): this run kept no validated state .* use state='final'"):
        mg.load_run(unvalidated, state="best")


KEPT = Path(__file__).resolve().parents[1] / "reproductions" / "omniglot-table3" / "cells" / "MAML_5way_s0"


@pytest.mark.skipif(not (Path(os.environ.get("METAGRAD_DATA", "")) / "omniglot").is_dir(), reason="no Omniglot data")
def test_a_kept_reproduction_run_loads_and_gives_the_recorded_numbers():
    """001 Table 3's Omniglot MAML, as the record keeps it: its 600-task test, both states, to the bit."""
    summary = json.loads(KEPT.with_suffix(".json").read_text())["evals"]["test"]
    for state, want in ((None, summary["mean"]), ("final", summary["final"]["mean"])):
        run = mg.load_run(KEPT.with_suffix(".run.pt"), state=state)
        cfg = run.config
        got = mg.evaluate(run.algo, (run.task, cfg.eval["tasks"], cfg.eval["seed"]), cfg.eval["steps"],
                          chunk=cfg.eval["batch"])
        assert got["mean"] == want and got["n_tasks"] == 600
    assert run.state == "final" and mg.load_run(KEPT.with_suffix(".run.pt")).state == "best_validated (iteration 58000)"


def test_a_kept_run_path_that_is_not_one_is_a_one_line_error(tmp_path):
    with pytest.raises(RunError, match=r"does not exist \(a reproduction keeps its runs as"):
        mg.load_run(tmp_path / "x.run.pt")
    torch.save({"config": {}}, tmp_path / "y.run.pt")
    with pytest.raises(RunError, match="is not a run a reproduction kept"):
        mg.load_run(tmp_path / "y.run.pt")
    (tmp_path / "z.run.pt").write_text("not a file torch wrote")
    with pytest.raises(RunError, match="cannot read"):
        mg.load_run(tmp_path / "z.run.pt")


@pytest.mark.skipif(not (Path(os.environ.get("METAGRAD_DATA", "")) / "omniglot").is_dir(), reason="no Omniglot data")
def test_metagrad_eval_of_a_kept_run_prints_and_writes_nothing(tmp_path, capsys):
    import shutil
    from metagrad.cli import main
    kept = tmp_path / "MAML_5way_s0.run.pt"
    shutil.copy(KEPT.with_suffix(".run.pt"), kept)
    assert main(["eval", str(kept), "--tasks", "40", "--set", "task.k_shot=5", "--no-progress"]) == 0
    assert re.fullmatch(r"accuracy \d+\.\d\d% ± \d+\.\d\d% \(40 tasks, 1 steps, k=5\)\n", capsys.readouterr().out)
    assert main(["eval", str(kept), "--plot"]) == 2
    assert "drop --plot" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]
