"""Random command lines never reach a traceback (the standard: bad input gets one line).

Hypothesis draws ``metagrad train``, ``eval`` and ``runs`` command lines from options and values a
user might type, right or wrong: presets and config files (valid, malformed, missing, misspelt),
run folders (finished, empty, damaged checkpoints and JSON, without checkpoints, a file, a
missing path, a name with a line break), kept reproduction runs (good, damaged, missing), ``--set``
overrides, thread counts, devices, time limits, plot file names and TensorBoard options. Each must exit 0, or 2 with exactly one error line; any other exit or a
traceback is a bug. Fuzzing this way found ``runs --plot runs.txt`` reaching matplotlib's
``ValueError`` (now ``test_listing.py``); ``--out`` under a file, found by hand beside it, reached
``mkdir``'s ``NotADirectoryError`` (now ``test_reliability.py``; its path is drawn here too).
``slow``: every accepted ``train`` line trains a few iterations; ``derandomize`` keeps CI's
examples the same each run.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metagrad.cli import main

pytestmark = pytest.mark.slow
QUICK = ["--set", "outer.iterations=3", "--set", "eval.tasks=3", "--set", "eval.val_tasks=3"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A finished run and damaged copies of it, a file, an empty folder and two config files."""
    root = tmp_path_factory.mktemp("fuzz")
    assert main(["train", "sine-maml-quick", "--out", str(root / "good"), "--no-progress", *QUICK]) == 0
    (root / "empty").mkdir()
    (root / "afile").write_text("x")
    shutil.copytree(root / "good", root / "broken")
    for f in (root / "broken").iterdir():
        if f.suffix == ".pt":
            f.write_bytes(b"garbage")
        elif f.suffix == ".json":
            f.write_text("{not json")
    shutil.copytree(root / "good", root / "half")
    for f in (root / "half").glob("*.pt"):
        f.unlink()
    # a run a reproduction kept (004 Fig. 11's fo-MAML, sine: cheap to evaluate), a damaged one, a missing one
    shutil.copy(Path(__file__).resolve().parents[1] / "reproductions" / "turtle-order" / "cells" /
                "fo-MAML_T5_k5_s0.run.pt", root / "kept.run.pt")
    (root / "junk.run.pt").write_bytes(b"garbage")
    (root / "cfg.json").write_text(json.dumps({"name": "x", "task": {"name": "sine"}, "outer": {"iterations": 2}}))
    (root / "bad.json").write_text('{"task": [1, 2]}')
    return root


def _command_lines(root: Path) -> st.SearchStrategy[list[str]]:
    paths = [str(root / p) for p in ("good", "empty", "afile", "broken", "half", "nope", "a\nb", "afile/x")] + ["", "."]
    kept = [str(root / p) for p in ("kept.run.pt", "junk.run.pt", "missing.run.pt")]
    sets = st.sampled_from([
        "outer.iterations=2", "outer.iterations=0", "eval.tasks=-1", "task.k_shot=0", "task.k_shot=3", "inner.steps=2",
        "inner.lr=abc", "foo=1", "=", "x", "task.name=nope", "inner.mode=first_order", "inner.mode=bogus",
        "model.hidden=[]", "model.hidden=[0]", "model.hidden=[4]", "task.amplitude=[5,1]", "dtype=float16",
        "dtype=float64", "device=cuda", "threads=0", "eval.steps=3", "eval.every=1", "checkpoint_every=1"])
    one = st.sampled_from
    train = st.lists(st.one_of(
        st.tuples(st.just("--set"), sets), st.tuples(st.just("--threads"), one(["1", "0", "-1", "x"])),
        st.tuples(st.just("--device"), one(["cpu", "cuda", "mps", "tpu", "cuda:1", ""])),
        st.tuples(st.just("--time-limit"), one(["5", "0", "-1", "1m", "abc", "1e9", "nan", "inf"])),
        st.tuples(st.just("--out"), one(paths + [str(root / "new1"), str(root / "new2")])),
        st.tuples(st.just("--resume"), one(paths)), st.tuples(st.just("--overwrite")),
        st.tuples(st.just("--print-config")), st.tuples(st.just("--tensorboard"))), max_size=4)
    evaluate = st.lists(st.one_of(
        st.tuples(st.just("--set"), sets), st.tuples(st.just("--tasks"), one(["3", "0", "-2", "x"])),
        st.tuples(st.just("--steps"), one(["0", "2", "-1", "x"])), st.tuples(st.just("--state"), one(["best", "final"])),
        st.tuples(st.just("--device"), one(["cpu", "cuda", "bogus"])), st.tuples(st.just("--plot"))), max_size=4)
    runs = st.lists(st.one_of(st.tuples(one(paths)), st.tuples(
        st.just("--plot"), one([str(root / "p.png"), str(root / "p.txt"), str(root / "nope" / "p.png"), ""])),
        st.tuples(st.just("--tensorboard"), one([str(root / "tb"), str(root / "afile"), str(root / "afile" / "tb"), ""]))),
        max_size=3)
    configs = one(["sine-maml-quick", str(root / "cfg.json"), str(root / "bad.json"), "nope", str(root / "afile"),
                   "sine-maml-quik", ""])
    # the fixed options first, so that a drawn one (a later --tasks or --set) overrides them
    return st.one_of(
        st.tuples(st.just(["train"]), configs.map(lambda c: [c, "--no-progress", *QUICK]), train),
        st.tuples(st.just(["eval"]), one(paths + kept).map(lambda p: [p, "--no-progress", "--tasks", "3"]), evaluate),
        st.tuples(st.just(["runs"]), st.just([]), runs),
    ).map(lambda parts: [*parts[0], *parts[1], *[a for opt in parts[2] for a in opt]])


def test_random_command_lines_exit_0_or_2_with_one_error_line(root, monkeypatch) -> None:
    monkeypatch.chdir(root)   # "." and a run's default folder (runs/NAME-TIME) are made here, not in the checkout
    @settings(max_examples=150, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_command_lines(root))
    def check(argv: list[str]) -> None:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = main(argv)
            except SystemExit as e:   # argparse's own errors
                rc = e.code
        text = err.getvalue()
        assert rc in (0, 2) and "Traceback" not in text, (argv, rc, text[-2000:])
        if rc == 2:
            assert len([ln for ln in text.splitlines() if "error" in ln]) == 1, (argv, text)

    check()
