"""``examples/``: a user's own task family and update rule on the command line, run as their docstrings say (shorter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _metagrad(cwd: Path, *args: str) -> str:
    """``metagrad ARGS`` in a fresh process from ``cwd`` (not the repository); its stdout."""
    r = subprocess.run([sys.executable, "-m", "metagrad", *args, "--no-progress"], cwd=cwd, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def _train(cwd: Path, config: str, tasks: int) -> list[float]:
    """Train ``examples/CONFIG`` for 150 iterations into ``cwd/run``; the logged losses (every 25)."""
    _metagrad(cwd, "train", str(ROOT / "examples" / config), "--out", "run", "--set", "outer.iterations=150",
              "--set", "eval.every=0", "--set", f"eval.tasks={tasks}", "--set", "log_every=25")
    return [json.loads(ln)["loss"] for ln in (cwd / "run" / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(ln)]


def test_the_linear_task_example_trains_from_any_working_directory(tmp_path):
    # the config names its module by a path relative to itself: run from elsewhere, it is still found
    losses = _train(tmp_path, "linear-maml.json", tasks=100)
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses   # meta-training learns the family
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["imports"] == [str(ROOT / "examples" / "linear_tasks.py")]
    assert "(100 tasks, 3 steps, k=5)" in _metagrad(tmp_path, "eval", "run")


def test_the_momentum_rule_example_meta_learns_its_step_size_and_momentum(tmp_path):
    # a user's update rule (examples/momentum_rule.py) through the command line: it trains, its two
    # meta-parameters move, and metagrad eval adapts with it for more steps than it trained with
    losses = _train(tmp_path, "sine-momentum.json", tasks=50)
    assert len(losses) == 6 and losses[-1] < 0.85 * losses[0], losses   # 150 of sine's 70,000 iterations
    meta = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=False)["module"]
    assert abs(float(meta["meta.lr"]) - 0.01) > 1e-4 and abs(float(meta["meta.mu_logit"])) > 1e-4   # both learned
    assert "(20 tasks, 10 steps, k=10)" in _metagrad(tmp_path, "eval", "run", "--steps", "10", "--tasks", "20")


def test_the_pretrained_omniglot_example_classifies_drawings_it_never_saw(tmp_path):
    """Five evaluation-set characters as PNG folders (ink dark on white paper, 105x105, as a user would
    scan them): one drawing each adapts the reproduced MAML, the other 19 are classified."""
    import numpy as np
    import pytest
    from PIL import Image
    data = Path(os.environ.get("METAGRAD_DATA", "")) / "omniglot" / "images_evaluation.npz"
    if not data.is_file():
        pytest.skip("no Omniglot data")
    from metagrad.tasks.omniglot import N_BACKGROUND, omniglot_split
    with np.load(data) as z:
        paper = z["images"]   # bool [659, 20, 105, 105], True = paper
    # characters the run never met: its test split (001's seeded shuffle, the preset's seed), in the evaluation set
    test = sorted(int(i) - N_BACKGROUND for i in omniglot_split()["test"] if i >= N_BACKGROUND)
    for c in test[::len(test) // 5][:5]:
        (tmp_path / f"char{c}").mkdir()
        for d in range(20):
            Image.fromarray(np.where(paper[c, d], 255, 0).astype(np.uint8)).save(tmp_path / f"char{c}" / f"{d:02d}.png")
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "omniglot_pretrained.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.endswith("of 95 drawings), one example per character"), last
    assert float(last.split()[1]) >= 0.9, r.stdout[-2000:]
