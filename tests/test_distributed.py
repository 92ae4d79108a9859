"""Data parallelism under torchrun (gloo, CPU): two processes train exactly what one does.

The torchrun scenario (issue 34, "What it must show") is one test of two torchrun jobs, since
process start-up dominates: the first trains sine MAML in float64 with a global meta-batch of 8
for 20 iterations, and again stopped after 10; the second resumes that run with
``torchrun -m metagrad train --resume``. Both end with the parameters of a one-process run to
1e-6, and rank 0 alone writes: rank 1 runs under an audit hook that records every file it
opens for writing, renames or removes in the run folders. The other tests check the pieces in
one process.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from metagrad.batch import TaskBatch
from metagrad.distributed import World
from metagrad.errors import ConfigError
from metagrad.experiments import runner
from metagrad.experiments.building import check_world, make_module
from metagrad.streams import SampledStream
from metagrad.tasks import Sinusoid

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["dtype=float64", "outer.meta_batch=8", "outer.iterations=20", "log_every=5", "checkpoint_every=5",
            "eval.tasks=20", "eval.every=10", "eval.val_tasks=8"]
RUN_FILES = {".lock", "config.json", "metrics.jsonl", "timing.jsonl", "checkpoint.pt", "eval.json", "resumes.jsonl"}

# Run by torchrun: a whole run in argv[1], one stopped after 10 iterations in argv[2], one stopped by
# rank 1's deadline in argv[3]; rank 1 records what it writes in the first two run folders.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    outs = [os.path.realpath(a) for a in sys.argv[1:3]]
    writes = []
    if os.environ["RANK"] != "0":
        def hook(event, args):
            if event in ("open", "os.rename", "os.replace", "os.remove", "os.mkdir") and args and \\
                    isinstance(args[0], (str, bytes, os.PathLike)):
                path = os.path.realpath(os.fsdecode(args[0]))
                writing = event != "open" or (args[1] is not None and any(c in args[1] for c in "wax+")) or \\
                    (args[1] is None and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
                if writing and any(path == o or path.startswith(o + os.sep) for o in outs):
                    writes.append([event, path])
        sys.addaudithook(hook)
    from metagrad.experiments.runner import train
    train("sine-maml-quick", outs[0], overrides=sys.argv[4:], progress=False)
    train("sine-maml-quick", outs[1], overrides=sys.argv[4:], stop_after=10, progress=False, tensorboard=True)
    import time
    from metagrad.errors import TimeLimitReached
    try:   # rank 1 alone is past its deadline (rank 0 has none): the ranks still stop together
        train("sine-maml-quick", sys.argv[3], overrides=sys.argv[4:], progress=False,
              deadline=time.time() - 1 if os.environ["RANK"] == "1" else None)
    except TimeLimitReached as e:
        os.write(1, ("RANK " + os.environ["RANK"] + " STOPPED AT " + str(e.iteration) + "\\n").encode())
    import contextlib, signal
    import metagrad.training as T
    from metagrad.errors import Interrupted
    from metagrad.interrupts import StopRequest

    @contextlib.contextmanager
    def sigterm_before_the_first_iteration(signals):
        r = StopRequest()
        r.signum = signal.SIGTERM
        yield r
    if os.environ["RANK"] == "1":   # rank 1 alone was sent SIGTERM: the ranks stop together, for that reason
        T.stop_requests = sigterm_before_the_first_iteration
    try:
        train("sine-maml-quick", sys.argv[3] + "-signal", overrides=sys.argv[4:], progress=False)
    except Interrupted as e:
        os.write(1, ("RANK " + os.environ["RANK"] + " SIGNALLED AT " + str(e.iteration) + " BY " +
                     signal.Signals(e.signum).name + "\\n").encode())
    # one write(2) per rank: a pipe keeps writes under PIPE_BUF whole, print() may interleave the ranks
    os.write(1, ("RANK " + os.environ["RANK"] + " WRITES " + json.dumps(writes) + "\\n").encode())
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 ARGS`` (as ``python -m torch.distributed.run``, the same
    entry point) on a free local port, so that parallel test runs do not collide."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("METAGRAD_DEBUG", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def _module(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["module"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same_metrics(a: list[dict], b: list[dict]) -> None:
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b]     # once each: not written twice
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=1e-9, abs=1e-12), (ra, rb)


needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available in this build")


@needs_gloo
def test_torchrun_two_processes_equal_one(tmp_path):
    one = runner.train("sine-maml-quick", tmp_path / "one", overrides=SETTINGS, progress=False)
    two, res = tmp_path / "two", tmp_path / "res"
    (tmp_path / "script.py").write_text(SCRIPT)
    p = _torchrun([str(tmp_path / "script.py"), str(two), str(res), str(tmp_path / "late"), *SETTINGS], tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "RANK 0 STOPPED AT 1" in p.stdout and "RANK 1 STOPPED AT 1" in p.stdout, p.stdout
    assert "RANK 0 SIGNALLED AT 1 BY SIGTERM" in p.stdout and "RANK 1 SIGNALLED AT 1 BY SIGTERM" in p.stdout, p.stdout
    assert torch.load(tmp_path / "late-signal" / "checkpoint.pt", weights_only=False)["iteration"] == 1
    assert torch.load(tmp_path / "late" / "checkpoint.pt", weights_only=False)["iteration"] == 1
    assert "RANK 1 WRITES []" in p.stdout, p.stdout          # rank 1 wrote nothing in either run folder
    assert "RANK 0 WRITES []" in p.stdout

    # uninterrupted
    diff = _max_diff(_module(one), _module(two))
    print(f"max |theta_2proc - theta_1proc| = {diff:.3g}")
    assert diff <= 1e-6
    assert {f.name for f in two.iterdir()} == {f.name for f in one.iterdir()} == RUN_FILES
    _same_metrics(_metrics(two), _metrics(one))
    assert len((two / "resumes.jsonl").read_text().splitlines()) == 1
    assert json.loads((two / "eval.json").read_text())["mean"] == pytest.approx(
        json.loads((one / "eval.json").read_text())["mean"], rel=1e-9)

    # stopped after 10 iterations, then resumed under torchrun through the command line
    assert torch.load(res / "checkpoint.pt", weights_only=False)["iteration"] == 10
    assert not (res / "eval.json").exists()
    p = _torchrun(["-m", "metagrad", "train", "--resume", str(res), "--no-progress"], tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert p.stdout.count("run written to") == 1          # rank 0 alone reports
    diff = _max_diff(_module(one), _module(res))
    print(f"max |theta_2proc_resumed - theta_1proc| = {diff:.3g}")
    assert diff <= 1e-6
    assert {f.name for f in res.iterdir()} == RUN_FILES | {"tensorboard"}   # rank 0's events, resumed too
    _same_metrics(_metrics(res), _metrics(one))
    _events_are_the_metrics(res)
    assert [r["at_iteration"] for r in map(json.loads, (res / "resumes.jsonl").read_text().splitlines())] == [0, 10]
    assert json.loads((res / "eval.json").read_text())["mean"] == pytest.approx(
        json.loads((one / "eval.json").read_text())["mean"], rel=1e-9)


def _events_are_the_metrics(run: Path) -> None:
    """The run's TensorBoard events hold exactly its metrics.jsonl (float32), each step once."""
    from metagrad.tensorboard_log import scalars
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    want: dict = {}
    for rec in _metrics(run):
        for tag, v in scalars(rec).items():
            want.setdefault(tag, []).append((rec["iteration"], v))
    got = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    assert sorted(got) == sorted(want)
    for t in want:
        assert [s for s, _ in got[t]] == [s for s, _ in want[t]], t
        assert [v for _, v in got[t]] == pytest.approx([v for _, v in want[t]], rel=1e-6), t


