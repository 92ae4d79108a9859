"""``metagrad runs``: each run folder's state, progress and numbers, read from its small files."""
from __future__ import annotations

import os

import pytest

from metagrad.cli import main
from metagrad.experiments import runner
from metagrad.experiments.listing import find_runs, read_run
from metagrad.runlog import RunLock, lock_holder

TINY = ["outer.iterations=20", "outer.meta_batch=4", "eval.tasks=30", "eval.batch=16", "model.hidden=[16]",
        "log_every=5", "checkpoint_every=5", "eval.every=10", "eval.val_tasks=20"]


def test_runs_lists_finished_stopped_and_training_runs(tmp_path, capsys):
    done, cut = tmp_path / "a" / "done", tmp_path / "b" / "cut"
    runner.train("sine-maml-quick", done, overrides=TINY, progress=False)
    runner.train("sine-maml-quick", cut, overrides=TINY, progress=False, stop_after=10, evaluate_at_end=False)
    (tmp_path / "empty").mkdir()
    assert find_runs([tmp_path]) == [done, cut]
    assert find_runs([done]) == [done]

    fin = read_run(done)
    assert fin.state == "finished" and (fin.iteration, fin.iterations) == (20, 20)
    assert fin.trains.startswith("maml: sgd, 1 step of 0.01, second order | mlp | sine 10-shot")
    assert fin.val is not None and fin.val[0] in (10, 20) and fin.val[2] == "val_mse"
    assert fin.test.startswith("mse ") and "(30 tasks, 1 steps)" in fin.test and fin.seconds > 0

    stopped = read_run(cut)
    assert stopped.state == f"stopped; continue with metagrad train --resume {cut}" and stopped.iteration == 10
    assert stopped.test is None

    with RunLock(cut):   # a process writing the folder now (here: this one, through another descriptor)
        assert lock_holder(cut) == str(os.getpid())
        assert read_run(cut).state == f"training (pid {os.getpid()})"
    assert lock_holder(cut) is None and lock_holder(tmp_path / "empty") is None

    assert main(["runs", str(tmp_path), "--plot", str(tmp_path / "runs.png")]) == 0
    out = capsys.readouterr().out
    assert f"{done}: finished" in out and "iteration 20 of 20" in out and "best val_mse" in out
    assert f"{cut}: stopped; continue with" in out and "iteration 10 of 20" in out
    assert (tmp_path / "runs.png").stat().st_size > 10_000 and "plot written to" in out


def test_runs_reports_damaged_files_on_their_line(tmp_path, capsys):
    run = tmp_path / "r"
    runner.train("sine-maml-quick", run, overrides=TINY, progress=False)
    (run / "config.json").write_text("{not json")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 25, "lo')   # a line cut by a crash
    info = read_run(run)
    assert info.trains.startswith("(config.json unreadable: config: ") and info.iteration == 20
    assert main(["runs", str(tmp_path)]) == 0   # the listing goes on
    assert f"{run}: finished" in capsys.readouterr().out


def test_runs_names_a_missing_path(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert f"runs: '{tmp_path / 'nowhere'}' does not exist" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs found" in capsys.readouterr().out


def test_runs_points_a_reproduction_record_to_its_cell_listing(tmp_path, capsys):
    """A record (``results.json`` naming its experiment) is a table of runs, not a run: ``runs`` says
    how to list its cells, with the record's options (004 Table 6 on the thesis's data)."""
    for folder, text in (("t3", '{"experiment": "omniglot-table3", "rows": [], "partial": true, "missing": ["a", "b"]}'),
                         ("turtle-table6-thesis-data", '{"experiment": "turtle-table6", "partial": false}'),
                         ("damaged", "{not json"), ("other", "[1, 2]")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(text)
    (tmp_path / "t3" / "cells").mkdir()
    for kept in ("b_s0.run.pt", "a_s0.run.pt", "a_s0.partial.pt"):   # a resume point is not a kept run
        (tmp_path / "t3" / "cells" / kept).write_bytes(b"")
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "no runs found",
        f"{tmp_path / 't3'}: record of `metagrad reproduce omniglot-table3` (partial, 2 cell(s) missing); its cells "
        f"and their progress: metagrad reproduce omniglot-table3 --out {tmp_path / 't3'} --list",
        f"    2 kept run(s), e.g. {tmp_path / 't3' / 'cells' / 'a_s0.run.pt'}: metagrad eval FILE [--set ...] or "
        "mg.load_run(FILE)",
        f"{tmp_path / 'turtle-table6-thesis-data'}: record of `metagrad reproduce turtle-table6` (complete); its cells "
        f"and their progress: metagrad reproduce turtle-table6 --data thesis --out {tmp_path / 'turtle-table6-thesis-data'} --list"]


@pytest.mark.parametrize("name, message", [
    ("runs.txt", "runs --plot: cannot write '{p}': '.txt' is not an image format; end it in one of "),
    ("runs", "runs --plot: cannot write '{p}': the name has no suffix; end it in one of "),
    ("", "runs --plot: '' is not an image file name; give one such as training.png"),
])
def test_runs_plot_refuses_a_file_name_that_is_not_an_image_before_reading(tmp_path, capsys, name, message):
    """Found by fuzzing the command line: ``--plot runs.txt`` reached matplotlib's ValueError."""
    path = str(tmp_path / name) if name else ""
    assert main(["runs", str(tmp_path / "nowhere"), "--plot", path]) == 2   # refused before the runs are looked for
    err = capsys.readouterr().err
    assert err.startswith("metagrad: error: " + message.format(p=path)) and ".png" in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("metric,best", [("val_accuracy", 0.9), ("val_mse", 0.1)])
def test_the_best_validation_is_the_highest_accuracy_or_the_lowest_loss(metric, best):
    from metagrad.experiments.listing import _best_val
    rows = [{"iteration": 5, "loss": 1.0}, {"iteration": 10, metric: 0.1}, {"iteration": 20, metric: 0.9},
            {"iteration": 30, metric: float("nan")}]
    assert _best_val(rows)[1] == best
