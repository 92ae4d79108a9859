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
from .errors import ConfigError, check_int

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

    Draws, in this order per iteration (002, Algorithms 1-3 and eq. (16)-(17)):

    * the meta-batch ``B_k`` (each task's support set is ``D_in``, its query set ``D_o``);
    * ``D_h`` if ``hvp`` (an int: examples per task): ``hvp`` fresh examples of *the same tasks*
      (``task.resample(batch, hvp, generator)``), independent of ``D_in`` and ``D_o``; paired task
      by task with the meta-batch, so each rank keeps the same share of it;
    * ``D_beta`` if ``beta``: a separate batch ``B'`` of ``beta_tasks`` tasks drawn independently
      (002 eq. (17)), with ``beta_shots`` examples each (``None``: the task's ``k_shot``). It sets
      the step size of the whole update, so every rank keeps all of it.

    ``hvp=True`` means ``D_h`` of the task's ``k_shot`` examples (the size of ``D_in``).
    """

    def __init__(self, task: Any, meta_batch: int, seed: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", hvp: bool | int = False, beta: bool = False,
                 beta_tasks: Optional[int] = None, beta_shots: Optional[int] = None,
                 world: World = World()) -> None:
        self.task, self.meta_batch = task, check_int("SampledStream", "meta_batch", meta_batch, 1)
        if hvp is True:
            hvp = getattr(task, "k_shot", None)
            if hvp is None:
                raise ConfigError(f"SampledStream: task {type(task).__name__} has no k_shot; give hvp as a size")
        self.hvp = None if hvp is False or hvp is None else check_int("SampledStream", "hvp", hvp, 1)
        if (self.hvp is not None or beta_shots is not None) and not callable(getattr(task, "resample", None)):
            raise ConfigError(f"SampledStream: task {type(task).__name__} cannot draw fresh data of the same tasks "
                              "(no resample); a separate D_h (hvp) or D_beta size (beta_shots) needs one")
        self.beta = bool(beta)
        self.beta_tasks = meta_batch if beta_tasks is None else check_int("SampledStream", "beta_tasks", beta_tasks, 1)
        self.beta_shots = None if beta_shots is None else check_int("SampledStream", "beta_shots", beta_shots, 1)
        self.dtype, self.device, self.world = dtype, torch.device(device), world
        self.generator = torch.Generator().manual_seed(seed)

    def _local(self, batch: TaskBatch, shard: bool = True) -> TaskBatch:
        return (self.world.shard(batch) if shard else batch).to(self.device)

    def next(self) -> Draw:
        batch = self.task.sample(self.meta_batch, self.generator, self.dtype)
        hvp = self.task.resample(batch, self.hvp, self.generator, self.dtype) if self.hvp is not None else None
        beta = None
        if self.beta:
            beta = self.task.sample(self.beta_tasks, self.generator, self.dtype)
            if self.beta_shots is not None:
                beta = self.task.resample(beta, self.beta_shots, self.generator, self.dtype)
        return Draw(self._local(batch), None if hvp is None else self._local(hvp),
                    None if beta is None else self._local(beta, shard=False))

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