def test_shards_union_is_the_meta_batch():
    task = Sinusoid(k_shot=5, k_query=5)
    whole = SampledStream(task, 8, seed=3, beta=True).next()
    parts = [SampledStream(task, 8, seed=3, beta=True, world=World(r, 2)).next() for r in range(2)]
    union = TaskBatch.cat([d.batch for d in parts])
    assert torch.equal(union.support_x, whole.batch.support_x) and torch.equal(union.query_y, whole.batch.query_y)
    for d in parts:   # 002's D_beta sets one step size for the whole update: every rank keeps all of it
        assert torch.equal(d.beta.support_x, whole.beta.support_x)


def test_world_refuses_before_training():
    cfg = runner.resolve_config("sine-maml-quick", ["outer.meta_batch=9"])
    with pytest.raises(ConfigError, match="meta-batch of 9 tasks does not split evenly over 2 processes"):
        check_world(cfg, World(0, 2))
    check_world(cfg, World())
    ok = runner.resolve_config("sine-maml-quick", ["outer.meta_batch=8"])
    with pytest.raises(ConfigError, match="Population"):
        make_module(ok, [0, 1], World(1, 2))
    with pytest.raises(ConfigError, match="Population"):
        check_world(ok.override(["outer.clip_scope=init_per_task", "outer.clip_value=1.0"]), World(0, 2))


def test_rank_rng_draws_per_rank_and_keeps_the_shared_state():
    torch.manual_seed(0)
    with World().rank_rng():
        single = torch.rand(3)
    after = []
    draws = []
    for r in range(2):
        torch.manual_seed(0)
        with World(r, 2).rank_rng():
            draws.append(torch.rand(3))
        after.append(torch.get_rng_state())
    assert torch.equal(after[0], after[1])                 # the shared RNG advanced alike on every rank
    assert not torch.equal(draws[0], draws[1])             # but each rank's noise is its own
    torch.manual_seed(0)
    assert torch.equal(single, torch.rand(3))              # one process: the global RNG as it is
