"""``train_runs``: train the runs (seeds) of one sweep cell with ``fit`` and test them.

The seeds of a cell train together: several seeds of a vmappable mode as one ``Population``
(each member with its own initialisation from ``build(seed)`` and its own task stream), or one
``MAML``. Validation (``eval.every`` iterations, ``eval.val_tasks`` fixed tasks) keeps each run's
best state; the test uses it (``eval.test_state="best"``) or the final state, and where the two
differ the final state is tested too (``evals[name]["final"]``), so a table can show both.

Baselines (``trainer`` in ``BASELINES``: TrainFromScratch, Finetuning, CentroidFinetuning) run
through ``baseline_runs.run_baseline``, for regression and classification tasks alike.

Fixed task sets (validation, test) come from ``held_out``: for image collections (``EpisodicImages``)
the lazy form ``(distribution, n, seed)`` that ``metagrad train`` and ``metagrad eval`` use (drawn
``eval.batch`` tasks at a time from one generator, so 600 miniImageNet tasks, 4.3 GB as float32, are
never held at once, and a cell tests on the very tasks ``metagrad train`` of its config tests on);
else ``fixed_set``: a distribution's own ``fixed(n, seed)`` where it has one (a paper's own task
files), else ``sample(n, Generator(seed))``. A distribution
with ``stream(meta_batch, seeds)`` supplies its own training stream (e.g. a fixed pool in a
paper's order); others get ``PopulationStream`` / ``SampledStream``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch

from ..batch import TaskBatch
from ..errors import ConfigError, Interrupted, TimeLimitReached
from ..evaluation import adaptation_curves, mean_ci95
from ..io import save_torch
from ..population import Population
from ..training import FitResult, fit
from .building import DTYPES as _DTYPES, build, make_module, optimizer as _optimizer, schedule as _schedule
from . import registry
from .baseline_runs import BASELINES, run_baseline
from .config import Config

__all__ = ["train_runs", "test_runs", "Trained", "fixed_set", "held_out", "task_chunks", "curve_measure", "BASELINES"]



# Settings that change neither what a cell computes nor its checkpoint's validity.
_NOT_IDENTITY = ("name", "threads", "device", "log_every", "checkpoint_every")

def fixed_set(task: Any, n: int, seed: int, dtype: torch.dtype = torch.float32) -> TaskBatch:
    """``n`` held-out tasks, the same for every model and run that asks with ``seed``."""
    if hasattr(task, "fixed"):
        return task.fixed(n, seed).to(dtype)
    return task.sample(n, torch.Generator().manual_seed(seed), dtype)


def held_out(task: Any, n: int, seed: int, dtype: torch.dtype = torch.float32) -> TaskBatch | tuple[Any, int, int]:
    """``n`` held-out tasks for ``seed``: lazy ``(task, n, seed)`` for image collections, else ``fixed_set``."""
    from ..tasks.episodic import EpisodicImages
    if isinstance(task, EpisodicImages) and not hasattr(task, "fixed"):
        return (task, n, seed)
    return fixed_set(task, n, seed, dtype)


def task_chunks(tasks: TaskBatch | tuple[Any, int, int], chunk: int,
                dtype: torch.dtype = torch.float32) -> Iterator[TaskBatch]:
    """The tasks of ``held_out`` in chunks of ``chunk``, drawn as ``evaluation.adaptation_curves`` draws them."""
    if isinstance(tasks, TaskBatch):
        for i in range(0, tasks.n_tasks, chunk):
            yield tasks[i:i + chunk]
        return
    dist, total, seed = tasks
    g = torch.Generator().manual_seed(seed)
    for i in range(0, total, chunk):
        yield dist.sample(min(chunk, total - i), g, dtype)


def _stats(values: torch.Tensor, metric: str) -> dict[str, Any]:
    """Statistics of the per-task metric after the last step; for ``[n, steps + 1]`` curves also the
    mean and 95% interval after every step (``curve``, ``curve_ci95``: what a figure of the adaptation
    curve needs, e.g. 000 Fig. 2)."""
    curve = None
    if values.dim() == 2:
        curve, values = values.to(torch.float64), values[:, -1]
    v = values.to(torch.float64)
    finite = bool(torch.isfinite(v).all())
    mean, ci = mean_ci95(v) if finite else (math.nan, math.nan)
    return {"metric": metric, "mean": mean, "median": float(v.median()) if finite else math.nan,
            "std_tasks": float(v.std()) if finite and v.numel() > 1 else math.nan, "ci95_tasks": ci,
            "n_tasks": int(v.numel()), "diverged": not finite,
            **({} if curve is None or curve.shape[1] < 2 else _curve(curve))}


def _curve(c: torch.Tensor) -> dict[str, list[float]]:
    stats = [mean_ci95(c[:, t]) if bool(torch.isfinite(c[:, t]).all()) else (math.nan, math.nan)
             for t in range(c.shape[1])]
    return {"curve": [m for m, _ in stats], "curve_ci95": [h for _, h in stats]}


def _clip_keys(scope: str) -> Optional[Callable[[str], bool]]:
    return None if scope == "all" else (lambda n: n.startswith("model."))


def train_runs(cfg: Config, seeds: Sequence[int], evals: Mapping[str, Sequence[str]], *, trainer: str = "meta",
               checkpoint: Optional[Path] = None, log: Callable[[str], None] = print,
               label: str = "train", measures: Sequence[str] = (),
               keep: Optional[Callable[[int], Path]] = None, deadline: Optional[float] = None) -> list[dict[str, Any]]:
    """Train ``cfg`` once per seed and test every evaluation (``evals[name]``: config overrides at
    test time); one ``{"evals": {name: stats}, "train": {...}, "measures": {name: value}}`` per seed.
    ``keep(seed)``: where to save each meta-trained run (a ``Trained`` with its config), so that other
    evaluations of it need no training (``test_runs``). ``deadline`` (a ``time.time()``): past it, training
    checkpoints and raises ``TimeLimitReached`` (the same call with the same ``checkpoint`` continues).

    A run stopped by ``outer.nonfinite="stop"`` is tested at its best validated state where it has
    one; without one its evaluations are marked ``diverged``. ``measures`` name functions of
    ``registry.MEASURES`` computed on each tested state (``nan`` for a diverged run)."""
    if trainer in BASELINES:
        return [run_baseline(cfg.override([f"seed={s}"]), trainer, evals) for s in seeds]
    if trainer not in ("meta", "init"):   # init: no meta-training, the seed's initialisation is tested (000 Fig. 4)
        raise ConfigError(f"train_runs: unknown trainer {trainer!r}; choose meta, init or {', '.join(BASELINES)}")
    seeds = list(seeds)
    if cfg.algorithm != "maml" and len(seeds) > 1:   # only MAML's seeds train together (a Population)
        out = []
        for s in seeds:   # each seed its own partial checkpoint, removed once its summary is made
            ck = None if checkpoint is None else checkpoint.with_name(f"{checkpoint.stem}.seed{s}{checkpoint.suffix}")
            out += train_runs(cfg, [s], evals, trainer=trainer, checkpoint=ck, log=log, label=label, measures=measures,
                              keep=keep, deadline=deadline)
            if ck is not None:
                ck.unlink(missing_ok=True)
        return out
    if any(m not in registry.MEASURES for m in measures):
        raise ConfigError(f"train_runs: unknown measure in {list(measures)}; choose from {', '.join(registry.MEASURES)}")
    dtype = _DTYPES[cfg.dtype]
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    module, stream, members, task = make_module(cfg, seeds)
    scope, clip_value = cfg.outer["clip_scope"], cfg.outer["clip_value"]
    opt = _optimizer(cfg, module)
    validate = None
    if cfg.eval["every"] and cfg.eval["measure"] is not None:   # a number of the state itself (e.g. ||grad F||)
        validate = curve_measure(cfg.eval["measure"], task)
    elif cfg.eval["every"]:
        val = held_out(build(cfg, "val")[1], cfg.eval["val_tasks"], cfg.eval["seed"] + 1, dtype)
        steps = cfg.eval["steps"]

        def validate(m: Any) -> torch.Tensor:
            c = adaptation_curves(m, val, steps, chunk=cfg.eval["batch"], dtype=dtype)
            return c[..., -1].mean(-1).reshape(-1)
    t0 = time.perf_counter()
    res = FitResult(0, cfg.outer["iterations"], None, [None] * len(seeds), [math.nan] * len(seeds),
                    [[] for _ in seeds], [None] * len(seeds), [0] * len(seeds)) if trainer == "init" else \
        fit(module, stream, opt, cfg.outer["iterations"], schedule=_schedule(cfg, members[0], task),
              clip_value=None if scope == "init_per_task" else clip_value, clip_keys=_clip_keys(scope),
              clip_norm=cfg.outer["clip_norm"], nonfinite=cfg.outer["nonfinite"], explode=cfg.outer["explode"],
              validate=validate, val_every=cfg.eval["every"], maximize=members[0].metric_name == "accuracy",
              checkpoint=checkpoint, checkpoint_every_s=300.0, key={"config": cfg.identity(_NOT_IDENTITY), "seeds": seeds},
              upgrade_key=lambda k: {**k, "config": Config.stored_identity(k.get("config"), _NOT_IDENTITY)},
              progress=label, on_record=lambda r: None, deadline=deadline)
    if res.stopped == "deadline":
        raise TimeLimitReached(label, res.iteration, res.iterations)
    if res.stopped == "signal":   # not caught by the sweep: the whole command stops, the checkpoint kept
        raise Interrupted(label, res.iteration, res.iterations, res.signum, "the same command")
    # fit's wall clock over all its parts (a run resumed across sessions counts every part, not the last)
    seconds = res.wall_seconds if trainer != "init" else time.perf_counter() - t0
    pop = isinstance(module, Population)
    final = [module.member_state(p) for p in range(len(seeds))] if pop else \
        [{n: v.detach().clone() for n, v in module.named_parameters()}]
    use_best = cfg.eval["test_state"] == "best" and cfg.eval["every"] > 0
    trained = []
    for p, s in enumerate(seeds):
        best = use_best and res.best[p] is not None
        info = {"iterations": res.iteration, "seconds": seconds / len(seeds), "ms_per_iteration": res.ms_per_iteration,
                "population": len(seeds), "best_val": res.best_val[p], "val_curve": res.val_curves[p],
                "nonfinite_at": res.nonfinite_at[p], "skipped": res.skipped[p],
                "state": "best_validated" if best else "final"}
        trained.append(Trained(res.best[p] if best else final[p], final[p] if use_best else None, info,
                               lost=res.nonfinite_at[p] is not None and cfg.outer["nonfinite"] == "stop" and not best))
        if keep is not None and trainer == "meta":
            save_torch(keep(s), {"schema": 1, "seed": s, "config": cfg.identity(_NOT_IDENTITY), **trained[-1].to_dict()})
    return test_runs(cfg, seeds, trained, evals, measures)


@dataclass
class Trained:
    """One meta-trained run: ``state`` is the one tested (the best validated, else the final), ``final``
    the final state where it is tested too (``eval.test_state="best"``), ``train`` what ``fit`` reported,
    ``lost`` a run stopped by a non-finite loss with no validated state (its evaluations are marked
    ``diverged``)."""

    state: dict[str, torch.Tensor]
    final: Optional[dict[str, torch.Tensor]]
    train: dict[str, Any]
    lost: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "final": self.final, "train": self.train, "lost": self.lost}

    @staticmethod
    def load(path: Path) -> "Trained":
        """A run kept by ``train_runs(..., keep=)``."""
        d = torch.load(path, map_location="cpu", weights_only=False)
        return Trained(d["state"], d["final"], d["train"], d["lost"])


def test_runs(cfg: Config, seeds: Sequence[int], trained: Sequence[Trained], evals: Mapping[str, Sequence[str]],
              measures: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Test trained runs: ``{"evals": {name: stats}, "train": ..., "measures": {name: value}}`` per seed
    (``evals[name]``: config overrides at test time), ``train_runs``' summaries without training."""
    out = [{"evals": {}, "train": dict(t.train)} for t in trained]
    use_final = [t.final is not None for t in trained]
    for name, overrides in evals.items():
        ecfg = cfg.override(list(overrides))
        algo, task = build(ecfg, "test")
        metric = algo.metric_name
        test = held_out(task, ecfg.eval["tasks"], ecfg.eval["seed"], _DTYPES[cfg.dtype])
        t0 = time.perf_counter()
        tested = _test(ecfg, seeds, [t.state for t in trained], test, f"test {name}")
        seconds = (time.perf_counter() - t0) / len(seeds)   # a seed's share, as train's seconds
        for p, t in enumerate(trained):
            out[p]["evals"][name] = {**_stats(tested[p], metric), "seconds": seconds}
            out[p]["evals"][name]["diverged"] |= t.lost
            if use_final[p]:
                (fin,) = _test(ecfg, [seeds[p]], [t.final], test, f"test {name} (final state)")
                out[p]["evals"][name]["final"] = _stats(fin, metric)
    for p, s in enumerate(seeds):
        algo = _member(cfg, s, trained[p].state, "train") if measures else None
        out[p]["measures"] = {m: math.nan if trained[p].lost else float(registry.MEASURES[m](algo)) for m in measures}
        curve = trained[p].train.get("val_curve")
        if cfg.eval["measure"] is not None and curve:   # the curve's last value and its tail's mean
            name, values = cfg.eval["measure"], [v for _, v in curve]
            tail = values[len(values) - max(1, len(values) // 5):]
            out[p]["measures"].update({f"{name}_final": values[-1], f"{name}_tail": sum(tail) / len(tail)})
    return out


def curve_measure(name: str, task: Any) -> Callable[[Any], list[float]]:
    """``fit``'s ``validate`` for ``eval.measure``: ``registry.CURVE_MEASURES[name]`` of every member."""
    fn = registry.CURVE_MEASURES[name]

    def measure(module: Any) -> list[float]:
        members = [module.member(p) for p in range(module.size)] if isinstance(module, Population) else [module]
        return [fn(m, task) for m in members]
    return measure


def _member(cfg: Config, seed: int, state: dict[str, torch.Tensor], split: str = "test") -> Any:
    """Run ``seed`` of ``cfg`` rebuilt and given ``state``."""
    algo = build(cfg.override([f"seed={seed}"]), split)[0]
    named = dict(algo.named_parameters())
    with torch.no_grad():
        for n, v in state.items():
            named[n].copy_(v)
    return algo


def _test(cfg: Config, seeds: Sequence[int], states: Sequence[dict[str, torch.Tensor]],
          test: TaskBatch | tuple[Any, int, int], desc: str = "test") -> list[torch.Tensor]:
    """Per-task test metric after ``0..steps`` steps (``[n, steps + 1]``) of each state under ``cfg`` (its learner may differ from training's, e.g.
    an MT-net's hard mask: then each run is rebuilt from ``cfg`` and given its state)."""
    steps = cfg.eval["steps"]
    out = []
    for p, s in enumerate(seeds):
        algo = _member(cfg, s, states[p])
        out.append(adaptation_curves(algo, test, steps, chunk=cfg.eval["batch"], dtype=_DTYPES[cfg.dtype],
                                     progress=True, desc=f"{desc}, seed {s}"))   # [n, steps + 1]
    return out
