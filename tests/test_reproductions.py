"""The measured record under ``reproductions/`` (004 Table 6, trained over several sessions):
every kept run was produced under the full protocol, and the committed ``results.json`` is
exactly what ``turtle-table6 --report`` builds from the kept runs (no number edited by hand)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from metagrad.experiments.reproduce import turtle_table6
from metagrad.experiments.reproduce.turtle_cells import _cached, _cell_path, _protocol_key, _settings
from metagrad.experiments.reproduce.turtle_cells import Protocol

RECORD = Path(__file__).resolve().parents[1] / "reproductions" / "turtle-table6"
CELLS = sorted((RECORD / "cells").glob("*.json")) if RECORD.exists() else []
pytestmark = pytest.mark.skipif(not CELLS, reason="no measured turtle-table6 runs kept yet")


def test_kept_runs_use_the_full_protocol() -> None:
    full = _protocol_key(Protocol())
    for path in CELLS:
        cell = json.loads(path.read_text())
        assert cell["protocol"] == full, f"{path.name} was not produced under 004's full protocol"
        assert path.name == _cell_path(RECORD, cell["model"], cell["steps"], cell["k_shot"], cell["seed"]).name
        # and was trained with the settings the code gives now, so the report counts it
        assert _cached(path, Protocol(), _settings(cell["model"], cell["steps"], cell["k_shot"])) is not None, \
            f"{path.name} was trained with other settings than spec({cell['model']!r}, {cell['steps']}, " \
            f"{cell['k_shot']}) gives now"


def test_committed_table_is_the_report_of_the_kept_runs(tmp_path: Path) -> None:
    shutil.copytree(RECORD / "cells", tmp_path / "cells")
    rows = turtle_table6.run(tmp_path, seeds=5, report=True)
    committed = json.loads((RECORD / "results.json").read_text())
    assert [(r["model"], r["setting"], r["mean"], r["seeds"]) for r in rows] == \
        [(r["model"], r["setting"], r["mean"], r["seeds"]) for r in committed["rows"]]
    assert committed["claims"] == turtle_table6.claims(rows)

