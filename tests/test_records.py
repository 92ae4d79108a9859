"""``metagrad reproduce all``: every record in one command. Its report over a copy of the committed
records rebuilds each committed ``table.md`` and ``results.json`` byte for byte (no number in them is
edited by hand); a record whose data are missing is skipped with its reason and leaves nothing behind;
past the time limit nothing trains."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from metagrad.cli import main
from metagrad.experiments import records, sweep

ROOT = Path(__file__).resolve().parents[1] / "reproductions"


def _committed_copy(dst: Path) -> list[str]:
    """The records' committed kinds of files (tables, results, summaries, READMEs, the resume points and
    kept runs that travel with them), no runs' working folders or figures."""
    names = []
    for rec in sorted(p for p in ROOT.iterdir() if p.is_dir()):
        shutil.copytree(rec, dst / rec.name, ignore=shutil.ignore_patterns("*.png", ".*"))
        names.append(rec.name)
    return names


def test_report_of_all_rebuilds_every_committed_table_exactly(tmp_path, capsys):
    names = _committed_copy(tmp_path)
    assert main(["reproduce", "all", "--report", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    checked = 0
    for name in names:
        for f in ("table.md", "results.json"):
            if (ROOT / name / f).exists():
                assert (tmp_path / name / f).read_bytes() == (ROOT / name / f).read_bytes(), f"{name}/{f}"
                checked += 1
    assert checked >= 14   # 004 Table 6 twice, 002 twice, 000 sine twice, depth, 001 Table 3
    # the index of every record, rewritten by the same command
    assert (tmp_path / "README.md").read_bytes() == (ROOT / "README.md").read_bytes(), "reproductions/README.md"
    assert "| turtle-table6 | complete | 44 | 0 |" in out and "| universality-steps | complete |" in out
    assert all(r in out for r in records.RECORDS)


def test_the_index_links_every_record_once_and_states_where_it_stands(tmp_path):
    status = [records.Status(r, "not started") for r in records.RECORDS]
    status[0] = records.Status(status[0].record, "partial", rows=3, missing=2)
    status[-1] = records.Status(status[-1].record, "skipped", note="no data under /some/local/path")
    text = records.index(status)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith(("| record", "| ---"))]
    assert len(rows) == len(records.RECORDS)
    first, last = rows[0], rows[-1]
    assert first.startswith(f"| [{status[0].record}]({status[0].record}/table.md) |") and "| partial | 3 | 2 |" in first
    assert "skipped: its data are not here" in last and "/some/local/path" not in text   # nothing machine-bound
    assert all(line.count(" | ") == 4 for line in rows), "a description's '|' must be escaped"


def test_a_record_without_its_data_is_skipped_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("METAGRAD_DATA", str(tmp_path / "no-data"))
    (status,) = records.run_all(tmp_path / "out", quick=True, only=["miniimagenet-table3"], log=lambda m: None)
    assert status.state == "skipped" and "miniimagenet" in status.note and "expected" in status.note
    assert not (tmp_path / "out" / "miniimagenet-table3-quick").exists()


def test_past_the_time_limit_nothing_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "train_runs", lambda *a, **k: pytest.fail("trained past the time limit"))
    status = records.run_all(tmp_path, quick=True, only=["mtnet-table2", "universality-depth"],
                             deadline=time.time() - 1, log=lambda m: None)
    assert [(s.record, s.state, s.note) for s in status] == [("mtnet-table2", "not started", "past the time limit"),
                                                             ("universality-depth", "not started", "past the time limit")]
    with pytest.raises(Exception, match="unknown record 'nope'"):
        records.run_all(tmp_path, only=["nope"])


def test_a_records_resume_points_and_kept_runs_travel_with_it_and_other_checkpoints_do_not():
    """.gitignore: a run in training under reproductions/ continues on a fresh checkout only if its
    ``*.partial.pt`` is committed, and a sibling record tests a kept ``*.run.pt``; checkpoints of runs
    elsewhere, and a run's working folder, stay out of git."""
    import subprocess
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0
    assert not ignored("reproductions/omniglot-table3/cells/MAML_5way_s0.partial.pt")
    assert not ignored("reproductions/omniglot-table3/cells/MAML_5way_s0.run.pt")
    assert ignored("reproductions/omniglot-table3/cells/.MAML_5way_s0/checkpoint.pt")
    assert ignored("runs/t3/cells/MAML_5way_s0.partial.pt") and ignored("checkpoint.pt")
