"""The README's examples run as printed: its Python blocks (shortened), and every ``metagrad`` command line.

Docs rot silently: a renamed preset, a config key or a keyword argument that changed, and the
first thing a new user copies fails. Here the Python blocks are executed in order in one namespace,
with only their iteration counts cut (``range(1000)`` -> ``range(20)``, ``iterations=1000`` -> 20,
``*_every=100`` -> 10), and each command line of the bash blocks is checked as far as it can be
without training: ``metagrad train PRESET --set ...`` resolves and checks its config
(``--print-config``), ``metagrad reproduce NAME ...`` parses against experiment NAME's own options,
and the rest parses against the command's parser. Lines with placeholders (``RUN``, ``NAME``,
``[--quick]``, ``...``) are parsed only where they can be.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from metagrad import cli
from metagrad.experiments import specs, sweep
from metagrad.experiments.config import Config, parse_value

README = Path(__file__).resolve().parents[1] / "README.md"
SHORTEN = ((r"range\(1000\)", "range(20)"), (r"iterations=1000", "iterations=20"), (r"_every=100\b", "_every=10"))


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def _command_lines() -> list[list[str]]:
    """Each ``metagrad ...`` (or ``torchrun ... -m metagrad ...``) line of the bash blocks, as argv after
    ``metagrad``, comments dropped."""
    out = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["metagrad"]:
                out.append(words[1:])
            elif words[:1] == ["torchrun"] and "metagrad" in words:
                out.append(words[words.index("metagrad") + 1:])
    return out


def _placeholder(word: str) -> bool:
    return word.isupper() or word.startswith("[") or word == "..." or word.startswith("<")


def test_python_examples_run_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # the fit example checkpoints to runs/x.pt
    torch.manual_seed(0)
    blocks = _blocks("python")
    assert len(blocks) >= 2, "the README lost its Python examples"
    ns: dict = {}
    for block in blocks:
        for pattern, short in SHORTEN:
            block = re.sub(pattern, short, block)
        exec(compile(block, str(README), "exec"), ns)
    assert ns["pred"].shape == ns["batch"].query_y[0].shape
    res = ns["res"]
    assert res.iteration == 20 and res.stopped is None and len(res.val_curves[0]) == 2
    assert (tmp_path / "runs" / "x.pt").is_file()


LINES = _command_lines()


def test_the_readme_has_command_lines():
    commands = {words[0] for words in LINES}
    assert {"train", "eval", "reproduce", "list", "runs"} <= commands, commands


@pytest.mark.parametrize("argv", [w for w in LINES if w[0] == "train" and "--resume" not in w
                                  and not any(_placeholder(x) for x in w)], ids=" ".join)
def test_train_lines_resolve_to_a_checked_config(argv, capsys):
    assert cli.main([*argv, "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    for arg in [argv[i + 1] for i, w in enumerate(argv) if w == "--set"]:
        key, value = arg.split("=", 1)
        section, _, leaf = key.partition(".")
        got = cfg[section][leaf] if leaf else cfg[section]
        assert json.dumps(got) == json.dumps(parse_value(value)), (key, got)


def _outs() -> dict[str, list[str]]:
    """``--out DIR`` of each fresh ``train`` line: the line that made the run a ``--resume DIR`` line continues."""
    return {w[w.index("--out") + 1]: w for w in LINES if w[0] == "train" and "--out" in w}


@pytest.mark.parametrize("argv", [w for w in LINES if w[0] == "train" and "--resume" in w], ids=" ".join)
def test_resume_lines_change_only_resumable_settings(argv, tmp_path, monkeypatch, capsys):
    run = argv[argv.index("--resume") + 1]
    made = _outs()[run]   # KeyError: the README resumes a run it never showed being made
    monkeypatch.chdir(tmp_path)
    assert cli.main([*made, "--print-config"]) == 0
    (tmp_path / run).mkdir(parents=True)
    (tmp_path / run / "config.json").write_text(capsys.readouterr().out)
    assert cli.main([*argv, "--print-config"]) == 0


@pytest.mark.parametrize("argv", [w for w in LINES if w[0] == "reproduce" and not _placeholder(w[1])], ids=" ".join)
def test_reproduce_lines_parse_against_their_experiment(argv):
    name, rest = argv[1], [w for w in argv[2:] if not _placeholder(w)]
    if name == "all":
        cli._reproduce_all_parser().parse_args(rest)
        return
    spec = specs.get(name)   # an unknown experiment raises, naming the ones there are
    if "--help" in rest:
        return
    args = cli._reproduce_parser(spec).parse_args(rest)
    options = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_")}
    for cell in sweep.select(spec.cells(options), args.only):   # no cell matching --only raises
        Config.from_dict(cell.config).override(args.overrides)   # and so does a bad --set


@pytest.mark.parametrize("argv", [w for w in LINES if w[0] in ("eval", "train", "list", "runs")
                                  and not (w[0] == "train" and w[-1] == "...")], ids=" ".join)
def test_other_lines_parse(argv):
    args, extra = cli._parser().parse_known_args(argv)
    assert not extra, extra


def test_a_reader_that_leaves_early_gets_no_traceback():
    # `metagrad train PRESET --print-config | head -2`: the pipe closes under the writer (here before the
    # child has imported torch, so its first write fails)
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-m", "metagrad", "train", "sine-maml", "--print-config"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 1 and "Traceback" not in err, err
