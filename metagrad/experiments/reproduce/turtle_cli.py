"""Command-line helpers shared by the TURTLE experiments (``turtle_table6``, ``turtle_order``):
the protocol options, the thread count, and time-stamped progress lines."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["protocol_arguments", "set_threads", "stderr_log"]


def protocol_arguments(p: "argparse.ArgumentParser", steps: Sequence[int]) -> None:
    """The command-line options every TURTLE experiment shares (output, length, seeds, sizes)."""
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int)
    p.add_argument("--steps", nargs="+", type=int, default=list(steps))
    p.add_argument("--tasks", type=int)
    p.add_argument("--test-tasks", type=int)
    p.add_argument("--val-every", type=int, default=-1)
    p.add_argument("--val-tasks", type=int)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1, for two jobs on two cores; a job alone trains faster on 2: benchmarks/bench_threads.py)")


def set_threads(name: str, threads: int) -> None:
    """``torch.set_num_threads(threads)`` for a TURTLE experiment, with a clear error for a bad count."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{name}: threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)


def stderr_log(message: str) -> None:
    """Progress lines with a wall-clock stamp on stderr (stdout stays for tables)."""
    print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)
