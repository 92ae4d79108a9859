"""Divergence (issue 35): a non-finite or exploded loss or optimiser state keeps the last good
checkpoint and fails in one line, or skips or freezes exactly the bad update (``nonfinite``), and a
resume with a lower rate continues the run."""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import pytest
import torch

import metagrad as mg
from metagrad import checkpoints
from metagrad.cli import main
from metagrad.errors import DivergenceError
from metagrad.experiments.runner import train
from metagrad.streams import Draw, SampledStream
from metagrad.training import fit, load_checkpoint
from run_checks import same_bits, set_args


def _record_lrs(monkeypatch, cls):
    used: list[float] = []
    step = cls.step

    def spy(self, *a, **k):
        used.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)
    monkeypatch.setattr(cls, "step", spy)
    return used


def test_divergence_keeps_the_good_checkpoint_and_resume_lowers_the_rate(tmp_path, capsys, monkeypatch):
    out = tmp_path / "div"
    written: list[bytes] = []
    save = checkpoints.save_torch

    def spy(path, obj):   # what each checkpoint write put on disk
        save(path, obj)
        written.append(Path(path).read_bytes())
    monkeypatch.setattr(checkpoints, "save_torch", spy)
    lrs = _record_lrs(monkeypatch, torch.optim.SGD)
    sets = ["outer.iterations=40", "outer.meta_batch=4", "eval.tasks=20", "log_every=3", "checkpoint_every=4"]
    rc = main(["train", "sine-maml-quick", "--out", str(out), "--no-progress",
               *set_args(sets + ["outer.optimizer=sgd", "outer.lr=0.3"])])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("metagrad: error: fit: ") and "\n" not in err, err
    m = re.search(r"at iteration (\d+); the checkpoint of iteration (\d+) is kept in '([^']+)'", err)
    assert m, err
    bad, kept = int(m[1]), int(m[2])
    assert Path(m[3]) == out / "checkpoint.pt" and 0 < kept < bad <= kept + 4
    assert "--resume" in err and "--set outer.lr=0.03" in err        # the fix, as a command
    assert set(lrs) == {0.3} and len(lrs) == bad - 1                  # the failing update was not applied
    # the good checkpoint survives, byte for byte as last written, and is finite
    assert (out / "checkpoint.pt").read_bytes() == written[-1]
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["iteration"] == kept
    assert all(torch.isfinite(v).all() for v in ck["module"].values())
    assert not (out / "eval.json").exists()
    before = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]

    lrs.clear()
    assert main(["train", "--resume", str(out), "--set", "outer.lr=0.001", "--no-progress"]) == 0
    assert lrs == [0.001] * (40 - kept)                                # every resumed step used the new rate
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["iteration"] == 40 and ck["optimizer"]["param_groups"][0]["lr"] == 0.001
    after = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in after] == list(range(3, 40, 3)) + [40]
    assert after[:kept // 3] == [r for r in before if r["iteration"] <= kept]
    last = json.loads((out / "resumes.jsonl").read_text().splitlines()[-1])
    assert last["at_iteration"] == kept and last["overrides"] == ["outer.lr=0.001"]
    assert json.loads((out / "config.json").read_text())["outer"]["lr"] == 0.001
    assert math.isfinite(json.loads((out / "eval.json").read_text())["mean"])
    # what defines the run cannot change on resume
    assert main(["train", "--resume", str(out), "--set", "outer.optimizer=adam"]) == 2
    assert "'outer.optimizer' defines the run" in capsys.readouterr().err


def test_an_exploded_but_finite_loss_stops_the_run(tmp_path):
    """Adam at outer.lr=1: the loss jumps to ~1e16 (finite) at iteration 2; the explode guard (a loss
    over 1e6 times its running level) stops the run and the checkpoint of iteration 1 is kept."""
    sets = ["outer.iterations=10", "outer.meta_batch=4", "eval.tasks=20", "checkpoint_every=1", "outer.lr=1.0"]
    with pytest.raises(DivergenceError, match=r"exploded to .* over 1e\+06 times its running level .* at iteration "
                                              r"2; the checkpoint of iteration 1 is kept"):
        train("sine-maml-quick", tmp_path / "r", overrides=sets, progress=False)
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["iteration"] == 1
    # without the guard the same run is only caught later, if at all; with skip it finishes
    run = train("sine-maml-quick", tmp_path / "s", overrides=sets + ["outer.nonfinite=skip"], progress=False)
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if "skipped" in ln]
    assert rows and rows[-1]["skipped"] >= 1


