"""``metagrad reproduce NAME --jobs N``: each selected cell trained by its own process
(``metagrad reproduce NAME --cell ID``), ``N`` at a time, so a sweep's cells use several cores or
machines; any scheduler can start the same per-cell commands. A SIGTERM to this process is passed
on to the cells in training (each checkpoints after its iteration; ``metagrad.interrupts``); a
terminal's Ctrl-C reaches them directly, as the whole foreground process group."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from ..errors import ConfigError, Interrupted
from ..interrupts import stop_requests

if TYPE_CHECKING:
    from .sweep import Cell, Spec

__all__ = ["run_jobs"]


def run_jobs(spec: "Spec", out: Path, cells: list["Cell"], jobs: int, quick: bool, n: int, overrides: Sequence[str],
              only_seeds: Optional[Sequence[int]], opts: Mapping[str, Any], deadline: Optional[float] = None) -> None:
    """Each cell as its own ``metagrad reproduce ... --cell ID`` process, ``jobs`` at a time; past
    ``deadline`` (a ``time.time()``, handed to each process) no cell starts."""
    base = [sys.executable, "-m", "metagrad", "reproduce", spec.name, "--out", str(out), "--seeds", str(n),
            *(["--quick"] if quick else []), *[a for o in overrides for a in ("--set", o)],
            *[a for k, v in opts.items() if v != spec.options.get(k) for a in (f"--{k.replace('_', '-')}", str(v))],
            *(["--only-seeds", *map(str, only_seeds)] if only_seeds is not None else []),
            *(["--deadline", repr(deadline)] if deadline is not None else [])]
    running: list[subprocess.Popen] = []
    failed: list[int] = []
    with stop_requests() as stop:
        for c in cells:
            while len(running) >= jobs and not stop.requested:
                running = _reap(running, failed)
            if stop.requested or deadline is not None and time.time() >= deadline:
                break
            running.append(subprocess.Popen([*base, "--cell", c.id]))
        forwarded = False
        while running:
            if stop.signum == signal.SIGTERM and not forwarded:
                for p in running:
                    p.send_signal(signal.SIGTERM)
                forwarded = True
            running = _reap(running, failed)
    if stop.requested:
        raise Interrupted(f"reproduce {spec.name}", None, None, stop.signum, "the same command")
    if failed:
        raise ConfigError(f"reproduce: {len(failed)} cell job(s) failed (exit codes {failed}); see their messages above")


def _reap(running: list[subprocess.Popen], failed: list[int]) -> list[subprocess.Popen]:
    time.sleep(0.2)
    left = []
    for p in running:
        rc = p.poll()
        if rc is None:
            left.append(p)
        elif rc != 0:
            failed.append(rc)
    return left
