"""Devices: ``resolve_device("cuda:1")`` checks that a device exists before anything runs on it.

Everything metagrad computes follows the device of the model's parameters; task batches are
drawn on the CPU from explicit generators (so a run draws the same tasks on every device) and
moved with ``TaskBatch.to``. Checkpoints are loaded with ``map_location="cpu"`` and copied into
the live tensors, so a checkpoint written on a GPU loads on a machine without one.
"""
from __future__ import annotations

import os

import torch

from .errors import DeviceError

__all__ = ["resolve_device", "available_devices"]


def available_devices() -> list[str]:
    """The device names usable here: ``cpu``, then ``cuda:N`` for each GPU, then ``mps``."""
    out = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``; ``None``: ``cpu``) as a ``torch.device``,
    or a one-line ``DeviceError`` naming it and the devices this machine has."""
    if name is None:
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device: {name!r} is not a device name; use cpu, cuda, cuda:N or mps") from None
    have = available_devices()
    if dev.type == "cuda":   # plain "cuda" under torchrun: this process's GPU (LOCAL_RANK)
        index = int(os.environ.get("LOCAL_RANK", "0")) if dev.index is None else dev.index
        if f"cuda:{index}" not in have:
            raise DeviceError(f"device: {str(name)!r} is not available on this machine "
                              f"(it has {', '.join(have)}); use --device cpu")
        return torch.device("cuda", index)
    if dev.type == "mps" and "mps" not in have:
        raise DeviceError(f"device: {str(name)!r} is not available on this machine (it has {', '.join(have)}); "
                          "use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device: {str(name)!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev
