"""004's own sine tasks, drawn again exactly as the thesis's code draws them (a paper quirk; not core).

The thesis's ``sine_loader.py`` (the version with fixed 70,000 / 1,000 / 2,000 task splits) seeds
numpy's legacy ``RandomState`` with the run's ``--seed`` (default 1337), then draws every task
once, in order -- ``A = uniform(0.1, 5)``, ``p = uniform(0, pi)``, ``x = uniform(-5, 5, k + 50)``
as float32, ``y = A sin(x + p)`` in float32 -- the training tasks first, then validation, then
test; and it pickles them per ``(k, k_test)``, so every run of a setting (30 in the thesis, one
process, its default seed) meta-trains on the same 70,000 tasks in the same order and is
validated and tested on the same tasks.

Importing this file registers the task family ``thesis_sine`` (config ``task.name``; options
``k_shot``, ``k_query``): ``fixed(n, seed)`` is the first ``n`` tasks of its split (validation,
test; for ``"train"`` the meta-training pool, which Finetuning pre-trains on), ``stream(meta_batch,
seeds)`` the meta-training tasks in the thesis's order, the same for every member. ``metagrad
reproduce turtle-table6 --data thesis`` loads it by path.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from metagrad.batch import TaskBatch
from metagrad.errors import ConfigError
from metagrad.experiments import registry
from metagrad.streams import Draw
from metagrad.tasks.base import check_shots

__all__ = ["THESIS_SEED", "SPLITS", "ThesisSplits", "thesis_tasks", "ThesisSine", "ThesisStream"]

THESIS_SEED = 1337                  # main.py's default --seed, used by its SineLoader
SPLITS = (70_000, 1_000, 2_000)     # sine_loader.SIZES: train / val / test tasks


@dataclass(frozen=True)
class ThesisSplits:
    """The thesis's meta-training (in its order), validation and test tasks of one support size."""

    train: TaskBatch
    val: TaskBatch
    test: TaskBatch


@functools.lru_cache(maxsize=2)
def thesis_tasks(k_shot: int, k_query: int = 50, seed: int = THESIS_SEED) -> ThesisSplits:
    """The tasks the thesis's code draws for ``k_shot`` support and ``k_query`` query points.

    ``RandomState.uniform(lo, hi)`` is ``lo + (hi - lo) * random_sample()``, one double per value, so
    one ``random_sample`` of ``2 + k + k_query`` doubles per task, split as the loader's three calls,
    is the same stream (``tests/test_turtle_data.py`` checks it against the loader's loop).
    ``task_params`` holds ``(A, 1, -p)`` (our ``A sin(w x - p)`` convention)."""
    check_shots("thesis_tasks", k_shot=k_shot, k_query=k_query)
    n, width = sum(SPLITS), 2 + k_shot + k_query
    u = np.random.RandomState(seed).random_sample((n, width))
    amp = 0.1 + (5.0 - 0.1) * u[:, :1]
    phase = 0.0 + (np.pi - 0.0) * u[:, 1:2]
    x = (-5.0 + (5.0 - -5.0) * u[:, 2:]).astype(np.float32)
    # the loader's `amplitude * np.sin(x + phase)`: Python floats with a float32 array compute in float32
    y = amp.astype(np.float32) * np.sin(x + phase.astype(np.float32))
    xt, yt = torch.from_numpy(x).unsqueeze(-1), torch.from_numpy(y).unsqueeze(-1)
    params = torch.from_numpy(np.concatenate([amp, np.ones_like(amp), -phase], 1).astype(np.float32))
    batch = TaskBatch(support_x=xt[:, :k_shot], support_y=yt[:, :k_shot], query_x=xt[:, k_shot:],
                      query_y=yt[:, k_shot:], task_params=params)
    a, b = SPLITS[0], SPLITS[0] + SPLITS[1]
    return ThesisSplits(train=batch[:a], val=batch[a:b], test=batch[b:])


class ThesisStream:
    """The thesis's meta-training tasks in its order, ``meta_batch`` per iteration, the same tasks for
    each of ``members`` runs (concatenated member by member, as ``Population.meta_losses`` expects)."""

    def __init__(self, pool: TaskBatch, meta_batch: int, members: int) -> None:
        self.pool, self.meta_batch, self.members, self.position = pool, meta_batch, members, 0

    def next(self) -> Draw:
        a, b = self.position, self.position + self.meta_batch
        if b > self.pool.n_tasks:
            raise ConfigError(f"thesis_sine: the thesis holds {self.pool.n_tasks} meta-training tasks; iteration "
                              f"{b // self.meta_batch} of meta-batch {self.meta_batch} asks for more")
        self.position = b
        return Draw(TaskBatch.cat([self.pool[a:b]] * self.members))

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


@dataclass(frozen=True)
class ThesisSine:
    """One split of the thesis's tasks as a task distribution (``fixed``, ``stream``; no ``sample``)."""

    split: str = "train"
    k_shot: int = 5
    k_query: int = 50
    loss: str = "mse"

    def tasks(self) -> TaskBatch:
        return getattr(thesis_tasks(self.k_shot, self.k_query), self.split)

    def fixed(self, n: int, seed: int = 0) -> TaskBatch:
        """The first ``n`` tasks of the split, in the thesis's order (``seed`` is not used: they are fixed)."""
        pool = self.tasks()
        if n > pool.n_tasks:
            raise ConfigError(f"thesis_sine: the thesis's {self.split} split holds {pool.n_tasks} tasks, {n} asked "
                              f"for; use --data metagrad or at most {pool.n_tasks}")
        return pool[:n]

    def stream(self, meta_batch: int, seeds: Sequence[int]) -> ThesisStream:
        return ThesisStream(self.tasks(), meta_batch, len(list(seeds)))


def thesis_sine(split: str = "train", k_shot: int = 5, k_query: int = 50) -> ThesisSine:
    return ThesisSine({"val": "val", "test": "test"}.get(split, "train"), k_shot, k_query)


registry.register_task("thesis_sine", thesis_sine)
