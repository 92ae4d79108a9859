"""Atomic writes leave either the old file or the new one, never a half-written one."""
from __future__ import annotations

import json

import pytest

from metagrad.io import atomic_write, write_json


def test_write_json_roundtrip(tmp_path):
    write_json(tmp_path / "a" / "x.json", {"v": (1, 2)})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"v": [1, 2]}


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"v": 1})

    def boom(f):
        f.write("{half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, boom)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
