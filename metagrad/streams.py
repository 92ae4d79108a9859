"""Task streams: where ``fit`` gets each meta-iteration's tasks, with a state that checkpoints.

A stream's ``next()`` returns a ``Draw``: the meta-batch, and where the run asks for them HF-MAML's
separate Hessian batch ``D_h`` (``hvp``) and 002's step-size batch ``D_beta`` (``beta``). All
randomness comes from explicit CPU generators (``state_dict`` holds them), so a resumed run draws
exactly the tasks it would have drawn, and a run draws the same tasks on every device. Streams
of one's own (a fixed pool of tasks, a paper's own data) need only ``next``, ``state_dict`` and
``load_state_dict``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Protocol, Sequence, runtime_checkable

import torch

from .batch import TaskBatch
from .distributed import World
from .errors import check_int

__all__ = ["Draw", "TaskStream", "SampledStream", "PopulationStream"]


class Draw(NamedTuple):
    """One meta-iteration's tasks: the meta-batch, and optionally ``D_h`` and ``D_beta``."""

    batch: TaskBatch
    hvp: Optional[TaskBatch] = None
    beta: Optional[TaskBatch] = None


@runtime_checkable
class TaskStream(Protocol):
    """What ``fit`` needs of a source of tasks."""

    def next(self) -> Draw: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SampledStream:
    """``meta_batch`` fresh tasks per iteration from ``task.sample`` with one generator seeded
    by ``seed``; under data parallelism each rank keeps its share (``World.shard``).

    Draws, in this order per iteration: the meta-batch, then ``D_h`` if ``hvp``, then ``D_beta``
    if ``beta`` (each ``meta_batch`` tasks). ``D_h`` is paired task by task with the meta-batch,
    so each rank keeps the same share of it; ``D_beta`` sets the step size of the whole update,
    so every rank keeps all of it (the same rate on every rank, as in one process).
    """

    def __init__(self, task: Any, meta_batch: int, seed: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", hvp: bool = False, beta: bool = False,
                 world: World = World()) -> None:
        self.task, self.meta_batch = task, check_int("SampledStream", "meta_batch", meta_batch, 1)
        self.dtype, self.device, self.hvp, self.beta, self.world = dtype, torch.device(device), hvp, beta, world
        self.generator = torch.Generator().manual_seed(seed)

    def _draw(self, shard: bool = True) -> TaskBatch:
        batch = self.task.sample(self.meta_batch, self.generator, self.dtype)
        return (self.world.shard(batch) if shard else batch).to(self.device)

    def next(self) -> Draw:
        batch = self._draw()
        hvp = self._draw() if self.hvp else None
        beta = self._draw(shard=False) if self.beta else None
        return Draw(batch, hvp, beta)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class PopulationStream:
    """For a ``Population``: ``meta_batch`` tasks per member per iteration, member ``p``'s from its
    own generator seeded ``seeds[p]`` (the stream it would have alone), concatenated member by
    member as ``Population.meta_losses`` expects."""

    def __init__(self, task: Any, meta_batch: int, seeds: Sequence[int], *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        self.task, self.meta_batch = task, check_int("PopulationStream", "meta_batch", meta_batch, 1)
        self.dtype, self.device = dtype, torch.device(device)
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def next(self) -> Draw:
        batches = [self.task.sample(self.meta_batch, g, self.dtype) for g in self.generators]
        return Draw(TaskBatch.cat(batches).to(self.device))

    def state_dict(self) -> dict[str, Any]:
        return {"generators": [g.get_state() for g in self.generators]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)
