"""TensorBoard scalars of a run's metrics records (``metagrad train --tensorboard``, ``metagrad runs --tensorboard``).

A metrics record (``fit``'s ``on_record``, one line of ``metrics.jsonl``) becomes scalars at step
``record["iteration"]``, each under the record's own name::

    {"iteration": 500, "loss": 0.41, "val_accuracy": 0.93}   ->   loss = 0.41, val_accuracy = 0.93 at step 500
    {"iteration": 500, "losses": [0.40, 0.42]}                ->   losses/member_0, losses/member_1 (a Population)

so TensorBoard draws what ``metrics.jsonl`` holds, nothing else. A resumed run opens its writer
with ``purge_step`` one past the checkpoint it resumes from: TensorBoard then hides what the
stopped process logged after that checkpoint, and the curves stay those of one uninterrupted run.

Optional: it needs ``pip install tensorboard`` (the package TensorBoard itself runs from); without it,
asking for TensorBoard logs is a one-line error that says so.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from .errors import RunError
from .runlog import JsonLog

__all__ = ["TensorBoardLog", "scalars", "export_folder", "export_runs"]

FOLDER = "tensorboard"   # inside a run folder: `tensorboard --logdir runs/` finds every run's events


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's numbers by tag: a number (or bool) under its own name, a list per member."""
    out: dict[str, float] = {}
    for name, v in record.items():
        if name == "iteration":
            continue
        values = list(enumerate(v)) if isinstance(v, list) else [(None, v)]
        for p, x in values:
            if isinstance(x, (bool, int, float)):
                out[name if p is None else f"{name}/member_{p}"] = float(x)
    return out


def _writer(log_dir: Path, purge_step: Optional[int]) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:   # torch's module imports the tensorboard package, which is optional here
        raise RunError("TensorBoard logs need the tensorboard package: pip install tensorboard "
                       "(or drop --tensorboard; metrics.jsonl holds the same numbers)") from None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


class TensorBoardLog:
    """``fit``'s ``on_record`` consumer: ``fit(..., on_record=TensorBoardLog("runs/x/tensorboard").write)``.

    ``resume_at``: the iteration of the checkpoint the run resumes from (``None`` for a fresh run);
    events the stopped process wrote after it are hidden (TensorBoard's ``purge_step``).
    """

    def __init__(self, log_dir: str | Path, resume_at: Optional[int] = None) -> None:
        self.writer = _writer(Path(log_dir), None if resume_at is None else resume_at + 1)

    def write(self, record: Mapping[str, Any]) -> None:
        step = int(record["iteration"])
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()   # a record every log_every iterations: cheap, and TensorBoard sees it now

    def close(self) -> None:
        self.writer.close()


def export_folder(out: str | Path) -> Path:
    """``out`` as a folder to export into, refused in one line where a file (or a file above it) stands."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise RunError(f"runs --tensorboard: {str(p)!r} is a file; give a folder (e.g. tb/)")
    return out


def export_runs(runs: Iterable[Path], out: str | Path) -> list[Path]:
    """Write each run's ``metrics.jsonl`` as TensorBoard events under ``out/<run folder name>/``
    (``metagrad runs PATHS --tensorboard OUT``; run folders are only read). Each run's folder is
    written whole in a temporary folder and then renamed over the old one, so ``out`` never holds half
    an export. Returns the folders written."""
    out = export_folder(out)
    runs = list(runs)
    if not runs:
        raise RunError("runs --tensorboard: no runs to export")
    names = [r.name for r in runs]
    unique = len(set(names)) == len(names)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        dest = out / (run.name if unique else "_".join(run.resolve().parts[-2:]))
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=out))
        try:
            log = TensorBoardLog(tmp)
            for record in JsonLog.read(run / "metrics.jsonl"):
                if isinstance(record.get("iteration"), int):
                    log.write(record)
            log.close()
            old = out / f".{dest.name}.old"
            if dest.exists():
                dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        written.append(dest)
    return written
