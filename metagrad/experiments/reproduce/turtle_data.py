"""004's own sine tasks, drawn again exactly as the thesis's code draws them.

The thesis's ``sine_loader.py`` (the version with fixed 70,000 / 1,000 / 2,000 task splits)
seeds numpy's legacy ``RandomState`` with the run's ``--seed`` (default 1337), then draws every task
once, in order -- ``A = uniform(0.1, 5)``, ``p = uniform(0, pi)``, ``x = uniform(-5, 5, k + 50)``
as float32, ``y = A sin(x + p)`` in float32 -- the training tasks first, then validation, then
test; and it pickles them per ``(k, k_test)``, so every run of a setting (30 in the thesis, one
process, its default seed) meta-trains on the same 70,000 tasks in the same order and is
validated and tested on the same tasks. ``thesis_tasks`` returns those tasks (as float32
``TaskBatch``es; query sets of 50).

Measured (``turtle_table6 --data thesis --models TrainFromScratch --seeds 30``), TrainFromScratch,
which learns nothing before the test tasks, lands on the thesis's Table 6 values on them (k = 5, 10,
15, 20: 7.417, 4.642, 4.236, 3.850 against 7.38 +- 0.12, 4.61 +- 0.03, 4.24 +- 0.01, 3.85 +- 0.01),
where our own test draws give 7.387, 5.009, 4.074 and 3.729: these are the thesis's test tasks, so
the comparison with its table carries no test-draw difference.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ...batch import TaskBatch
from ...tasks.base import check_shots

__all__ = ["DATA", "THESIS_SEED", "SPLITS", "ThesisSplits", "thesis_tasks", "check_data"]

THESIS_SEED = 1337                  # main.py's default --seed, used by its SineLoader
SPLITS = (70_000, 1_000, 2_000)     # sine_loader.SIZES: train / val / test tasks
# where the 004 sine experiments take their tasks from: "metagrad" draws its own (each seed its own
# meta-training stream; fixed validation and test draws), "thesis" the thesis's (``thesis_tasks``:
# the same 70,000 meta-training tasks in the same order for every seed, its validation and test tasks)
DATA = ("metagrad", "thesis")


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


def check_data(where: str, data: str, tasks: int, val_tasks: int, test_tasks: int) -> None:
    """Raise ``ValueError`` for an unknown task source, or sizes beyond the thesis's splits."""
    if data not in DATA:
        raise ValueError(f"{where}: data must be one of {', '.join(DATA)}, got {data!r}")
    if data == "thesis":
        for name, n, most in (("tasks", tasks, SPLITS[0]), ("val_tasks", val_tasks, SPLITS[1]),
                              ("test_tasks", test_tasks, SPLITS[2])):
            if n > most:
                raise ValueError(f"{where}: the thesis's tasks hold {most} {name.replace('_', ' ')}, "
                                 f"{name}={n} asks for more; use data='metagrad' or at most {most}")
