"""TensorBoard events: the same numbers as metrics.jsonl, across a resume, and exported runs."""
from __future__ import annotations

import builtins
import math

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from metagrad.cli import main  # noqa: E402
from metagrad.errors import RunError  # noqa: E402
from metagrad.experiments.runner import train  # noqa: E402
from metagrad.runlog import JsonLog  # noqa: E402
from metagrad.tensorboard_log import scalars  # noqa: E402

TINY = ["outer.iterations=20", "outer.meta_batch=4", "eval.tasks=30", "eval.batch=16", "eval.every=5",
        "eval.val_tasks=10", "log_every=2", "checkpoint_every=6"]


def _events(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _metrics(run) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for rec in JsonLog.read(run / "metrics.jsonl"):
        for tag, v in scalars(rec).items():
            out.setdefault(tag, []).append((rec["iteration"], v))
    return out


def _close(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for tag in a:
        assert [s for s, _ in a[tag]] == [s for s, _ in b[tag]], tag
        assert all(math.isclose(x, y, rel_tol=1e-6) for (_, x), (_, y) in zip(a[tag], b[tag])), tag   # float32 events


def test_scalars_of_a_record():
    rec = {"iteration": 10, "loss": 0.5, "losses": [0.4, 0.6], "val_accuracy": 0.9, "stopped": [False, True],
           "note": "text"}
    assert scalars(rec) == {"loss": 0.5, "losses/member_0": 0.4, "losses/member_1": 0.6, "val_accuracy": 0.9,
                            "stopped/member_0": 0.0, "stopped/member_1": 1.0}


def test_events_equal_metrics_across_a_resume(tmp_path):
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False, stop_after=7,
                evaluate_at_end=False, tensorboard=True)
    # a killed process logged past its checkpoint (7): these events must not show after the resume
    stale = SummaryWriter(str(run / "tensorboard"))
    for step in (8, 10, 12):
        stale.add_scalar("loss", 999.0, step)
    stale.close()
    train(out=run, resume=True, progress=False, evaluate_at_end=False)   # keeps writing: it wrote events before
    events, metrics = _events(run / "tensorboard"), _metrics(run)
    assert "val_mse" in events and events["loss"][-1][0] == 20
    assert all(v != 999.0 for _, v in events["loss"])
    _close(events, metrics)


def test_a_run_without_tensorboard_writes_no_events_and_runs_exports_them(tmp_path, capsys):
    run = train("sine-maml-quick", tmp_path / "runs" / "a", overrides=TINY, progress=False, evaluate_at_end=False)
    assert not (run / "tensorboard").exists()
    assert main(["runs", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    _close(_events(tmp_path / "tb" / "a"), _metrics(run))
    assert main(["runs", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "tb")]) == 0   # again: replaced
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["a"]
    _close(_events(tmp_path / "tb" / "a"), _metrics(run))


@pytest.mark.parametrize("where", ["f", "f/tb"])
def test_export_into_a_file_is_refused_before_the_listing(tmp_path, capsys, where):
    train("sine-maml-quick", tmp_path / "runs" / "a", overrides=TINY, progress=False, evaluate_at_end=False)
    (tmp_path / "f").write_text("x")
    assert main(["runs", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / where)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().endswith("is a file; give a folder (e.g. tb/)") and len(err.strip().splitlines()) == 1


def test_without_the_package_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(RunError, match="pip install tensorboard"):
        train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False, tensorboard=True)
    assert not (tmp_path / "r").exists()   # nothing half-made left behind
