"""Command-line helpers shared by the TURTLE experiments (``turtle_table6``, ``turtle_order``):
the protocol options, the thread count, and time-stamped progress lines."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

__all__ = ["protocol_arguments", "parse_settings", "set_threads", "stderr_log"]


def protocol_arguments(p: "argparse.ArgumentParser", steps: Sequence[int]) -> None:
    """The command-line options every TURTLE experiment shares (output, length, seeds, sizes)."""
    p.add_argument("--out", type=Path, required=True,
                   help="folder for table.md, results.json, the plot and cells/ (one JSON per finished run; "
                        "a rerun skips them and resumes a cut-off run from its .partial.pt checkpoint)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 300 tasks, 100 test tasks, no validation")
    p.add_argument("--seeds", type=int, help="runs per cell, seeds 0..N-1 (default 5; --quick: 1)")
    p.add_argument("--steps", nargs="+", type=int, default=list(steps),
                   help=f"inner steps T of the meta-learners (default {' '.join(map(str, steps))})")
    p.add_argument("--tasks", type=int, help="meta-training tasks per run (default 70000, as 004)")
    p.add_argument("--test-tasks", type=int, help="fixed test tasks (default 2000, as 004)")
    p.add_argument("--val-every", type=int, default=-1,
                   help="validate every N meta-training tasks and test the best state (default 2500; 0: no validation)")
    p.add_argument("--val-tasks", type=int, help="validation tasks (default 1000)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1, for two jobs on two cores; a job alone trains faster on 2: benchmarks/bench_threads.py)")


def parse_settings(items: Optional[Sequence[str]]) -> dict[str, Any]:
    """``KEY=VALUE`` words as a dict; a value is read as an integer, a float, ``true``/``false``, ``none``
    (``None``) or else a string: ``["rule.prev_gate=logit", "clip_norm=1"]`` ->
    ``{"rule.prev_gate": "logit", "clip_norm": 1}``."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE (e.g. rule.prev_gate=logit), got {item!r}")
        # a bare "false" must not reach a flag as the (truthy) string "false"
        value: Any = {"none": None, "true": True, "false": False}.get(text.lower(), text)
        for kind in (int, float):
            try:
                value = kind(text)
                break
            except ValueError:
                pass
        out[key] = value
    return out


def set_threads(name: str, threads: int) -> None:
    """``torch.set_num_threads(threads)`` for a TURTLE experiment, with a clear error for a bad count."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{name}: threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)


def stderr_log(message: str) -> None:
    """Progress lines with a wall-clock stamp on stderr (stdout stays for tables)."""
    print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)
