"""A task family of your own on metagrad's command line: 2-D linear regression, ``y = w . x + b``.

Each task draws its own ``w`` (2 numbers) and ``b`` from ``U[-scale, scale]``; a task's examples are
``x ~ U[-1, 1]^2`` with a little Gaussian noise on ``y``. Registering the builder under a name makes
``"task": {"name": "linear2d", ...}`` valid in any config that lists this file in its ``imports``
(``linear-maml.json`` beside it)::

    metagrad train examples/linear-maml.json --out runs/linear
    metagrad eval runs/linear --steps 5

The builder's keyword parameters (``k_shot``, ``k_query``, ``scale``, ``noise``) become the keys of the
config's ``task`` section; unknown keys are refused by name, as for the built-in families.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from metagrad import TaskBatch
from metagrad.experiments import registry
from metagrad.tasks.base import check_n_tasks, check_shots, uniform


@dataclass(frozen=True)
class Linear2D:
    k_shot: int = 5
    k_query: int = 10
    scale: float = 2.0
    noise: float = 0.05
    loss: str = "mse"          # the loss metagrad uses for this family
    in_features: int = 2       # what the built-in `mlp` model reads to size its input and output
    out_features: int = 1

    def __post_init__(self) -> None:
        check_shots("Linear2D", k_shot=self.k_shot, k_query=self.k_query)

    def sample(self, n_tasks: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """``n_tasks`` tasks, each with ``k_shot`` support and ``k_query`` query examples; all randomness
        from ``generator``, so a resumed run draws exactly the tasks it would have drawn."""
        check_n_tasks("Linear2D.sample", n_tasks, generator)
        w = uniform((n_tasks, 1, 2), -self.scale, self.scale, generator, torch.float64)
        b = uniform((n_tasks, 1, 1), -self.scale, self.scale, generator, torch.float64)
        x = uniform((n_tasks, self.k_shot + self.k_query, 2), -1.0, 1.0, generator, torch.float64)
        y = (x * w).sum(-1, keepdim=True) + b
        y = y + self.noise * torch.randn(y.shape, generator=generator, dtype=torch.float64)
        k = self.k_shot
        return TaskBatch(support_x=x[:, :k].to(dtype), support_y=y[:, :k].to(dtype),
                         query_x=x[:, k:].to(dtype), query_y=y[:, k:].to(dtype))


registry.register_task("linear2d", Linear2D)
