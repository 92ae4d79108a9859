"""Reliability of runs (issue 35): crashes, one writer per folder, damaged logs, bad input,
determinism, devices, and which errors become one-line messages (divergence: test_divergence.py).

The SIGKILL tests run ``metagrad train`` as real processes and kill them with SIGKILL from outside.
To make the kills land inside training rather than in Python's start-up, the child is started with
a small hook (``_HOOK``, run with ``python -c``) that changes no number: it sleeps ``MG_ITER_SLEEP``
seconds before drawing each meta-batch and prints a marker per iteration, and it writes each
checkpoint in two halves with a ``MG_SLOW_WRITE`` second pause between them (printing a marker),
so a kill can be aimed at the middle of a checkpoint write. The parent kills at seeded random
iterations and random delays after them; the run is resumed with ``--resume`` until it finishes.
"""
from __future__ import annotations

import json
import math
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from metagrad.cli import main
from metagrad.device import available_devices
from metagrad.errors import ConfigError, DeviceError, DivergenceError, MetagradError, RunError
from metagrad.experiments import runner
from metagrad.experiments.runner import evaluate_run, train
from metagrad.training import load_checkpoint
from run_checks import same_bits, set_args

ROOT = Path(__file__).resolve().parents[1]
# The setting: checkpoint_every (7) is not a multiple of log_every (3).
KILL_SETS = ["outer.iterations=40", "outer.meta_batch=4", "eval.tasks=20", "log_every=3", "checkpoint_every=7"]
TINY = ["outer.iterations=12", "outer.meta_batch=4", "eval.tasks=20", "model.hidden=[16]", "log_every=3",
        "checkpoint_every=5"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("METAGRAD_DEBUG", None)
    return env


def _assert_same_run(ref: Path, run: Path) -> None:
    a, b = load_checkpoint(ref / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    a.pop("timing"), b.pop("timing")   # wall clock, the one entry allowed to differ
    same_bits(a, b)
    assert (ref / "metrics.jsonl").read_bytes() == (run / "metrics.jsonl").read_bytes()
    assert (ref / "eval.json").read_bytes() == (run / "eval.json").read_bytes()
    assert not list(run.glob(".*.tmp")), list(run.glob(".*.tmp"))


# --- SIGKILL at random moments, then --resume until done -------------------------------------

_HOOK = r"""
import io, os, sys, time
import torch
import metagrad.checkpoints as C
import metagrad.experiments.runner as R
from metagrad.io import atomic_write

ITER_SLEEP, SLOW_WRITE = float(os.environ["MG_ITER_SLEEP"]), float(os.environ["MG_SLOW_WRITE"])

def mark(what):
    sys.stderr.write("MGHOOK " + what + "\n")
    sys.stderr.flush()

def save_torch(path, obj):   # the same bytes as metagrad.io.save_torch, written in two halves
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    def write(f):
        f.write(data[:len(data) // 2])
        f.flush()
        mark("ckpt-writing")
        time.sleep(SLOW_WRITE)
        f.write(data[len(data) // 2:])
    atomic_write(path, write, binary=True)

C.save_torch = save_torch
_fit, _evaluate = R.fit, R.evaluate

def fit(module, stream, *args, **kwargs):
    draw = stream.next
    def next_():
        time.sleep(ITER_SLEEP)
        mark("iter")
        return draw()
    stream.next = next_
    return _fit(module, stream, *args, **kwargs)

def evaluate(*args, **kwargs):
    mark("eval")
    return _evaluate(*args, **kwargs)

R.fit, R.evaluate = fit, evaluate
from metagrad.cli import main
sys.exit(main())
"""


def _start(args):
    env = dict(_env(), MG_ITER_SLEEP="0.01", MG_SLOW_WRITE="0.4")
    p = subprocess.Popen([sys.executable, "-c", _HOOK, *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    err: list[str] = []

    def read():
        for ln in p.stderr:
            err.append(ln)
            if ln.startswith("MGHOOK "):
                lines.put(ln.split()[1])
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    return p, lines, err


def _kill_chain(out: Path, rng: random.Random, kills: int, ckpt_kills: set[int],
                starts: list) -> tuple[int, int]:
    """Train into ``out``, SIGKILLing ``kills`` processes (those numbered in ``ckpt_kills`` in the
    middle of their first or second checkpoint write, the others after a random number of
    iterations plus a random delay) and resuming after each, until the run finishes. Appends to
    ``starts`` the checkpoint iteration each process started from (None: none yet). Returns
    (kills done, kills during a write)."""
    fresh = ["train", "sine-maml-quick", "--out", str(out), "--threads", "1", "--no-progress", *set_args(KILL_SETS)]
    resume = ["train", "--resume", str(out), "--no-progress"]
    done = during_write = 0
    for attempt in range(4 * kills + 10):
        ck = out / "checkpoint.pt"
        starts.append(load_checkpoint(ck)["iteration"] if ck.exists() else None)
        p, events, err = _start(fresh if attempt == 0 else resume)
        if done < kills:
            target = "ckpt-writing" if done in ckpt_kills else "iter"
            count, delay = (rng.randint(1, 2), rng.uniform(0.0, 0.15)) if target == "ckpt-writing" else \
                (rng.randint(2, 16), rng.uniform(0.0, 0.03))
            seen = 0
            while True:
                ev = events.get(timeout=120)
                if ev is None:
                    break
                if ev == target or (ev == "eval" and target == "iter"):
                    seen += 1
                    if seen >= count or ev == "eval":
                        time.sleep(delay)
                        p.send_signal(signal.SIGKILL)
                        break
        rc = p.wait(timeout=120)
        if rc == -signal.SIGKILL:
            if done in ckpt_kills:
                # proof that the kill landed inside the write: its temporary file is still there
                assert list(out.glob(".checkpoint.pt.*.tmp")), "the kill missed the checkpoint write"
                during_write += 1
            done += 1
            continue
        assert rc == 0, "".join(err)
        if (out / "eval.json").exists():
            return done, during_write
    raise AssertionError("the run never finished")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted run (in this process: the same code and thread count as the children)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", "sine-maml-quick", "--out", str(out), "--threads", "1", "--no-progress",
                 *set_args(KILL_SETS)]) == 0
    torch.set_num_threads(1)
    return out


def _sigkill_test(tmp_path, reference_run, kills, ckpt_kills, seed):
    rng = random.Random(seed)
    total = writes = chains = 0
    starts: list = []
    while total < kills:   # a chain that finishes early is followed by another, until `kills` kills
        out = tmp_path / f"killed{chains}"
        n, w = _kill_chain(out, rng, kills - total, {k - total for k in ckpt_kills if k >= total}, starts)
        _assert_same_run(reference_run, out)
        total, writes, chains = total + n, writes + w, chains + 1
        assert n > 0 or chains < 3
    assert total == kills and writes == len(ckpt_kills)
    # some resume started from a checkpoint between two log lines (log_every=3): the partial
    # logging window came back from the checkpoint and later lines were dropped
    assert any(s is not None and s % 3 for s in starts), starts
    return starts


def test_sigkill_ten_times_and_resume_gives_the_uninterrupted_run(tmp_path, reference_run):
    """Issue 35's test: 10 SIGKILLs at random moments (two inside checkpoint writes), each followed by
    ``--resume``: every file equals the uninterrupted run's and no temporary file is left."""
    _sigkill_test(tmp_path, reference_run, kills=10, ckpt_kills={2, 6}, seed=1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_checkpoints_the_iteration_and_resume_gives_the_uninterrupted_run(tmp_path, reference_run, sig):
    """A scheduler's SIGTERM or a Ctrl-C in the middle of training: the iteration under way ends, the
    checkpoint is written (between two periodic ones), the command exits with 128 + signum naming the
    resume command, and the resumed run's files are the uninterrupted run's."""
    out = tmp_path / "run"
    p, events, err = _start(["train", "sine-maml-quick", "--out", str(out), "--threads", "1", "--no-progress",
                             *set_args(KILL_SETS)])
    seen = 0
    while seen < 9:   # past the checkpoint of iteration 7, before that of 14
        ev = events.get(timeout=120)
        assert ev is not None, "".join(err)
        seen += ev == "iter"
    p.send_signal(sig)
    rc = p.wait(timeout=120)
    text = "".join(err)
    m = re.search(rf"stopped by {sig.name} at iteration (\d+) of 40 \(checkpointed\); continue with: "
                  rf"metagrad train --resume {re.escape(str(out))}", text)
    assert rc == 128 + sig and m, (rc, text)
    assert int(m.group(1)) >= 9 and load_checkpoint(out / "checkpoint.pt")["iteration"] == int(m.group(1))
    assert not (out / "eval.json").exists() and not list(out.glob(".*.tmp"))
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    torch.set_num_threads(1)
    _assert_same_run(reference_run, out)


# --- determinism ---------------------------------------------------------------------------

def test_the_same_command_twice_gives_the_same_files(tmp_path):
    for name in ("a", "b"):
        assert main(["train", "sine-maml-quick", "--out", str(tmp_path / name), "--no-progress", *set_args(TINY)]) == 0
    _assert_same_run(tmp_path / "a", tmp_path / "b")


def test_resume_with_another_thread_count_warns(tmp_path):
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False, stop_after=4, threads=1)
    with warnings_none():
        train(out=run, resume=True, progress=False, stop_after=2, threads=1)   # same count: silent
    with pytest.warns(UserWarning, match="trained with 1 thread.*continues with 2.*identical per thread count"):
        train(out=run, resume=True, progress=False, stop_after=2, threads=2)
    rows = [json.loads(ln) for ln in (run / "resumes.jsonl").read_text().splitlines()]
    assert [(r["at_iteration"], r["threads"]) for r in rows] == [(0, 1), (4, 1), (6, 2)]


class warnings_none:
    """``with warnings_none(): ...`` fails if a warning is raised."""

    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)


# --- one writer per run folder -----------------------------------------------------------------

def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's modification time and bytes (but the lock file, which a writer that got the lock
    stamps with its process id)."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir()) if p.name != ".lock"}


