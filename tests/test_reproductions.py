"""The measured records under ``reproductions/`` (004 Table 6 on our own task draws, and on the
thesis's own tasks; trained over several sessions, converted once to the sweep's schema 2 by
``reproductions/convert_records.py``): every kept run is one the sweep accepts for its cell, and
each committed ``table.md`` / ``results.json`` is exactly what ``metagrad reproduce turtle-table6
--report`` builds from the kept runs (no number edited by hand)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metagrad.cli import main as cli_main
from metagrad.experiments import sweep
from metagrad.experiments.specs import turtle

ROOT = Path(__file__).resolve().parents[1] / "reproductions"
# each record and the tasks its runs were trained and tested on (--data)
RECORDS = {"turtle-table6": "metagrad", "turtle-table6-thesis-data": "thesis"}


@pytest.mark.parametrize("record", RECORDS)
def test_every_kept_run_is_accepted_by_the_sweep(record: str) -> None:
    cells = {c.id: c for c in turtle.TABLE6.cells({"data": RECORDS[record]})}
    files = sorted((ROOT / record / "cells").glob("*.json"))
    assert len(files) >= 5 * len(cells)
    for path in files:
        run = json.loads(path.read_text())
        c = cells[run["cell"]]
        assert path.name == f"{c.id}_s{run['seed']}.json"
        assert sweep.cached(ROOT / record, c, sweep._cell_config(c, []), [run["seed"]]), f"{path.name} is not reused"
    for c in cells.values():   # the runs in the verdict: seeds 0-4 of every cell
        assert all((ROOT / record / "cells" / f"{c.id}_s{s}.json").exists() for s in range(5)), c.id


@pytest.mark.parametrize("record", RECORDS)
def test_committed_table_is_the_report_of_the_kept_runs(record: str, tmp_path: Path) -> None:
    kept = ROOT / record
    shutil.copytree(kept / "cells", tmp_path / "cells")
    # rebuilt the way the records' READMEs say, through the command line
    args = ["reproduce", "turtle-table6", "--out", str(tmp_path), "--report"]
    assert cli_main(args + (["--data", "thesis"] if RECORDS[record] == "thesis" else [])) == 0
    assert (tmp_path / "table.md").read_bytes() == (kept / "table.md").read_bytes()
    assert (tmp_path / "results.json").read_bytes() == (kept / "results.json").read_bytes()
    data = json.loads((kept / "results.json").read_text())
    assert not data["partial"] and data["runs_per_row"] == 5 and all(r["runs_used"] == 5 for r in data["rows"])


@pytest.mark.parametrize("script,args,expected", [
    # reads the committed record (no training): the cell that needed the thesis's 30 runs
    ("diag_turtle_curves.py", ["--out", "reproductions/turtle-table6-thesis-data", "--data", "thesis", "--steps", "10",
                               "--shots", "15", "--at-most", "0.09"],
     ["so-TURTLE T=10 k=15: 30 runs, 20 with test MSE at most 0.09, 5 dropped", "stalled: [4, 20]"]),
    ("diag_turtle_stall.py", ["--steps", "1", "--seeds", "0", "1", "--iterations", "2"],
     ["seed 0: active units (layer 1, layer 2) of 40 at the initialisation"]),
])
def test_thesis_record_diagnostics_run(script: str, args: list[str], expected: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "turtle-table6-thesis-data" / script), *args], cwd=ROOT.parent,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for line in expected:
        assert line in out.stdout, out.stdout[-3000:]
