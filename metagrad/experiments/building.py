"""Build what a config describes: the algorithm and its tasks, the optimiser, the step-size schedule,
and the module and task stream that ``fit`` trains (one run, or several seeds as a ``Population``)."""
from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import torch

from ..algorithm import MAML
from ..batch import TaskBatch
from ..device import resolve_device
from ..distributed import World
from ..errors import ConfigError
from ..population import Population
from ..schedules import AdaptiveMetaStep
from ..smoothness import estimate_smoothness
from ..streams import PopulationStream, SampledStream, TaskStream
from ..schedules import constant_schedule, cosine_schedule
from . import registry
from .config import Config

__all__ = ["build", "make_module", "optimizer", "schedule", "DTYPES"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build(cfg: Config, split: str = "train") -> tuple[MAML, Any]:
    """Build ``(algorithm, task distribution of split)`` from a config (model seeded by ``cfg.seed``,
    on ``cfg.device``): ``registry.ALGORITHMS[cfg.algorithm]`` (a ``MAML``, 000's task-conditioned
    oracle or a black-box learner such as SNAIL)."""
    device = resolve_device(cfg.device)
    task = registry.build("task", registry.TASKS, cfg.task["name"], cfg.section_options("task"), split=split)
    torch.manual_seed(cfg.seed)

    def make_model(view: Any) -> torch.nn.Module:
        return registry.build("model", registry.MODELS, cfg.model["name"], cfg.section_options("model"), view)
    algo = registry.ALGORITHMS[cfg.algorithm](cfg, task, make_model)
    if split == "test" and cfg.eval["on"] == "support":
        task = SupportAsQuery(task)
    return algo.to(DTYPES[cfg.dtype]).to(device), task


class SupportAsQuery:
    """Test tasks whose query set is their support set (``eval.on="support"``): the metric on the
    data a model adapts to, i.e. its training accuracy (000 Fig. 4's "train" curves)."""

    def __init__(self, task: Any) -> None:
        self.task = task

    def __getattr__(self, name: str) -> Any:
        if name == "task":   # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.task, name)

    def sample(self, n_tasks: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> TaskBatch:
        b = self.task.sample(n_tasks, generator, dtype)
        return TaskBatch(b.support_x, b.support_y, b.support_x, b.support_y, b.task_params)

    def fixed(self, n: int, seed: int) -> TaskBatch:
        b = self.task.fixed(n, seed) if hasattr(self.task, "fixed") else self.task.sample(n, torch.Generator().manual_seed(seed))
        return TaskBatch(b.support_x, b.support_y, b.support_x, b.support_y, b.task_params)


def optimizer(cfg: Config, algo: torch.nn.Module) -> torch.optim.Optimizer:
    """The outer optimiser of ``cfg.outer`` (Adam or plain SGD at ``outer.lr``) over ``algo``'s meta-parameters."""
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg.outer["optimizer"]]
    if cfg.outer["adaptive_L"] is not None and cls is not torch.optim.SGD:
        warnings.warn("002's adaptive meta step size is a step size for plain SGD (its theorems' setting); with "
                      f"outer.optimizer={cfg.outer['optimizer']!r} it scales Adam's step instead", stacklevel=2)
    return cls(algo.parameters(), lr=cfg.outer["lr"])


def schedule(cfg: Config, algo: Optional[MAML] = None, task: Any = None) -> Any:
    """``fit``'s schedule for ``cfg``: 002's adaptive step (its ``L``/``rho`` given, or ``"estimate"``d
    at ``algo``'s initial parameters on ``outer.meta_batch`` tasks of ``task``, seeded by ``seed``),
    cosine or constant."""
    if cfg.outer["adaptive_L"] is not None:
        L, rho, est = cfg.outer["adaptive_L"], cfg.outer["adaptive_rho"], None
        if "estimate" in (L, rho):
            if algo is None or task is None:
                raise ConfigError("schedule: outer.adaptive_L/adaptive_rho=\"estimate\" needs the algorithm and its tasks")
            est = estimate_smoothness(algo, task, cfg.outer["meta_batch"],
                                      generator=torch.Generator().manual_seed(cfg.seed))
            L, rho = est.L if L == "estimate" else L, est.rho if rho == "estimate" else rho
        return AdaptiveMetaStep(L, rho, cfg.outer["adaptive_c"], estimate=est)
    if cfg.outer["schedule"] == "cosine":
        return cosine_schedule(cfg.outer["lr"], cfg.outer["iterations"])
    return constant_schedule(cfg.outer["lr"])


def check_world(cfg: Config, world: World, n_seeds: int = 1) -> None:
    """Refuse, before anything is written, what does not run data-parallel under ``torchrun``: a
    meta-batch that does not split evenly over the ranks, or a ``Population``."""
    if world.size == 1:
        return
    if n_seeds > 1 or (cfg.outer["clip_scope"] == "init_per_task" and cfg.outer["clip_value"] is not None):
        raise ConfigError("train: several seeds or outer.clip_scope=init_per_task (a Population) do not run under "
                          "torchrun; train one seed per process, or clip with another outer.clip_scope")
    world.check_meta_batch(cfg.outer["meta_batch"])


def make_module(cfg: Config, seeds: Sequence[int], world: World = World()) -> tuple[MAML | Population, TaskStream, list[MAML], Any]:
    """``(module, stream, members, task)`` for training ``cfg`` once per seed: one ``MAML`` and a
    ``SampledStream``, or a ``Population`` and a ``PopulationStream`` for several seeds (or for
    ``outer.clip_scope="init_per_task"``, whose per-task clamp lives in ``Population``). A task
    distribution with ``stream(meta_batch, seeds)`` supplies its own stream (a paper's task pool)."""
    seeds = list(seeds)
    check_world(cfg, world, len(seeds))
    dtype, dev = DTYPES[cfg.dtype], resolve_device(cfg.device)
    built = [build(cfg.override([f"seed={s}"]), "train") for s in seeds]
    members, task = [a for a, _ in built], built[0][1]
    mb = cfg.outer["meta_batch"]
    per_task = cfg.outer["clip_scope"] == "init_per_task" and cfg.outer["clip_value"] is not None
    if len(seeds) == 1 and not per_task:
        stream = task.stream(mb, seeds) if hasattr(task, "stream") else \
            SampledStream(task, mb, seeds[0], dtype=dtype, device=dev, world=world,
                          hvp=cfg.outer["hvp_batch"], beta=cfg.outer["adaptive_L"] is not None,
                          beta_tasks=cfg.outer["beta_tasks"], beta_shots=cfg.outer["beta_shots"])
        return members[0], stream, members, task
    if cfg.outer["hvp_batch"] is not False:
        raise ConfigError("train: outer.hvp_batch (002's D_h) trains one seed at a time; give one seed")
    if cfg.algorithm != "maml":
        raise ConfigError(f"train: algorithm {cfg.algorithm!r} trains one seed at a time (a Population vmaps MAML "
                          "only); train each seed on its own")
    if cfg.inner["mode"] == "hessian_free":
        raise ConfigError("train: hessian_free trains one seed at a time and has no per-task clamp "
                          "(outer.clip_scope=init_per_task); use second_order or first_order")
    pop = Population(members, compile=cfg.compile, task_clip=cfg.outer["clip_value"] if per_task else None)
    stream = task.stream(mb, seeds) if hasattr(task, "stream") else PopulationStream(task, mb, seeds, dtype=dtype, device=dev)
    return pop, stream, members, task
