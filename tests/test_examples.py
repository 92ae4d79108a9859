"""``examples/``: a user's own task family on the command line, run as its docstring says (shorter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_linear_task_example_trains_from_any_working_directory(tmp_path):
    # the config names its module by a path relative to itself: run from elsewhere, it is still found
    r = subprocess.run([sys.executable, "-m", "metagrad", "train", str(ROOT / "examples" / "linear-maml.json"),
                        "--out", "run", "--no-progress", "--set", "outer.iterations=150", "--set", "eval.every=0",
                        "--set", "eval.tasks=100", "--set", "log_every=25"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "(100 tasks, 3 steps, k=5)" in r.stdout
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["imports"] == [str(ROOT / "examples" / "linear_tasks.py")]
    losses = [json.loads(ln)["loss"] for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(ln)]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses   # meta-training learns the family
