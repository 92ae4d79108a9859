"""``TaskBatch``: the stacked support and query sets of a batch of tasks."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Optional

import torch
from torch import Tensor
from .errors import InputError, InputIndexError, InputTypeError

__all__ = ["TaskBatch"]


@dataclass(frozen=True)
class TaskBatch:
    """Support and query sets of ``B`` tasks, stacked on a leading task dimension.

    ``support_x [B, Ks, ...]``, ``support_y [B, Ks, ...]``, ``query_x [B, Kq, ...]``,
    ``query_y [B, Kq, ...]``. ``task_params [B, P]`` optionally holds the parameters that
    generated each task (amplitude and phase of a sine, polynomial coefficients) for
    task-conditioned baselines; learners never see it.

    Example::

        batch = mg.TaskBatch(support_x=sx, support_y=sy, query_x=qx, query_y=qy)
        batch.n_tasks, batch[0]   # one task, still with a task dimension of 1
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    task_params: Optional[Tensor] = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.name == "task_params":
                continue
            if not isinstance(v, Tensor):
                raise InputTypeError(f"TaskBatch: {f.name} must be a torch.Tensor, got {type(v).__name__}")
            if v.dim() < 2 and f.name != "task_params":
                raise InputError(f"TaskBatch: {f.name} has shape {tuple(v.shape)}; expected [tasks, examples, ...]")
            if v.dim() < 1:
                raise InputError(f"TaskBatch: {f.name} is a 0-d tensor; expected [tasks, ...] (one row per task)")
        n = {f.name: getattr(self, f.name).shape[0] for f in fields(self) if getattr(self, f.name) is not None}
        if len(set(n.values())) != 1:
            desc = ", ".join(f"{k} has {v}" for k, v in n.items())
            raise InputError(f"TaskBatch: tensors disagree in task count: {desc}")
        for a, b in (("support_x", "query_x"), ("support_y", "query_y")):
            ta, tb = getattr(self, a), getattr(self, b)
            if ta.dtype != tb.dtype:
                raise InputTypeError(f"TaskBatch: {a} is {ta.dtype} but {b} is {tb.dtype}; use one dtype")
            if ta.shape[2:] != tb.shape[2:]:
                raise InputError(f"TaskBatch: {a} examples have shape {tuple(ta.shape[2:])} "
                                 f"but {b} examples have shape {tuple(tb.shape[2:])}")
        for a, b in (("support_x", "support_y"), ("query_x", "query_y")):
            if getattr(self, a).shape[1] != getattr(self, b).shape[1]:
                raise InputError(f"TaskBatch: {a} has {getattr(self, a).shape[1]} examples per task "
                                 f"but {b} has {getattr(self, b).shape[1]}")
        if self.support_x.shape[0] == 0:
            raise InputError("TaskBatch: the batch holds 0 tasks; give at least one task")
        for a in ("support_x", "query_x"):
            if getattr(self, a).shape[1] == 0:
                raise InputError(f"TaskBatch: {a} has 0 examples per task (shape {tuple(getattr(self, a).shape)}); "
                                 f"every task needs at least one support and one query example")
        for f in fields(self):
            _check_finite(f.name, getattr(self, f.name))

    @property
    def n_tasks(self) -> int:
        """Number of tasks ``B``."""
        return self.support_x.shape[0]

    def __len__(self) -> int:
        return self.n_tasks

    def __getitem__(self, idx: int | slice) -> "TaskBatch":
        """Tasks ``idx`` as a smaller batch (an int keeps a task dimension of 1)."""
        if isinstance(idx, bool) or not isinstance(idx, (int, slice)):
            raise InputTypeError(f"TaskBatch: index with an int or a slice, got {type(idx).__name__}")
        if isinstance(idx, int):
            if not -self.n_tasks <= idx < self.n_tasks:
                raise InputIndexError(f"TaskBatch: task {idx} is out of range for a batch of {self.n_tasks} tasks")
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return TaskBatch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[idx])
                            for f in fields(self)})

    def to(self, *args, **kwargs) -> "TaskBatch":
        """Move or cast every tensor like ``Tensor.to``; integer labels keep their dtype."""
        def cast(t: Optional[Tensor]) -> Optional[Tensor]:
            if t is None:
                return None
            if not t.is_floating_point():
                return t.to(*[a for a in args if not isinstance(a, torch.dtype)],
                            **{k: v for k, v in kwargs.items() if k != "dtype"})
            return t.to(*args, **kwargs)
        return replace(self, **{f.name: cast(getattr(self, f.name)) for f in fields(self)})

    @staticmethod
    def cat(batches: list["TaskBatch"]) -> "TaskBatch":
        """Concatenate batches along the task dimension."""
        if not batches:
            raise InputError("TaskBatch.cat: no batches given; pass a non-empty list of TaskBatch")
        bad = next((b for b in batches if not isinstance(b, TaskBatch)), None)
        if bad is not None:
            raise InputTypeError(f"TaskBatch.cat: expected TaskBatch items, got {type(bad).__name__}")
        out = {}
        for f in fields(TaskBatch):
            vs = [getattr(b, f.name) for b in batches]
            if any(v is None for v in vs):
                out[f.name] = None
                continue
            odd = next((i for i, v in enumerate(vs) if v.shape[1:] != vs[0].shape[1:]), None)
            if odd is not None:
                raise InputError(f"TaskBatch.cat: batch {odd} has {f.name} of shape {tuple(vs[odd].shape)} but batch 0 "
                                 f"has {tuple(vs[0].shape)}; only the task counts (the first sizes) may differ")
            out[f.name] = torch.cat(vs)
        return TaskBatch(**out)


def _check_finite(name: str, t: Optional[Tensor]) -> None:
    """Refuse NaN or infinite values in a floating tensor (they would make every loss NaN).

    A sum is the cheap test (a few microseconds); only a non-finite sum, which an overflow of
    large finite values can also cause, pays for the exact element-wise check. Skipped inside
    ``torch.compile`` and functorch transforms, where values cannot be read.
    """
    if t is None or not (t.is_floating_point() or t.is_complex()) or t.numel() == 0 or t.device.type == "meta":
        return
    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(t):
        return
    with torch.no_grad():
        if math.isfinite(abs(complex(t.sum().item()))):
            return
        bad = ~torch.isfinite(t)
        if not bool(bad.any()):
            return
        first = tuple(int(i) for i in bad.nonzero()[0])
    raise InputError(f"TaskBatch: {name} holds {int(bad.sum())} non-finite values (NaN or inf), the first at "
                     f"index {first} (task {first[0]}); clean or drop those examples before batching")