def test_a_second_writer_fails_in_one_line_and_changes_nothing(tmp_path, capsys):
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False)
    holder = subprocess.Popen(   # another live process holds the lock, as a running `metagrad train` would
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(run / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nos.ftruncate(fd, 0)\nos.pwrite(fd, str(os.getpid()).encode(), 0)\n"
         "print('locked', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _snapshot(run)
        for args in (["train", "sine-maml-quick", "--out", str(run), "--overwrite", *set_args(TINY)],
                     ["train", "--resume", str(run), "--set", "outer.iterations=20"],
                     ["eval", str(run), "--no-progress"]):
            assert main(args) == 2, args
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and err.startswith("metagrad: error: ") and \
                f"is being written by another metagrad process (pid {holder.pid})" in err, err
        assert _snapshot(run) == before and (run / ".lock").read_text() == str(holder.pid)
        with pytest.raises(RunError):
            evaluate_run(run, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert main(["eval", str(run), "--no-progress"]) == 0      # the lock died with its holder


def test_train_into_a_folder_that_is_not_a_run_needs_overwrite(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert main(["train", "sine-maml-quick", "--out", str(folder), "--no-progress", *set_args(TINY)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is not empty (notes.txt...) and holds no run" in err and "--overwrite" in err
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == ["notes.txt"]
    assert main(["train", "sine-maml-quick", "--out", str(folder), "--no-progress", "--overwrite", *set_args(TINY)]) == 0
    assert (folder / "notes.txt").read_text() == "keep me" and (folder / "eval.json").is_file()
    # a finished run is not replaced by accident either
    assert main(["train", "sine-maml-quick", "--out", str(folder), "--no-progress", *set_args(TINY)]) == 2
    assert "already holds a run; use --resume" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "sine-maml-quick"], ["reproduce", "turtle-order", "--quick"]])
def test_an_output_folder_that_cannot_be_made_is_a_one_line_error_naming_it(tmp_path, capsys, argv):
    """Found by fuzzing the command line: ``--out`` under a file reached ``mkdir``'s traceback."""
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "run"
    assert main([*argv, "--out", str(out), "--no-progress" if argv[0] == "train" else "--jobs=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write the folder '{out}" in err and "Not a directory" in err, err
    assert "choose a folder you can write (--out)" in err and (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("argv, where", [(["train", "sine-maml-quick"], "train"),
                                         (["reproduce", "turtle-order", "--report"], "reproduce"),
                                         (["reproduce", "all", "--report"], "reproduce all")])
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, argv, where):
    (tmp_path / "afile").write_text("x")
    assert main([*argv, "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert err == f"metagrad: error: {where}: --out '{tmp_path / 'afile'}' is a file, not a folder; give a folder (made if missing)\n"
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_path):
    ref = train("sine-maml-quick", tmp_path / "ref", overrides=TINY, progress=False)
    run = tmp_path / "r"
    train("sine-maml-quick", run, overrides=TINY, progress=False, stop_after=3)
    (run / "checkpoint.pt").unlink()        # as if killed before it was written
    (run / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    with pytest.raises(RunError, match="holds a run stopped before its first checkpoint; use --resume"):
        train("sine-maml-quick", run, overrides=TINY, progress=False)
    with pytest.warns(UserWarning, match="has no checkpoint yet"):
        train(out=run, resume=True, progress=False)
    _assert_same_run(ref, run)


# --- damaged logs ------------------------------------------------------------------------------

def test_a_cut_last_metrics_line_is_repaired_on_resume(tmp_path):
    ref = train("sine-maml-quick", tmp_path / "ref", overrides=TINY, progress=False)
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False, stop_after=5)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 6, "lo')        # a write cut short by a crash or a full disk
    train(out=run, resume=True, progress=False)
    _assert_same_run(ref, run)


def test_a_malformed_middle_metrics_line_is_one_error_naming_the_file(tmp_path, capsys):
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False, stop_after=7)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    (run / "metrics.jsonl").write_text(lines[0] + "\n#garbage\n" + "\n".join(lines[1:]) + "\n")
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{str(run / 'metrics.jsonl')!r} line 2 is not a JSON record" in err, err
    assert _snapshot(run) == before                       # nothing was written, not even resumes.jsonl


# --- bad input and evaluation --------------------------------------------------------------------

@pytest.mark.parametrize("value", ["NaN", "Infinity", "-0.01", "0"])
def test_eval_refuses_a_bad_inner_lr_and_keeps_eval_json(tmp_path, capsys, value):
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False)
    before = _snapshot(run)
    assert main(["eval", str(run), "--set", f"inner.lr={value}", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "config: inner.lr" in err, err
    assert _snapshot(run) == before


@pytest.mark.parametrize("override, message", [
    ("model.hidden=[8]", "eval: model.net.0.weight was trained with shape (16, 1) but --set model.hidden=[8] builds it "
                         "with (8, 1); evaluate with settings that keep the model as trained (task.n_way, model.*)"),
    ("model.hidden=[16,16]", "eval: the model --set model.hidden=[16,16] builds has other tensors than the one trained "
                             "(6 against 4, e.g. model.net.4.bias); evaluate with settings"),
])
def test_eval_refuses_an_override_that_changes_the_model(tmp_path, capsys, override, message):
    """Before: torch's several-line ``load_state_dict`` size-mismatch ``RuntimeError`` (a traceback)."""
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False)
    before = _snapshot(run)
    assert main(["eval", str(run), "--set", override, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metagrad: error: " + message) and err.count("\n") == 1, err
    assert _snapshot(run) == before


def test_a_stacked_checkpoint_with_a_tensor_too_many_is_refused():
    """A population of one is stored as ``stacked.i``; an extra one was dropped by ``zip`` silently."""
    from metagrad.experiments.loading import _load_module
    import metagrad as mg
    algo = mg.MAML(mg.models.MLP([1, 4, 1]))
    state = {f"stacked.{i}": p.detach().unsqueeze(0) + 1 for i, p in enumerate(algo.parameters())}
    _load_module(algo, state)
    assert all(torch.equal(p, state[f"stacked.{i}"][0]) for i, p in enumerate(algo.parameters()))
    state[f"stacked.{len(state)}"] = torch.zeros(1, 3)
    with pytest.raises(RunError, match=r"has other tensors than the one trained \(4 against 5\)"):
        _load_module(algo, state)


def test_a_non_finite_evaluation_never_replaces_eval_json(tmp_path, monkeypatch):
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False)
    before = _snapshot(run)
    real = runner.evaluate

    def nan_eval(*a, **k):
        return {**real(*a, **k), "mean": float("nan")}
    monkeypatch.setattr(runner, "evaluate", nan_eval)
    with pytest.raises(DivergenceError, match="eval.json in .* is left as it was"):
        evaluate_run(run, progress=False)
    assert _snapshot(run) == before


# --- devices -------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", available_devices())
def test_train_on_each_device_and_load_its_checkpoint_on_the_cpu(tmp_path, capsys, device):
    out = tmp_path / "r"
    assert main(["train", "sine-maml-quick", "--out", str(out), "--device", device, "--no-progress", *set_args(TINY)]) == 0
    assert "mse" in capsys.readouterr().out
    ck = load_checkpoint(out / "checkpoint.pt")
    assert all(v.device.type == "cpu" for v in ck["module"].values())
    res = evaluate_run(out, progress=False, device="cpu")    # a run trained anywhere evaluates on a CPU
    assert math.isfinite(res["mean"])


def test_a_checkpoint_written_on_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    """Without a GPU: the checkpoint is saved with every storage tagged ``cuda:0`` (torch's own
    location tag, what a GPU run writes); a plain ``torch.load`` then fails on a CPU-only machine,
    ``load_checkpoint`` (``map_location="cpu"``) reads it and the run resumes and evaluates."""
    run = train("sine-maml-quick", tmp_path / "r", overrides=TINY, progress=False, stop_after=5)
    ck = load_checkpoint(run / "checkpoint.pt")
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(ck, run / "checkpoint.pt")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(run / "checkpoint.pt", weights_only=False)
    same_bits(load_checkpoint(run / "checkpoint.pt"), ck)
    train(out=run, resume=True, progress=False)
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 12 and (run / "eval.json").is_file()


def test_an_unavailable_device_is_a_one_line_error_naming_it(tmp_path):
    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    out = tmp_path / "r"
    p = subprocess.run([sys.executable, "-m", "metagrad", "train", "sine-maml-quick", "--device", missing,
                        "--out", str(out)], env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and \
        f"metagrad: error: device: '{missing}' is not available on this machine" in p.stderr
    assert not out.exists()                                  # nothing was written
    with pytest.raises(DeviceError):
        train("sine-maml-quick", out, device=missing, progress=False)


# --- which errors become one line ----------------------------------------------------------------

def test_user_errors_are_metagrad_errors_and_bugs_keep_their_traceback(tmp_path, monkeypatch, capsys):
    for cls in (ConfigError, RunError, DivergenceError, DeviceError):
        assert issubclass(cls, MetagradError)
    with pytest.raises(ConfigError):
        train("sine-maml-quick", tmp_path / "x", overrides=["inner.lr=nan"], progress=False)
    with pytest.raises(RunError):
        evaluate_run(tmp_path / "nowhere", progress=False)

    def bug(*a, **k):
        raise RuntimeError("a bug in metagrad")
    monkeypatch.setattr(runner, "train", bug)
    with pytest.raises(RuntimeError, match="a bug in metagrad"):     # not turned into "metagrad: error: ..."
        main(["train", "sine-maml-quick", "--out", str(tmp_path / "y")])
    assert "metagrad: error" not in capsys.readouterr().err
