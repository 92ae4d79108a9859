"""``fit``'s checkpoint files: one format, written atomically, read back with one-line errors.

A checkpoint is one ``torch.save``d dict (``io.save_torch``: a temporary file, then a rename)::

    {"format": 2, "key": settings that define the run, "iteration": it,
     "module", "optimizer", "stream": their state_dicts, "torch_rng": torch's generator,
     "fit": the loop's own state (best states, curves, guard levels, the logging window),
     "timing": {"train_seconds", "wall_seconds"}}

so a run killed at any moment and resumed from it computes what one never killed computes.
``fit`` writes one only after checking the parameters and the optimiser's state finite, so the
last checkpoint of a run that diverged is a state to resume from with a lower rate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from .errors import RunError
from .io import save_torch

__all__ = ["CHECKPOINT_FORMAT", "RESUME_KEYS", "load_checkpoint", "save_checkpoint", "resume_checkpoint",
           "check_checkpoint_path", "kept_checkpoint", "finite_optimizer_state"]

CHECKPOINT_FORMAT = 2
RESUME_KEYS = ("iteration", "module", "optimizer", "stream", "fit")


def load_checkpoint(path: str | Path, need: Sequence[str] = RESUME_KEYS) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (whatever device wrote it), with a one-line error naming the
    file when it is missing, damaged, of another format, or lacks an entry in ``need`` (resuming
    needs every entry; evaluating needs only ``("iteration", "module")``)."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"cannot read {str(path)!r}: no such checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise RunError(f"cannot read {str(path)!r}: {type(e).__name__}: {e} (a damaged checkpoint: "
                       "delete it to start again)") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        got = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        raise RunError(f"cannot read {str(path)!r}: not a metagrad checkpoint of format {CHECKPOINT_FORMAT} "
                       f"(format {got!r}); it was written by another version or program: train it again")
    missing = [k for k in need if k not in ck]
    if missing:
        raise RunError(f"cannot use {str(path)!r}: it has no {', '.join(missing)} entry (a damaged or edited "
                       f"checkpoint); {'metagrad eval still reads its model; ' if 'module' in ck else ''}"
                       "to continue training, train the run again")
    return ck


def resume_checkpoint(path: Path, key: dict[str, Any], upgrade_key: Optional[Callable[[dict], dict]],
                      module: Any, optimizer: torch.optim.Optimizer, stream: Any) -> dict[str, Any]:
    """Load ``path`` into the module, optimiser, stream and torch's generator; returns the checkpoint.
    Its ``key`` (mapped by ``upgrade_key`` to today's form) must equal ``key``: a checkpoint written
    under other settings is refused, naming the settings that differ."""
    ck = load_checkpoint(path)
    stored = ck.get("key", {})
    stored = upgrade_key(stored) if upgrade_key is not None else stored
    if stored != key:
        diff = sorted(k for k in set(key) | set(stored) if key.get(k) != stored.get(k))
        raise RunError(f"fit: checkpoint {str(path)!r} was written under other settings (they differ in "
                       f"{', '.join(diff)}); delete it to start again, or write to another place")
    module.load_state_dict(ck["module"])
    optimizer.load_state_dict(ck["optimizer"])
    stream.load_state_dict(ck["stream"])
    torch.set_rng_state(ck["torch_rng"])
    return ck


def save_checkpoint(path: Path, key: dict[str, Any], iteration: int, module: Any, optimizer: torch.optim.Optimizer,
                    stream: Any, loop_state: dict[str, Any], timing: dict[str, float]) -> None:
    """Write the checkpoint atomically (the caller has checked that it is finite)."""
    save_torch(path, {"format": CHECKPOINT_FORMAT, "key": key, "iteration": iteration,
                      "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                      "stream": stream.state_dict(), "torch_rng": torch.get_rng_state(), "fit": loop_state,
                      "timing": timing})


def check_checkpoint_path(checkpoint: Optional[str | Path]) -> None:
    """Refuse, before any work, a checkpoint path that cannot be written (a folder, or under a file)."""
    if checkpoint is None:
        return
    path = Path(checkpoint)
    folder = next(p for p in path.parents if p.exists())   # the nearest existing folder on the way
    if path.is_dir():
        raise RunError(f"fit: checkpoint {str(path)!r} is a folder; give a file path such as runs/x.pt")
    if not folder.is_dir():
        raise RunError(f"fit: cannot write the checkpoint {str(path)!r}: {str(folder)!r} is a file, not a folder")


def kept_checkpoint(path: Optional[Path]) -> Optional[str]:
    """"the checkpoint of iteration N is kept in PATH" for an error message, or None where there is none."""
    if path is None or not path.exists():
        return None
    try:
        it: Any = int(torch.load(path, map_location="cpu", weights_only=False)["iteration"])
    except Exception:   # noqa: BLE001 - only for a message: a damaged file still is the one kept
        it = "?"
    return f"the checkpoint of iteration {it} is kept in {str(path)!r}"


def finite_optimizer_state(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every tensor of the optimiser's state (Adam's moments, momentum buffers) is finite."""
    return all(bool(torch.isfinite(v).all()) for state in optimizer.state.values() for v in state.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())
