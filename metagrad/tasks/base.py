"""The task-distribution interface: ``sample(n_tasks, generator) -> TaskBatch``."""
from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import torch

from ..errors import InputError, InputTypeError, check_int
from ..batch import TaskBatch

__all__ = ["TaskDistribution", "uniform", "check_range", "check_shots", "task_params_of", "data_batch"]


@runtime_checkable
class TaskDistribution(Protocol):
    """A distribution over tasks. ``loss`` names the task's loss (``mse`` or ``cross_entropy``).

    All randomness comes from the explicit ``generator``: the same generator state gives the
    same batch, so runs resume exactly.
    """

    loss: str

    def sample(self, n_tasks: int, generator: torch.Generator,
               dtype: torch.dtype = torch.float32) -> TaskBatch: ...

    # Optional: ``resample(tasks, k, generator, dtype) -> TaskBatch``, ``k`` fresh examples of the
    # same tasks (from ``tasks.task_params``); families that define it can give 002's separate
    # batches (``D_h``) of each sampled task (``SampledStream(hvp=k)``).


def uniform(shape: tuple[int, ...], lo: float, hi: float, generator: torch.Generator,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``U[lo, hi]`` samples drawn from ``generator`` (sampled in float64, then cast, so that
    float32 and float64 batches from the same seed hold the same tasks)."""
    return (lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=torch.float64)).to(dtype)


def check_range(where: str, name: str, r: tuple[float, float]) -> tuple[float, float]:
    """Validate a ``(lo, hi)`` range and return it as a tuple of floats."""
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {name} must be a pair (lo, hi), got {r!r}") from None
    if not lo <= hi:
        raise InputError(f"{where}: {name} must satisfy lo <= hi, got {r!r}")
    return lo, hi


def check_shots(where: str, **counts: int) -> None:
    """Validate example counts such as ``k_shot`` and ``k_query`` (integers >= 1)."""
    for name, v in counts.items():
        check_int(where, name, v, 1, InputError)


def check_n_tasks(where: str, n_tasks: int, generator: Optional[torch.Generator]) -> None:
    """Refuse a ``sample`` call without a positive task count or an explicit generator (reproducible draws)."""
    check_int(where, "n_tasks", n_tasks, 1, InputError)
    if not isinstance(generator, torch.Generator):
        raise InputTypeError(f"{where}: pass an explicit torch.Generator, got {type(generator).__name__}")


def task_params_of(where: str, tasks: TaskBatch | torch.Tensor, width: int, k: int,
                   generator: torch.Generator) -> torch.Tensor:
    """The ``[B, width]`` task parameters of ``tasks`` (a ``TaskBatch`` or the tensor itself),
    checked, for ``resample``; ``k`` (examples to draw) must be an integer >= 1."""
    params = tasks.task_params if isinstance(tasks, TaskBatch) else tasks
    if not isinstance(params, torch.Tensor):
        raise InputTypeError(f"{where}: expected a TaskBatch with task_params or a [tasks, {width}] tensor, "
                             f"got {type(params).__name__}")
    if params.dim() != 2 or params.shape[1] != width or params.shape[0] < 1:
        raise InputError(f"{where}: task_params has shape {tuple(params.shape)}; expected [tasks, {width}]")
    check_shots(where, k=k)
    check_n_tasks(where, params.shape[0], generator)
    return params


def data_batch(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor, dtype: torch.dtype) -> TaskBatch:
    """A data-only batch of fresh examples of given tasks: support and query are the same examples
    (only the support is meant to be read: HF-MAML's ``D_h``, 002's ``D_beta``)."""
    x, y = x.to(dtype), y.to(dtype)
    return TaskBatch(support_x=x, support_y=y, query_x=x, query_y=y, task_params=params.to(dtype))
