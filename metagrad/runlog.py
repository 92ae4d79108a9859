"""A run folder's append-only logs and its writer lock.

``JsonLog`` is a JSON-lines file (``metrics.jsonl``) that a resumed run continues exactly: lines
after the checkpoint's iteration are dropped, and a malformed *last* line (a write cut by a crash
or a full disk) is repaired by dropping it; a malformed line anywhere else is an error naming the
file and the line. ``RunLock`` gives one process at a time the right to write a run folder
(``fcntl.flock`` on ``.lock``: the kernel releases it when the process dies, so a crash never
leaves a stale lock).
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Optional

from .errors import RunError

__all__ = ["JsonLog", "RunLock", "lock_holder", "remove_stale_temporaries"]


class JsonLog:
    """Append JSON records to ``path``, one per line, flushed as they are written."""

    def __init__(self, path: str | os.PathLike, resume_at: Optional[int] = None) -> None:
        """Start afresh (``resume_at=None``: the file is emptied) or continue after iteration ``resume_at``."""
        self.path = Path(path)
        if resume_at is None:
            self.path.unlink(missing_ok=True)
        else:
            self._truncate(resume_at)
        self._f = open(self.path, "a")

    def _truncate(self, upto: int) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text().split("\n")
        keep = []
        for i, ln in enumerate(lines):
            if not ln.strip():
                continue
            try:
                rec = json.loads(ln)
                it = int(rec["iteration"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                if all(not rest.strip() for rest in lines[i + 1:]):
                    break        # the last line, cut short by a crash: repaired by dropping it
                raise RunError(f"{str(self.path)!r} line {i + 1} is not a JSON record ({ln[:40]!r}); "
                               f"delete that line (the checkpoint holds the model) and resume again") from None
            if it <= upto:
                keep.append(ln)
        from .io import write_text
        write_text(self.path, "".join(ln + "\n" for ln in keep))

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict[str, Any]]:
        """Every record of ``path`` ([] if it does not exist); a malformed last line is skipped."""
        path = Path(path)
        if not path.exists():
            return []
        out = []
        lines = [ln for ln in path.read_text().split("\n") if ln.strip()]
        for i, ln in enumerate(lines):
            try:
                out.append(json.loads(ln))
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    break
                raise RunError(f"{str(path)!r} line {i + 1} is not a JSON record; delete that line") from None
        return out


class RunLock:
    """An exclusive, non-blocking lock on a run folder (``with RunLock(folder): ...``).

    A second writer gets a one-line ``RunError`` naming the folder and the holder's process id;
    the lock dies with its process, so no stale lock survives a crash.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "run") -> None:
        self.folder, self.what = Path(folder), what
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        path = self.folder / ".lock"
        try:   # the folder the user named (--out): one that cannot be made or written is bad input
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunError(f"{self.what}: cannot write the folder {str(self.folder)!r}: {e.strerror or e}; "
                           f"choose a folder you can write (--out)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunError(f"{self.what}: {str(self.folder)!r} is being written by another metagrad process "
                           f"(pid {holder}); wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_holder(folder: str | os.PathLike) -> Optional[str]:
    """The process id (as written) of the process holding ``folder``'s ``RunLock`` now, or ``None``.

    Probes with a shared non-blocking lock, released at once, so it never waits and a writer is
    held off only for that instant."""
    path = Path(folder) / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:   # no lock file: never locked
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed atomic write left in ``folder`` (``.NAME.*.tmp``);
    call it while holding the folder's ``RunLock``. Returns what was removed."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone
