"""The measured records under ``reproductions/`` (004 Table 6 on our own task draws, and on the
thesis's own tasks; trained over several sessions): every kept run was produced under the full
protocol, and each committed ``results.json`` is exactly what ``turtle-table6 --report`` builds
from the kept runs (no number edited by hand)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from metagrad.cli import main as cli_main
from metagrad.experiments.reproduce import turtle_table6
from metagrad.experiments.reproduce.turtle_cells import _cached, _cell_path, _protocol_key, _settings
from metagrad.experiments.reproduce.turtle_cells import Protocol

ROOT = Path(__file__).resolve().parents[1] / "reproductions"
# each record and the tasks its runs were trained and tested on (turtle_data.DATA)
RECORDS = {"turtle-table6": "metagrad", "turtle-table6-thesis-data": "thesis"}


def _cells(record: str) -> list[Path]:
    cells = sorted((ROOT / record / "cells").glob("*.json"))
    if not cells:
        pytest.skip(f"no measured {record} runs kept yet")
    return cells


@pytest.mark.parametrize("record", RECORDS)
def test_kept_runs_use_the_full_protocol(record: str) -> None:
    proto = Protocol(data=RECORDS[record])
    full = _protocol_key(proto)
    for path in _cells(record):
        cell = json.loads(path.read_text())
        assert cell["protocol"] == full, f"{path.name} was not produced under 004's full protocol"
        assert path.name == _cell_path(ROOT / record, cell["model"], cell["steps"], cell["k_shot"], cell["seed"]).name
        # and was trained with the settings the code gives now, so the report counts it
        assert _cached(path, proto, _settings(cell["model"], cell["steps"], cell["k_shot"])) is not None, \
            f"{path.name} was trained with other settings than spec({cell['model']!r}, {cell['steps']}, " \
            f"{cell['k_shot']}) gives now"


@pytest.mark.parametrize("record", RECORDS)
def test_committed_table_is_the_report_of_the_kept_runs(record: str, tmp_path: Path) -> None:
    _cells(record)
    kept = ROOT / record
    shutil.copytree(kept / "cells", tmp_path / "cells")
    # rebuilt the way the records' READMEs say, through the command line (its options reach turtle_table6)
    assert cli_main(["reproduce", "turtle-table6", "--out", str(tmp_path), "--report", "--data", RECORDS[record]]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    committed = json.loads((kept / "results.json").read_text())
    assert [(r["model"], r["setting"], r["mean"], r["seeds"]) for r in rows] == \
        [(r["model"], r["setting"], r["mean"], r["seeds"]) for r in committed["rows"]]
    assert committed["claims"] == turtle_table6.claims(rows)

