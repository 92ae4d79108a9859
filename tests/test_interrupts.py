"""SIGINT and SIGTERM during training (``metagrad.interrupts``): the iteration under way finishes,
the checkpoint is written, and the run resumes exactly; a second Ctrl-C stops at once; handlers are
restored and can be left alone. The real-process test (``metagrad train`` sent SIGTERM / SIGINT,
then resumed to the uninterrupted run's files) is in ``test_reliability.py``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

import metagrad as mg
from metagrad.errors import Interrupted
from metagrad.experiments import jobs
from metagrad.interrupts import stop_requests
from metagrad.streams import Draw, SampledStream
from metagrad.training import fit, load_checkpoint


class _Signals(SampledStream):
    """A sine stream that sends this process ``signals`` (in order) as it draws iteration ``at``."""

    def __init__(self, *args, at: int, signals, **kw) -> None:
        super().__init__(*args, **kw)
        self.at, self.signals, self.n = at, list(signals), 0

    def next(self) -> Draw:
        self.n += 1
        if self.n == self.at:
            for s in self.signals:
                os.kill(os.getpid(), s)
        return super().next()


def _setup(at: int, signals, seed: int = 0):
    torch.manual_seed(seed)
    algo = mg.MAML(mg.models.MLP([1, 8, 1]).double(), inner_lr=0.05)
    stream = _Signals(mg.tasks.Sinusoid(), 4, 0, dtype=torch.float64, at=at, signals=signals)
    return algo, stream, torch.optim.Adam(algo.parameters(), lr=0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_iteration_checkpoints_and_the_resumed_run_is_the_uninterrupted_one(tmp_path, sig, capsys):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    algo, stream, opt = _setup(at=5, signals=[sig])
    res = fit(algo, stream, opt, 12, checkpoint=tmp_path / "ck.pt", checkpoint_every=100,
              metrics=tmp_path / "m.jsonl", log_every=2)
    assert (res.stopped, res.signum, res.iteration) == ("signal", sig, 5)
    assert load_checkpoint(tmp_path / "ck.pt")["iteration"] == 5
    assert f"{sig.name} received: stopping after this iteration" in capsys.readouterr().err
    assert {s: signal.getsignal(s) for s in before} == before   # handlers put back
    algo, stream, opt = _setup(at=-1, signals=[])
    res = fit(algo, stream, opt, 12, checkpoint=tmp_path / "ck.pt", checkpoint_every=100,
              metrics=tmp_path / "m.jsonl", log_every=2)
    assert res.stopped is None and res.iteration == 12
    ref, ref_stream, ref_opt = _setup(at=-1, signals=[])
    fit(ref, ref_stream, ref_opt, 12, metrics=tmp_path / "ref.jsonl", log_every=2)
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), algo.parameters()))
    assert (tmp_path / "ref.jsonl").read_text() == (tmp_path / "m.jsonl").read_text()


def test_a_second_ctrl_c_stops_at_once_and_the_last_checkpoint_is_kept(tmp_path):
    algo, stream, opt = _setup(at=6, signals=[signal.SIGINT, signal.SIGINT])
    with pytest.raises(KeyboardInterrupt):
        fit(algo, stream, opt, 12, checkpoint=tmp_path / "ck.pt", checkpoint_every=4)
    assert load_checkpoint(tmp_path / "ck.pt")["iteration"] == 4


def test_repeated_sigterms_are_one_request():
    with stop_requests() as req:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
    assert req.signum == signal.SIGTERM


def test_handlers_are_left_alone_when_asked_and_outside_the_main_thread(tmp_path):
    got = []
    old = signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    try:
        algo, stream, opt = _setup(at=3, signals=[signal.SIGTERM])
        res = fit(algo, stream, opt, 6, stop_on_signals=False)
        assert res.stopped is None and res.iteration == 6 and got == [signal.SIGTERM]
        seen = []
        t = threading.Thread(target=lambda: seen.append(stop_requests().__enter__().requested))
        t.start(), t.join()
        assert seen == [False] and signal.getsignal(signal.SIGTERM) is not None
    finally:
        signal.signal(signal.SIGTERM, old)


def test_reproduce_jobs_pass_sigterm_on_to_the_cells_in_training(tmp_path, monkeypatch):
    """``reproduce --jobs``: a SIGTERM to the parent reaches each cell process (each would checkpoint),
    no further cell starts, and the parent stops with ``Interrupted``."""
    child = ("import signal, sys, time, pathlib\n"
             "p = pathlib.Path(sys.argv[1])\n"
             "signal.signal(signal.SIGTERM, lambda s, f: (p.write_text('SIGTERM'), sys.exit(143)))\n"
             "p.write_text('up')\n"
             "time.sleep(60)\n")
    started, real_popen = [], subprocess.Popen

    def popen(cmd):
        f = tmp_path / f"cell{len(started)}"
        started.append(f)
        return real_popen([sys.executable, "-c", child, str(f)])
    monkeypatch.setattr(jobs.subprocess, "Popen", popen)

    class Spec:
        name, options = "x", {}

    class Cell:
        def __init__(self, i):
            self.id = str(i)

    def kill_when_up():
        while len(started) < 2 or not all(f.exists() for f in started):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=kill_when_up, daemon=True).start()
    with pytest.raises(Interrupted, match="reproduce x: stopped by SIGTERM .*continue with: the same command"):
        jobs.run_jobs(Spec(), tmp_path, [Cell(i) for i in range(4)], 2, False, 1, [], None, {})
    assert len(started) == 2 and [f.read_text() for f in started] == ["SIGTERM", "SIGTERM"]