class _Poison(SampledStream):
    """A stream whose draws numbered in ``at`` (1-based) have a NaN target, or targets times 1e6."""

    def __init__(self, *args, at=(), how="nan", **kw):
        super().__init__(*args, **kw)
        self.at, self.how, self.n = set(at), how, 0

    def next(self) -> Draw:
        draw = super().next()
        self.n += 1
        if self.n not in self.at:
            return draw
        y = draw.batch.query_y.clone()
        if self.how == "nan":
            y[0, 0] = float("nan")
        else:
            y = y * 1e6
        # TaskBatch refuses non-finite data when built; a NaN that appears later (in the model, the
        # loss) is what fit guards against, so the poisoned batch skips that check
        batch = copy.copy(draw.batch)
        object.__setattr__(batch, "query_y", y)
        return Draw(batch)

    def state_dict(self):
        return {**super().state_dict(), "n": self.n}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.n = state["n"]


def _tiny(at=(), how="nan"):
    torch.manual_seed(0)
    algo = mg.MAML(mg.models.MLP([1, 8, 1]).double(), inner_lr=0.05)
    stream = _Poison(mg.tasks.Sinusoid(), 4, 0, dtype=torch.float64, at=at, how=how)
    return algo, stream, torch.optim.SGD(algo.parameters(), lr=0.01)


def _params(algo):
    return {k: v.detach().clone() for k, v in algo.named_parameters()}


@pytest.mark.parametrize("how", ["nan", "explode"])
def test_fit_raise_writes_nothing_after_the_last_checkpoint(tmp_path, how):
    algo, stream, opt = _tiny(at={7}, how=how)
    ck = tmp_path / "ck.pt"
    with pytest.raises(DivergenceError, match="at iteration 7; the checkpoint of iteration 4 is kept in"):
        fit(algo, stream, opt, 10, checkpoint=ck, checkpoint_every=4, metrics=tmp_path / "m.jsonl", log_every=1)
    assert load_checkpoint(ck)["iteration"] == 4
    assert [json.loads(ln)["iteration"] for ln in (tmp_path / "m.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


def test_fit_skip_skips_exactly_the_bad_update(tmp_path):
    algo, stream, opt = _tiny(at={3, 5})
    res = fit(algo, stream, opt, 8, nonfinite="skip", metrics=tmp_path / "m.jsonl", log_every=1)
    assert res.finished and res.stopped is None and res.skipped == [2] and res.nonfinite_at == [3]
    # the same draws with the rate set to 0 at iterations 3 and 5 (SGD: no update) give the same bits
    ref, clean, ref_opt = _tiny()
    fit(ref, clean, ref_opt, 8, schedule=lambda it, m, d: 0.0 if it + 1 in (3, 5) else 0.01)
    same_bits(_params(algo), _params(ref))
    rows = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r.get("skipped", 0) for r in rows] == [0, 0, 1, 1, 2, 2, 2, 2]
    assert [r["iteration"] for r in rows if math.isnan(r["loss"])] == [3, 5]


def test_fit_stop_keeps_the_last_good_state(tmp_path):
    algo, stream, opt = _tiny(at={4})
    res = fit(algo, stream, opt, 10, nonfinite="stop", checkpoint=tmp_path / "ck.pt", checkpoint_every=100)
    assert res.stopped == "nonfinite" and res.iteration == 4 and res.nonfinite_at == [4] and not res.finished
    ref, clean, ref_opt = _tiny()
    fit(ref, clean, ref_opt, 3)                 # three good updates, then the member froze
    same_bits(_params(algo), _params(ref))
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert ck["iteration"] == 4 and ck["fit"]["stopped"] == [True]
    same_bits(dict(ck["module"]), {k: v for k, v in ref.state_dict().items()})


class _Overflowing(torch.optim.Adam):
    """Adam whose second moment overflows to inf at its third step (finite loss and gradients)."""

    def step(self, closure=None):
        out = super().step(closure)
        state = next(iter(self.state.values()))
        if int(state["step"]) == 3:
            state["exp_avg_sq"].view(-1)[0] = float("inf")
        return out


def test_fit_refuses_to_checkpoint_a_non_finite_optimiser_state(tmp_path):
    algo, stream, _ = _tiny()
    written = []
    with pytest.raises(DivergenceError, match="optimiser state are not finite at iteration 4; the checkpoint of "
                                              "iteration 2 is kept"):
        fit(algo, stream, _Overflowing(algo.parameters(), lr=1e-3), 6, checkpoint=tmp_path / "ck.pt",
            checkpoint_every=2, on_record=written.append, log_every=1)
    assert load_checkpoint(tmp_path / "ck.pt")["iteration"] == 2


