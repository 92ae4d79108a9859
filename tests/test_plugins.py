"""A config's ``imports``: the user's own task, model or learner, registered in their module, from the CLI.

Each CLI call runs in a fresh process (as a user's would), so the registry starts without the user's
names and only ``imports`` can bring them in: train, then ``--resume`` and ``eval`` from another
working directory (the file is recorded as an absolute path)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metagrad.experiments.config import Config, ConfigError

PLUGIN = '''
import math
import torch
from torch import nn
from metagrad.experiments import registry
from metagrad.tasks import Sinusoid

def wide_sine(k_shot: int = 10, k_query: int = 10, top: float = 2.0) -> Sinusoid:
    return Sinusoid(k_shot, k_query, (1.0, top), (0.0, math.pi))

class Tiny(nn.Module):
    def __init__(self, task, width: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, 1))
    def forward(self, x):
        return self.net(x)

registry.register_task("wide-sine", wide_sine)
registry.register_model("tiny", Tiny)
'''
CONFIG = {"name": "mine", "task": {"name": "wide-sine", "k_shot": 5, "top": 3.0}, "model": {"name": "tiny", "width": 6},
          "outer": {"iterations": 20, "meta_batch": 4}, "eval": {"tasks": 20}, "checkpoint_every": 10, "log_every": 5}


def _metagrad(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metagrad", *args, "--no-progress"] if args[0] in ("train", "eval")
                          else [sys.executable, "-m", "metagrad", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


def test_a_users_task_and_model_train_resume_and_evaluate_from_the_cli(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "my_tasks.py").write_text(PLUGIN)
    (work / "mine.json").write_text(json.dumps({**CONFIG, "imports": ["my_tasks.py"]}))
    r = _metagrad("train", "mine.json", "--out", "run", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "mse" in r.stdout
    recorded = json.loads((work / "run" / "config.json").read_text())
    assert recorded["imports"] == [str(work / "my_tasks.py")] and recorded["task"]["top"] == 3.0
    r = _metagrad("train", "--resume", str(work / "run"), "--set", "outer.iterations=30", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    r = _metagrad("eval", str(work / "run"), "--tasks", "10", cwd=elsewhere)
    assert r.returncode == 0 and "(10 tasks" in r.stdout, r.stderr
    (work / "bare.json").write_text(json.dumps(CONFIG))
    r = _metagrad("train", "bare.json", "--print-config", cwd=work)   # without imports the names are unknown
    assert r.returncode == 2 and "unknown task.name 'wide-sine'" in r.stderr and "Traceback" not in r.stderr


def test_a_dotted_module_in_the_working_directory(tmp_path):
    (tmp_path / "my_mod.py").write_text(PLUGIN)
    (tmp_path / "c.json").write_text(json.dumps({**CONFIG, "imports": ["my_mod"]}))
    r = _metagrad("train", "c.json", "--print-config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["imports"] == ["my_mod"]


def test_a_bug_in_the_users_module_keeps_its_traceback(tmp_path):
    (tmp_path / "broken.py").write_text("import metagrad\nraise RuntimeError('my bug')\n")
    (tmp_path / "c.json").write_text(json.dumps({**CONFIG, "imports": ["broken.py"]}))
    r = _metagrad("train", "c.json", "--print-config", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" in r.stderr and "RuntimeError: my bug" in r.stderr


def test_missing_or_malformed_imports_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"imports: no such file '{tmp_path / 'gone.py'}'"):
        Config.from_dict({"imports": ["gone.py"]})
    with pytest.raises(ConfigError, match="imports: no module named 'no_such_module_here'"):
        Config.from_dict({"imports": ["no_such_module_here"]})
    with pytest.raises(ConfigError, match="imports must be a list of module names or .py paths, got 'x.py'"):
        Config.from_dict({"imports": "x.py"})


def test_a_config_without_imports_has_the_identity_it_had_before_imports_existed():
    # checkpoints and run summaries made before the key existed still match their configs
    assert "imports" not in Config().identity() and Config().to_dict()["imports"] == []
