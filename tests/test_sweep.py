"""The sweep runner: caching, --only, --only-seeds, the equal-runs rule, partial results, verdicts,
--jobs and the per-experiment --help. Tiny settings: a few meta-iterations of 001's sine MAML."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from metagrad import cli
from metagrad.errors import ConfigError
from metagrad.experiments import sweep
from metagrad.experiments.presets_geometry import sine001
from metagrad.experiments.sweep import Cell, Row, Spec, report, run, verdict

TINY = ["outer.iterations=10", "outer.meta_batch=5", "eval.tasks=10"]
QUIET = {"log": lambda m: None}


def _cells(opts):
    return [Cell("a", sine001("MAML", 0.01), labels={"model": "a"}),
            Cell("b", sine001("MAML", 0.1), labels={"model": "b"})]


def _rows(opts):   # a's paper number far above ours (better), b's far below (worse)
    return [Row("a", {"lr": 0.01}, "a", paper=100.0, paper_ci95=1.0), Row("b", {"lr": 0.1}, "b", paper=1e-4)]


SPEC = Spec("tiny", "a tiny sweep", _cells, _rows, seeds=2, quick=TINY, options={"flavour": "plain"},
            claims=lambda rows: {"rows": len(rows)})


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _summaries(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "cells").glob("*.json"))


def _boom(*a, **k):
    raise AssertionError("train_runs called: the cached runs were not reused")


def test_rerun_trains_nothing_and_a_changed_config_does(tmp_path, monkeypatch):
    rows = run(SPEC, tmp_path, quick=True, seeds=2, **QUIET)
    assert _summaries(tmp_path) == ["a_s0.json", "a_s1.json", "b_s0.json", "b_s1.json"]
    assert [r["vs_paper"] for r in rows] == ["better", "worse"] and all(r["runs_used"] == 2 for r in rows)
    monkeypatch.setattr(sweep, "train_runs", _boom)
    assert run(SPEC, tmp_path, quick=True, seeds=2, **QUIET) == rows
    assert report(SPEC, tmp_path, quick=True, seeds=2) == rows
    with pytest.raises(AssertionError, match="not reused"):   # runs made under another config never mix in
        run(SPEC, tmp_path, quick=True, seeds=2, overrides=["inner.lr=0.05"], **QUIET)


def test_only_filters_cells_and_results_stay_partial_until_every_cell_is_done(tmp_path):
    rows = run(SPEC, tmp_path, quick=True, seeds=1, only=["model=a"], **QUIET)
    assert [r["model"] for r in rows] == ["a"] and _summaries(tmp_path) == ["a_s0.json"]
    # the table written is the whole one (b missing), never the selection alone: a run with --only
    # must not overwrite a committed table's other rows
    data = _results(tmp_path)
    assert data["partial"] is True and data["missing"] == ["b (0 of 1 runs)"] and data["claims"] == {}
    assert "PARTIAL" in (tmp_path / "table.md").read_text()
    run(SPEC, tmp_path, quick=True, seeds=1, only=["model=b,c"], **QUIET)
    data = _results(tmp_path)
    assert data["partial"] is False and data["missing"] == [] and data["claims"] == {"rows": 2}
    assert "\n## Claims checked\n\n- rows: 2\n" in (tmp_path / "table.md").read_text()
    with pytest.raises(Exception, match=r"no cell matches --only model=c; the cells' labels: model=a,b"):
        sweep.select(_cells({}), ["model=c"])   # a typo must not train nothing in silence
    with pytest.raises(Exception, match=r"no cell matches --only modle=a \(did you mean 'model'\?\)"):
        sweep.select(_cells({}), ["modle=a"])
    with pytest.raises(Exception, match=r"--only model=A \(did you mean 'a'\?\); the cells' labels: model=a,b"):
        sweep.select(_cells({}), ["model=A"])   # a value that differs in case alone
    with pytest.raises(Exception, match="key=value"):
        sweep.select(_cells({}), ["model"])


def test_only_seeds_split_a_cell_and_the_report_tabulates_all(tmp_path):
    run(SPEC, tmp_path, quick=True, seeds=2, only=["model=a"], only_seeds=[0], **QUIET)
    report(SPEC, tmp_path, quick=True, seeds=2)
    data = _results(tmp_path)
    assert data["partial"] and "a (1 of 2 runs)" in data["missing"] and data["rows"][0]["runs_used"] == 1
    run(SPEC, tmp_path, quick=True, seeds=2, only=["model=a"], only_seeds=[1], **QUIET)
    rows = report(SPEC, tmp_path, quick=True, seeds=2)
    assert rows[0]["runs_used"] == 2 and rows[0]["seeds"] == [0, 1] and rows[0]["runs"] == "2 of 2"
    assert _results(tmp_path)["missing"] == ["b (0 of 2 runs)"]


def test_a_cell_id_that_is_not_selected_is_refused(tmp_path):
    """``--cell`` (what ``--jobs`` hands its worker processes) naming no cell trained nothing, silently."""
    with pytest.raises(ConfigError, match=r"^reproduce: no cell 'c' among the selected ones \(a\)$"):
        run(SPEC, tmp_path, quick=True, only=["model=a"], cell_id="c", **QUIET)
    assert not (tmp_path / "cells").exists()


def test_an_extra_seed_goes_into_the_all_runs_column_not_the_verdict(tmp_path):
    before = run(SPEC, tmp_path, quick=True, seeds=2, **QUIET)
    run(SPEC, tmp_path, quick=True, seeds=2, only=["model=a"], only_seeds=[2], **QUIET)   # seed 2 of a only
    after = report(SPEC, tmp_path, quick=True, seeds=2)
    a, b = after
    assert a["runs_used"] == 2 and a["seeds"] == [0, 1] and a["all_runs"]["n"] == 3
    assert (a["mean"], a["ci95"], a["vs_paper"]) == (before[0]["mean"], before[0]["ci95"], before[0]["vs_paper"])
    assert b == before[1] and "all_runs" not in b
    table = (tmp_path / "table.md").read_text()
    assert "all runs (sensitivity, not in the verdict)" in table and "(3 runs)" in table
    assert "Runs per row: 2, fixed in advance for every row." in table


def test_verdict_from_intervals():
    assert verdict(0.50, 0.02, 0.60, 0.05) == "better"      # our interval wholly below the paper's (a loss)
    assert verdict(0.70, 0.02, 0.60, 0.05) == "worse"
    assert verdict(0.62, 0.02, 0.60, 0.05) == "within"      # overlapping intervals
    assert verdict(0.58, 0.03, 0.60, None) == "within"      # the paper's number inside ours
    assert verdict(0.58, 0.01, 0.60, None) == "better"      # no rounding of 0.58 to 0.6
    assert verdict(0.99, 0.002, 0.95, 0.01, higher_is_better=True) == "better"   # accuracy
    assert verdict(0.90, 0.002, 0.95, 0.01, higher_is_better=True) == "worse"
    assert verdict(0.951, 0.002, 0.95, 0.01, higher_is_better=True) == "within"
    assert verdict(float("nan"), None, 0.6, 0.05) == "diverged"


def test_jobs_2_runs_cells_as_processes_with_the_results_of_jobs_1(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                      os.environ.get("PYTHONPATH", "")]))
    started = []
    from metagrad.experiments import jobs
    popen = jobs.subprocess.Popen
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda cmd, **k: started.append(cmd) or popen(cmd, **k))
    args = ["reproduce", "mtnet-table2", "--quick", "--only", "model=MAML", "--only", "inner_lr=0.1,0.01",
            *[a for t in TINY for a in ("--set", t)]]
    assert cli.main([*args, "--out", str(tmp_path / "j2"), "--jobs", "2"]) == 0
    assert len(started) == 2 and {c[c.index("--cell") + 1] for c in started} == {"MAML-lr0.1", "MAML-lr0.01"}
    assert cli.main([*args, "--out", str(tmp_path / "j1")]) == 0
    j1, j2 = (_results(tmp_path / d)["rows"] for d in ("j1", "j2"))
    assert len(j1) == 2 and [(r["mean"], r["ci95"]) for r in j1] == [(r["mean"], r["ci95"]) for r in j2]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_reproduce_help_without_a_name_describes_every_experiment(flag, capsys):
    from metagrad.experiments import specs
    assert cli.main(["reproduce", flag]) == 0
    text = capsys.readouterr().out
    assert "metagrad reproduce NAME --help" in text
    assert all(name in text for name in specs.SPECS) and specs.get("omniglot-table3").description in text


def test_reproduce_help_lists_the_experiment_options(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "mtnet-table2", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--quick", "--seeds", "--only", "--only-seeds", "--set", "--jobs", "--report", "--out"):
        assert opt in text
    assert "001 Table 2" in text
    assert "--flavour" in cli._reproduce_parser(SPEC).format_help()   # a spec's own options too


def test_seeds_trained_one_at_a_time_keep_their_summaries_when_a_later_seed_is_cut_off(tmp_path, monkeypatch):
    """A cell whose seeds train one at a time (HF-MAML's ``separate``, the oracle, SNAIL) writes each
    seed's summary as soon as it is made, with a checkpoint per seed that does not depend on which
    seeds were left: a run cut off in its last seed keeps the ones before and resumes that seed."""
    spec = Spec("sep", "one at a time", lambda o: [Cell("a", sine001("MAML", 0.01), labels={"model": "a"},
                                                        separate=True)],
                lambda o: [Row("a", {}, "a")], seeds=2, quick=TINY)
    real, calls = sweep.train_runs, []

    def cut_at_seed_1(cfg, seeds, *a, checkpoint=None, **k):
        calls.append((list(seeds), checkpoint.name))
        if seeds == [1] and len(calls) == 2:
            raise KeyboardInterrupt   # the session ends
        return real(cfg, seeds, *a, checkpoint=checkpoint, **k)
    monkeypatch.setattr(sweep, "train_runs", cut_at_seed_1)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path, quick=True, seeds=2, **QUIET)
    assert _summaries(tmp_path) == ["a_s0.json"]
    run(spec, tmp_path, quick=True, seeds=2, **QUIET)
    assert calls == [([0], "a_s0.partial.pt"), ([1], "a_s1.partial.pt"), ([1], "a_s1.partial.pt")]
    assert _summaries(tmp_path) == ["a_s0.json", "a_s1.json"]
    assert not list((tmp_path / "cells").glob("*.partial.pt"))


def _with_evals(name: str, evals: dict, ids: dict[str, str], reuse: tuple = ()) -> Spec:
    """SPEC's cells renamed by ``ids`` with evaluations ``evals``, as another record would define them."""
    def cells(opts):
        return [Cell(ids[c.id], c.config, evals, labels=c.labels) for c in _cells(opts)]

    def rows(opts):
        return [Row(r.model, r.setting, ids[r.cell], e) for r in _rows(opts) for e in evals]
    return Spec(name, "tiny, more evaluations", cells, rows, seeds=2, quick=TINY, reuse=reuse)


def test_an_evaluation_added_later_is_tested_from_the_kept_run_not_trained(tmp_path, monkeypatch):
    rows = run(SPEC, tmp_path / "tiny", quick=True, seeds=2, **QUIET)
    assert sorted(p.name for p in (tmp_path / "tiny" / "cells").glob("*.run.pt")) == \
        ["a_s0.run.pt", "a_s1.run.pt", "b_s0.run.pt", "b_s1.run.pt"]
    monkeypatch.setattr(sweep, "train_runs", _boom)
    more = _with_evals("tiny", {"test": [], "steps3": ["eval.steps=3"]}, {"a": "a", "b": "b"})
    rows2 = run(more, tmp_path / "tiny", quick=True, seeds=2, **QUIET)
    assert [r["mean"] for r in rows2[::2]] == [r["mean"] for r in rows]   # the summary's own numbers kept
    steps3 = json.loads((tmp_path / "tiny" / "cells" / "a_s0.json").read_text())["evals"]["steps3"]
    assert steps3["n_tasks"] == 10 and steps3["mean"] == steps3["mean"]
    (tmp_path / "tiny" / "cells" / "b_s1.run.pt").unlink()   # no kept run: the missing evaluation needs training
    even_more = _with_evals("tiny", {"test": [], "steps2": ["eval.steps=2"]}, {"a": "a", "b": "b"})
    with pytest.raises(AssertionError, match="not reused"):
        run(even_more, tmp_path / "tiny", quick=True, seeds=2, **QUIET)


def test_a_record_named_in_reuse_lends_the_runs_kept_under_the_same_config(tmp_path, monkeypatch):
    rows = run(SPEC, tmp_path / "tiny", quick=True, seeds=2, **QUIET)
    monkeypatch.setattr(sweep, "train_runs", _boom)
    other = _with_evals("other", {"test": [], "steps3": ["eval.steps=3"]}, {"a": "x", "b": "y"}, reuse=("tiny",))
    with pytest.raises(AssertionError, match="not reused"):   # only the records a spec names
        run(_with_evals("other", {"test": []}, {"a": "x", "b": "y"}), tmp_path / "other", quick=True, seeds=2, **QUIET)
    rows2 = run(other, tmp_path / "other", quick=True, seeds=2, **QUIET)
    assert [r["mean"] for r in rows2[::2]] == [r["mean"] for r in rows]   # the same runs (rows: test, steps3 per cell)
    summary = json.loads((tmp_path / "other" / "cells" / "x_s1.json").read_text())
    assert summary["train"]["kept_run"].endswith("a_s1.run.pt") and not list((tmp_path / "other" / "cells").glob("*.pt"))
    with pytest.raises(AssertionError, match="not reused"):   # another config is never matched
        run(other, tmp_path / "other2", quick=True, seeds=2, overrides=["inner.lr=0.05"], **QUIET)


def test_a_record_named_in_reuse_lends_its_finished_summaries_without_kept_runs(tmp_path, monkeypatch):
    # 004 Fig. 11's so-MAML cells are Table 6's runs: a clean checkout has their summaries, no weights
    rows = run(SPEC, tmp_path / "tiny", quick=True, seeds=2, **QUIET)
    for kept in (tmp_path / "tiny" / "cells").glob("*.run.pt"):
        kept.unlink()
    monkeypatch.setattr(sweep, "train_runs", _boom)
    same = _with_evals("other", {"test": []}, {"a": "x", "b": "y"}, reuse=("tiny",))
    assert [r["mean"] for r in run(same, tmp_path / "other", quick=True, seeds=2, **QUIET)] == [r["mean"] for r in rows]
    taken = json.loads((tmp_path / "other" / "cells" / "x_s1.json").read_text())
    assert taken["taken_from"] == "tiny/cells/a_s1.json" and taken["cell"] == "x" and taken["trainer"] == "meta"
    more = _with_evals("more", {"test": [], "steps3": ["eval.steps=3"]}, {"a": "x", "b": "y"}, reuse=("tiny",))
    with pytest.raises(AssertionError, match="not reused"):   # an evaluation the summary lacks needs the run
        run(more, tmp_path / "more", quick=True, seeds=2, **QUIET)


def test_a_baseline_with_a_meta_learners_config_is_never_taken_for_it(tmp_path):
    # 004's Finetuning cell has so-MAML T=1's config: only the trainer tells the runs apart
    from metagrad.experiments.kept_runs import find_summary, trainer_of
    run(SPEC, tmp_path / "tiny", quick=True, seeds=1, only=["model=a"], **QUIET)
    path = tmp_path / "tiny" / "cells" / "a_s0.json"
    d = json.loads(path.read_text())
    assert trainer_of(d) == "meta"
    args = ([tmp_path / "tiny"], d["config"], 0, d["schema"], sweep._NOT_IDENTITY, lambda d: True)
    assert find_summary(*args) is not None and find_summary(*args, trainer="Finetuning") is None
    for legacy in ({"labels": {"model": "Finetuning"}}, {"trainer": "Finetuning"}):   # older summaries: the label
        old = {k: v for k, v in d.items() if k != "trainer"} | legacy
        path.write_text(json.dumps(old))
        assert trainer_of(old) == "Finetuning" and find_summary(*args) is None
        assert find_summary(*args, trainer="Finetuning") is not None


def test_a_time_limit_stops_the_sweep_with_a_partial_table_and_the_same_command_continues(tmp_path, monkeypatch):
    import time
    run(SPEC, tmp_path, quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"],
        deadline=time.time() - 1, **QUIET)   # past it at once: one iteration, checkpointed; b never starts
    # the progress, copied from the checkpoint (not in git) to a few committed bytes
    assert sorted(p.name for p in (tmp_path / "cells").iterdir() if not p.name.startswith(".")) == \
        ["a_s0.partial.pt", "a_s0.progress.json"]
    data = _results(tmp_path)
    assert data["partial"] and data["missing"] == ["a (0 of 1 runs; training s0: iteration 1 of 30)",
                                                   "b (0 of 1 runs)"]
    table = (tmp_path / "table.md").read_text()
    assert "| 0 of 1 | training s0: iteration 1 of 30 |" in table
    part = tmp_path / "cells" / "a_s0.partial.pt"
    run(SPEC, tmp_path, quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"], report_only=True,
        **QUIET)
    assert (tmp_path / "table.md").read_text() == table   # the report rebuilds the same table
    part.rename(tmp_path / "kept.pt")   # the resume point lost (it is committed with a record): said, not hidden
    run(SPEC, tmp_path, quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"], report_only=True,
        **QUIET)
    assert "| training s0: reached iteration 1 of 30, but its checkpoint is not here: it trains again from the start |" \
        in (tmp_path / "table.md").read_text()
    (tmp_path / "kept.pt").rename(part)
    import torch
    ck = torch.load(part, weights_only=False)
    assert 0 < ck["timing"]["wall_seconds"] < 1000
    ck["timing"]["wall_seconds"] = 1000.0   # as if the first part had taken 1000 s: the summary counts it
    torch.save(ck, part)
    rows = run(SPEC, tmp_path, quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"], **QUIET)
    assert rows[0]["runs_used"] == 1 and not list((tmp_path / "cells").glob("*.partial.pt"))
    summary = json.loads((tmp_path / "cells" / "a_s0.json").read_text())
    assert 1000 < summary["train"]["seconds"] < 1100
    # each evaluation's time too (000's fine-tuning evaluations take longer than some training)
    assert all(0 < ev["seconds"] < 100 for ev in summary["evals"].values()) and summary["evals"]
    assert not list((tmp_path / "cells").glob("*.progress.json"))


def test_a_run_in_training_says_how_long_it_has_left_at_its_pace():
    from metagrad.experiments.progress import time_left as _left
    assert _left({"iteration": 20000, "iterations": 60000, "seconds": 3600}) == ", about 2.0 h left at its pace so far"
    assert _left({"iteration": 50000, "iterations": 60000, "seconds": 3600}) == ", about 12 min left at its pace so far"
    assert _left({"iteration": 100, "iterations": 60000}) == ""          # a progress file from before the field
    assert _left({"iteration": 0, "iterations": 60000, "seconds": 5}) == ""
    # the latest stretch's pace where it is ten minutes or longer: 10,000 iterations in 3,600 s, slower
    # than the whole run's (30,000 in 5,400 s: 1.5 h left)
    later = {"iteration": 30000, "iterations": 60000, "seconds": 5400, "since": [20000, 1800]}
    assert _left(later) == ", about 3.0 h left at its pace since iteration 20000"
    assert _left({**later, "since": [29990, 5300]}) == ", about 1.5 h left at its pace so far"   # 100 s: too short


def test_a_progress_file_keeps_where_its_latest_stretch_began(tmp_path):
    import torch
    from metagrad.experiments.progress import _refresh, progress_file
    part = tmp_path / "a_s0.partial.pt"

    def checkpoint(it: int, secs: float) -> dict:
        torch.save({"iteration": it, "fit": {"curves": [[(it, 0.5)]]}, "timing": {"train_seconds": secs}}, part)
        _refresh(part, 60000)
        return json.loads(progress_file(part).read_text())

    assert "since" not in checkpoint(1000, 3600.0)
    assert checkpoint(3000, 5400.0)["since"] == [1000, 3600]
    assert checkpoint(3000, 5400.0)["since"] == [1000, 3600]   # the same checkpoint reported again: kept
    assert checkpoint(4000, 6000.0)["since"] == [3000, 5400]
    assert checkpoint(4100, 6100.0)["since"] == [4000, 6000]   # reported 100 s later: the stretch starts there...
    assert checkpoint(4200, 6200.0)["since"] == [4000, 6000]   # ...and grows while it is under ten minutes
    assert checkpoint(6000, 7000.0)["since"] == [4000, 6000]
    assert checkpoint(7000, 7500.0)["since"] == [6000, 7000]
    assert "since" not in checkpoint(500, 100.0)               # trained again from the start


def test_plan_lists_each_cell_with_its_labels_what_it_trains_and_its_runs(tmp_path, capsys):
    run(SPEC, tmp_path, quick=True, seeds=1, only=["model=a"], **QUIET)
    plan = sweep.plan(SPEC, tmp_path, quick=True, seeds=1)
    assert [(c["cell"], c["labels"], c["done"], c["runs"]) for c in plan] == [("a", {"model": "a"}, 1, 1),
                                                                             ("b", {"model": "b"}, 0, 1)]
    assert plan[1]["trains"].startswith("maml: sgd, 1 step of 0.1, second order | mlp | sine 10-shot")
    assert cli.main(["reproduce", "turtle-order", "--out", str(tmp_path / "o"), "--list", "--only", "steps=5"]) == 0
    out = capsys.readouterr().out
    assert "fo-TURTLE-raw_T5_k5  [model=fo-TURTLE-raw steps=5 k_shot=5]  0 of 5 runs done" in out
    assert "maml: turtle, 5 steps, first order | mlp | sine 5-shot" in out and "T1" not in out
    assert not (tmp_path / "o").exists()   # --list trains and writes nothing


def test_a_run_in_training_in_a_reused_record_is_waited_for_not_trained_twice(tmp_path, monkeypatch):
    # 000's Omniglot figures test 001 Table 3's MAML runs: while one is cut off in training there, the
    # figures' record neither starts a second copy nor says "not started"
    import time
    run(SPEC, tmp_path / "tiny", quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"],
        deadline=time.time() - 1, **QUIET)   # a's run cut off after one iteration, its resume point in tiny/cells
    other = _with_evals("other", {"test": []}, {"a": "x", "b": "y"}, reuse=("tiny",))
    logs: list[str] = []
    real = sweep.train_runs
    monkeypatch.setattr(sweep, "train_runs", _boom)
    with pytest.raises(AssertionError, match="not reused"):   # y has no run anywhere: it would train
        run(other, tmp_path / "other", quick=True, seeds=1, overrides=["outer.iterations=30"], log=logs.append)
    assert any("x seed 0: the same run is in training in tiny (a_s0.partial.pt)" in m for m in logs), logs
    rows = run(other, tmp_path / "other", quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"],
               **QUIET)
    assert rows == [] and not list((tmp_path / "other").glob("cells/*.pt"))   # x waits for tiny's run
    missing = _results(tmp_path / "other")["missing"]
    assert missing[0] == "x (0 of 1 runs; training s0 in tiny (a): iteration 1 of 30)", missing
    assert "| 0 of 1 | training s0 in tiny (a): iteration 1 of 30 |" in (tmp_path / "other" / "table.md").read_text()
    # in training in both records (each started it): each continues its own, neither waits for the other
    (tmp_path / "other" / "cells").mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "tiny" / "cells" / "a_s0.partial.pt", tmp_path / "other" / "cells" / "x_s0.partial.pt")
    with pytest.raises(AssertionError, match="not reused"):
        run(other, tmp_path / "other", quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"], **QUIET)
    (tmp_path / "other" / "cells" / "x_s0.partial.pt").unlink()
    # another config is not the same run: it trains
    with pytest.raises(AssertionError, match="not reused"):
        run(other, tmp_path / "other", quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=31"], **QUIET)
    monkeypatch.setattr(sweep, "train_runs", real)   # the run finished in its own record, then tested here
    done = run(SPEC, tmp_path / "tiny", quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"], **QUIET)
    monkeypatch.setattr(sweep, "train_runs", _boom)
    rows = run(other, tmp_path / "other", quick=True, seeds=1, only=["model=a"], overrides=["outer.iterations=30"],
               **QUIET)
    assert [r["mean"] for r in rows] == [done[0]["mean"]]


def test_claims_are_listed_one_a_line_with_readable_values():
    from metagrad.experiments.tables import claims_section
    text = claims_section({"holds": True, "fails": False, "drop": 0.082345678, "by order": {"0": 0.84497, "1": 0.6569},
                           "levels": [1.27071, 0.7296], "count": "3 of 3"})
    assert text == ("\n## Claims checked\n\n- holds: yes\n- fails: no\n- drop: 0.08235\n- by order: 0: 0.845, 1: 0.6569\n"
                    "- levels: 1.271, 0.7296\n- count: 3 of 3\n")
    assert claims_section({}) == ""
