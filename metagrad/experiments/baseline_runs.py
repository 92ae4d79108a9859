"""004's transfer baselines as sweep trainers: TrainFromScratch, Finetuning, CentroidFinetuning.

``run_baseline(cfg, name, evals)`` trains (where the baseline pre-trains) and tests one seed of a
config that ``metagrad train`` could also meta-train, so a table's baseline row and its
meta-learners' rows share the task, model and test tasks (004 section 2.2, appendix A.1):

* Regression (sine): pre-training on the merged data of ``outer.iterations`` meta-training tasks,
  flat batches of 16 (``Finetuning`` only); the test protocol retrains the output layer.
* Classification (``EpisodicImages``: Omniglot, miniImageNet, CUB): pre-training on flat batches of
  16 images with their *global* class labels (task labels 0..N-1 mean nothing across tasks), over
  every training class; ``outer.iterations`` batches. The network is the config's model split into
  a body (everything before its last linear layer, e.g. conv4's features) and a head: Finetuning
  pre-trains a head over all training classes and trains a new ``n_way`` head per test task;
  centroid finetuning (Chen et al.'s Baseline++) uses cosine centroids instead. TrainFromScratch
  trains every parameter of the config's model from its initialisation on each task.

Every baseline tests with 004's protocol (100 Adam steps of 1e-3 on batches of 4 support examples,
the best of every 25 steps by support loss), ``eval.batch`` tasks at a time.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .building import DTYPES, build
from .config import Config

__all__ = ["BASELINES", "run_baseline", "flat_classes"]

BASELINES = ("TrainFromScratch", "Finetuning", "CentroidFinetuning")


class _ToUnit(nn.Module):
    """``uint8`` pixels to floats in ``[0, 1]``; floats pass through. The flat pre-training set stays
    ``uint8`` (miniImageNet's 38,400 training images are 3.3 GB as float32) and converts per batch,
    while test tasks arrive as floats."""

    def forward(self, x: Tensor) -> Tensor:
        return x.float() / 255.0 if x.dtype == torch.uint8 else x


def flat_classes(task: Any) -> tuple[Tensor, Tensor, int]:
    """Every training image of an ``EpisodicImages`` with its global class id (rotations as classes):
    ``(x uint8 [N, C, H, W], y [N], n_classes)``."""
    if not hasattr(task, "base_classes"):
        raise ConfigError(f"baselines: {type(task).__name__} is not an image collection; classification "
                          f"baselines need an EpisodicImages task (omniglot, miniimagenet, cub)")
    xs, ys = [], []
    rot = len(task.rotations)
    for j, c in enumerate(task.base_classes.tolist()):
        imgs = task.images[int(task.starts[c]):int(task.starts[c] + task.counts[c])]
        for r, turns in enumerate(task.rotations):
            xs.append(torch.rot90(imgs, turns, dims=(-2, -1)) if turns else imgs)
            ys.append(torch.full((imgs.shape[0],), j * rot + r, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys), len(task.base_classes) * rot


def _body_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """``(body, last linear layer)`` of a conv4 (``features`` + ``head``) or a sequential network."""
    if hasattr(model, "features") and isinstance(getattr(model, "head", None), nn.Linear):
        return nn.Sequential(_ToUnit(), model.features, nn.Flatten()), model.head
    from ..baselines import split_head
    body, head = split_head(model)
    return nn.Sequential(_ToUnit(), body), head


def _classification(cfg: Config, name: str, algo: Any, task: Any, gen: torch.Generator) -> Any:
    from ..baselines import CentroidFinetuning, Finetuning, TrainFromScratch
    if name == "TrainFromScratch":
        return TrainFromScratch(algo.model, "cross_entropy")
    body, head = _body_head(algo.model)
    x, y, n_classes = flat_classes(task)
    steps = cfg.outer["iterations"]
    if name == "Finetuning":
        wide = nn.Linear(head.in_features, n_classes).to(head.weight)
        method: Any = Finetuning(body, wide, "cross_entropy", new_head=task.n_way)
    else:
        method = CentroidFinetuning(body, head.in_features, n_classes).to(head.weight)
    method.pretrain(x, y, steps, gen)
    return method


def _regression(cfg: Config, name: str, algo: Any, task: Any, gen: torch.Generator) -> Any:
    from ..baselines import Finetuning, TrainFromScratch, merge_tasks
    from .train_runs import fixed_set
    if name == "TrainFromScratch":
        return TrainFromScratch(algo.model)
    if name == "CentroidFinetuning":
        raise ConfigError("baselines: CentroidFinetuning is for classification (cosine centroids); the task "
                          f"{cfg.task['name']!r} is regression; use Finetuning")
    method = Finetuning.from_model(algo.model)
    n, dtype = cfg.outer["iterations"], DTYPES[cfg.dtype]
    pool = fixed_set(task, n, cfg.seed, dtype) if hasattr(task, "fixed") else task.sample(n, gen, dtype)
    x, y = merge_tasks(pool)
    method.pretrain(x, y, n, gen)
    return method


def run_baseline(cfg: Config, name: str, evals: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Train (pre-train) baseline ``name`` for ``cfg.seed`` and test each evaluation; a run summary."""
    from .train_runs import _stats, held_out, task_chunks
    if name not in BASELINES:
        raise ConfigError(f"train_runs: unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    dtype = DTYPES[cfg.dtype]
    algo, task = build(cfg, "train")
    gen = torch.Generator().manual_seed(cfg.seed)
    classify = task.loss == "cross_entropy"
    device = next(algo.parameters()).device   # cfg.device; tasks are drawn on the CPU and moved
    t0 = time.perf_counter()
    method = (_classification if classify else _regression)(cfg, name, algo, task, gen)
    result: dict[str, Any] = {"evals": {}, "train": {"iterations": cfg.outer["iterations"], "population": 1}}
    chunk = cfg.eval["batch"] if classify else 500   # an image task's 100-step protocol is memory-heavy
    for ename, overrides in evals.items():
        ecfg = cfg.override(list(overrides))
        test = held_out(build(ecfg, "test")[1], ecfg.eval["tasks"], ecfg.eval["seed"], dtype)
        v = torch.cat([method.evaluate(b.to(device), gen).cpu() for b in task_chunks(test, chunk, dtype)])
        result["evals"][ename] = _stats(v, "accuracy" if classify else "mse")
    result["train"]["seconds"] = time.perf_counter() - t0
    return result
