"""The cell store of the 004 sine experiments: one cached JSON summary per (model, steps, shots,
seed) under ``OUT/cells/``, trained when missing (the seeds of a cell together, as one
``Population``) and reused when it was made under the same protocol and settings; and 004's
across-run statistics of a cell (``aggregate``); the run lengths (``Protocol``) and the
transfer baselines' runs (``run_baseline``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from ...baselines import Finetuning, TrainFromScratch, merge_tasks
from ...batch import TaskBatch
from ...evaluation import iqr_kept, mean_ci95, robust_summary
from ...io import write_json
from .turtle_common import (BASELINES, QUERY, TASKS, TEST_TASKS, VAL_EVERY, VAL_TASKS, Record, Spec, base_model,
                            fixed_test_tasks, sine, spec)
from .turtle_train import train_meta
from .turtle_data import check_data, thesis_tasks

__all__ = ["COMPILE", "Protocol", "run_baseline", "run_cells", "cached_cells", "run_cell", "aggregate",
           "with_settings", "kept_seeds"]

# Whether to torch.compile a model's population meta-loss (measured, 5 seeds, T=5, 1 thread:
# so-MAML 19.7 -> 7.2 ms/it, LSTM 102 -> 39 ms/it, so-TURTLE 99 -> 233 ms/it). The evaluation
# (no gradients) is compiled for every model on long runs: 250 validation tasks, 5 members, T = 5,
# 1 thread: LSTM 15.4 -> 4.4 s, so-TURTLE 9.3 -> 3.6 s, so-MAML 0.18 -> 0.07 s.
COMPILE = {"so-MAML": True, "fo-MAML": True, "LSTM": True}


@dataclass(frozen=True)
class Protocol:
    """Run lengths: meta-training tasks, test tasks, validation cadence (004: 70,000 / 2,000 / 2,500 / 1,000),
    and where the tasks come from (``turtle_data.DATA``: ``"metagrad"``'s own draws or the thesis's tasks)."""

    tasks: int = TASKS
    test_tasks: int = TEST_TASKS
    val_every: Optional[int] = VAL_EVERY
    val_tasks: int = VAL_TASKS
    data: str = "metagrad"

    def __post_init__(self) -> None:
        check_data("Protocol", self.data, self.tasks, self.val_tasks if self.val_every else 0, self.test_tasks)

    @classmethod
    def quick(cls) -> "Protocol":
        return cls(tasks=300, test_tasks=100, val_every=None, val_tasks=0)

    def replace(self, tasks: Optional[int] = None, test_tasks: Optional[int] = None, val_every: Optional[int] = -1,
                val_tasks: Optional[int] = None, data: Optional[str] = None) -> "Protocol":
        """This protocol with the given fields changed (``None``, or ``-1`` for ``val_every``: keep;
        ``val_every=None``: no validation)."""
        return Protocol(tasks=self.tasks if tasks is None else tasks,
                        test_tasks=self.test_tasks if test_tasks is None else test_tasks,
                        val_every=self.val_every if val_every == -1 else val_every,
                        val_tasks=self.val_tasks if val_tasks is None else val_tasks,
                        data=self.data if data is None else data)


def run_baseline(name: str, k_shot: int, seed: int, tasks: int = TASKS, *,
                 test: Optional[TaskBatch] = None, data: str = "metagrad") -> Record:
    """``TrainFromScratch`` or ``Finetuning`` (pre-trained on ``tasks`` flat batches of 16 from the
    merged data of ``tasks`` meta-training tasks: its own draws, or with ``data="thesis"`` the thesis's)."""
    check_data("run_baseline", data, tasks, 0, 0)
    gen = torch.Generator().manual_seed(seed)
    model = base_model(seed)
    test = test if test is not None else fixed_test_tasks(k_shot, TEST_TASKS, data)
    t0 = time.perf_counter()
    iterations = 0
    if name == "TrainFromScratch":
        method: Any = TrainFromScratch(model)
    elif name == "Finetuning":
        method = Finetuning.from_model(model)
        # the merged meta-training data: all support and query points of `tasks` tasks
        pool = thesis_tasks(k_shot, QUERY).train[:tasks] if data == "thesis" else sine(k_shot).sample(tasks, gen)
        x, y = merge_tasks(pool)
        iterations = tasks
        method.pretrain(x, y, tasks, gen)
    else:
        raise ValueError(f"run_baseline: unknown baseline {name!r}; choose TrainFromScratch or Finetuning")
    t1 = time.perf_counter()
    mse = torch.cat([method.evaluate(test[i:i + 500], gen) for i in range(0, test.n_tasks, 500)])
    seconds = time.perf_counter() - t0
    return Record(mse, seconds, 1000 * (t1 - t0) / max(iterations, 1), iterations,
                  diverged=not bool(torch.isfinite(mse).all()))


def _cell_path(out: Path, model: str, steps: Optional[int], k_shot: int, seed: int) -> Path:
    return Path(out) / "cells" / f"{model}_T{steps if steps is not None else '-'}_k{k_shot}_s{seed}.json"


def kept_seeds(out: Path, model: str, steps: Optional[int], k_shot: int, n: int) -> list[int]:
    """Seeds ``0..n-1`` and every further seed with a kept run of the cell under ``out/cells`` (a cell
    given more runs, e.g. the thesis's 30 for a cheap baseline, is tabulated with all of them)."""
    stem = _cell_path(out, model, steps, k_shot, 0).name[:-len("0.json")]
    found = {int(f.name[len(stem):-len(".json")]) for f in (Path(out) / "cells").glob(f"{stem}*.json")
             if f.name[len(stem):-len(".json")].isdigit()}
    return sorted(set(range(n)) | found)


def _protocol_key(proto: Protocol) -> dict[str, Any]:
    # the task source is recorded only where it is not our own draws (what every earlier run used)
    return {"tasks": proto.tasks, "test_tasks": proto.test_tasks, "val_every": proto.val_every,
            "val_tasks": proto.val_tasks, **({"data": proto.data} if proto.data != "metagrad" else {})}


def with_settings(sp: Spec, settings: Optional[Mapping[str, Any]] = None) -> Spec:
    """``sp`` with some settings changed: ``Spec`` fields by name (``clip_value_scope``, ``meta_batch``,
    ...) and fields of its update rule as ``rule.<field>`` (``rule.prev_gate``, ``rule.beta``, ...).
    A run records the settings it was trained with, so runs made this way never mix with the
    default table's (give them their own ``--out``)."""
    settings = dict(settings or {})
    rule = {k[len("rule."):]: v for k, v in settings.items() if k.startswith("rule.")}
    own = {k: v for k, v in settings.items() if not k.startswith("rule.")}
    fields = [f.name for f in dataclasses.fields(Spec) if f.name not in ("name", "learner")]
    for k in own:
        if k not in fields:
            raise ValueError(f"with_settings: {sp.name} has no setting {k!r}; choose from {', '.join(fields)}, "
                             f"or rule.<field> for its update rule")
    learner = sp.learner
    if rule:
        made = sp.learner()
        names = [f.name for f in dataclasses.fields(made) if f.name != "name"]
        for k in rule:
            if k not in names:
                raise ValueError(f"with_settings: {sp.name}'s rule {type(made).__name__} has no field {k!r}; "
                                 f"choose rule.<one of {', '.join(names)}>")
        base = sp.learner
        learner = lambda: dataclasses.replace(base(), **rule)   # noqa: E731
        learner()   # the rule's own checks, now rather than at training
    return dataclasses.replace(sp, learner=learner, **own)


def _spec(model: str, steps: Optional[int], k_shot: int, settings: Optional[Mapping[str, Any]]) -> Spec:
    return with_settings(spec(model, steps, k_shot), settings)


def _settings(model: str, steps: Optional[int], k_shot: int,
              settings: Optional[Mapping[str, Any]] = None) -> Optional[dict[str, Any]]:
    # the baselines have no spec, so no settings to change
    return None if model in BASELINES else _spec(model, steps, k_shot, settings).describe()


def _effective(settings: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """``settings`` without the ones that change nothing: the value-clipping scope where no
    values are clipped (the one place this is decided; runs of 2026-12-01 recorded the scope
    there as ``"all"`` or ``None``)."""
    if settings is None or settings.get("clip_value") is not None:
        return settings
    return {k: v for k, v in settings.items() if k != "clip_value_scope"}


def _cached(path: Path, proto: Protocol, settings: Optional[dict[str, Any]] = None) -> Optional[dict[str, Any]]:
    """The run summary at ``path`` if it was produced under ``proto`` and under the same
    effective training ``settings`` (``Spec.describe``). Runs from before settings were recorded
    (2026-12-01) count as made under the settings of that time: every meta-parameter's gradient
    value-clipped (scope ``"all"``); the LSTM's are never reused (its gradient scale came later)."""
    if not path.exists():
        return None
    cached = json.loads(path.read_text())
    if cached.get("protocol") != _protocol_key(proto):
        return None
    if "spec" in cached:
        made = cached["spec"]
    elif cached.get("model") == "LSTM":
        return None
    else:
        made = None if settings is None else dict(settings, clip_value_scope="all")
    return cached if _effective(made) == _effective(settings) else None


def run_cells(out: Path, model: str, steps: Optional[int], k_shot: int, seeds: Sequence[int], proto: Protocol,
              log: Optional[Callable[[str], None]] = None, compile: Optional[bool] = None,
              changes: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """Train and test (model, steps, shots) once per seed, caching each run's summary in
    ``out/cells/``; the seeds not yet cached train together as one population.

    A cached run is reused when it was produced under the same protocol and settings, so a long
    reproduction can be resumed or extended seed by seed. ``compile``: default ``COMPILE``.
    ``changes``: settings that differ from ``spec``'s (``with_settings``; meta-learners only).
    """
    seeds = list(seeds)
    settings = _settings(model, steps, k_shot, changes)
    found = {s: _cached(_cell_path(out, model, steps, k_shot, s), proto, settings) for s in seeds}
    todo = [s for s in seeds if found[s] is None]
    if todo:
        test = fixed_test_tasks(k_shot, proto.test_tasks, proto.data)
        if model in BASELINES:
            recs = [run_baseline(model, k_shot, s, proto.tasks, test=test, data=proto.data) for s in todo]
        else:
            # compiling pays off only over long runs (about a minute to compile)
            long = proto.tasks >= 10_000
            use = COMPILE.get(model, False) and long if compile is None else compile
            recs = train_meta(_spec(model, steps, k_shot, changes), k_shot, steps, todo, proto.tasks,
                              val_every=proto.val_every, val_tasks=proto.val_tasks, test=test, log=log, compile=use,
                              compile_eval=long if compile is None else compile, data=proto.data,
                              checkpoint=_cell_path(out, model, steps, k_shot, todo[0]).with_suffix(".partial.pt"))
        for s, rec in zip(todo, recs):
            summary = {"model": model, "steps": steps, "k_shot": k_shot, "seed": s, "protocol": _protocol_key(proto),
                       **({"spec": settings} if settings else {}),
                       "ci95_tasks": mean_ci95(rec.test_mse)[1], **rec.summary()}
            found[s] = json.loads(json.dumps(summary))   # the same plain-JSON form as a cached cell
            write_json(_cell_path(out, model, steps, k_shot, s), found[s])
            if log:
                log(f"{model} T={steps} k={k_shot} seed={s}: mean MSE {rec.test_mse.mean():.4f} "
                    f"median {rec.test_mse.median():.4f} ({rec.seconds:.0f} s, {rec.ms_per_iteration:.1f} ms/it "
                    f"for {rec.population} run(s))" + ("" if rec.thesis_restore_mse is None else
                    f"; as the thesis's code tests: mean MSE {rec.thesis_restore_mse.mean():.4f}"))
    return [found[s] for s in seeds]


def cached_cells(out: Path, model: str, steps: Optional[int], k_shot: int, seeds: Sequence[int],
                 proto: Protocol, changes: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """The runs of (model, steps, shots) already cached under ``out/cells`` for ``proto`` and the
    settings (``spec`` with ``changes``; no training)."""
    settings = _settings(model, steps, k_shot, changes)
    found = (_cached(_cell_path(out, model, steps, k_shot, s), proto, settings) for s in seeds)
    return [c for c in found if c is not None]


def run_cell(out: Path, model: str, steps: Optional[int], k_shot: int, seed: int, proto: Protocol,
             log: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """``run_cells`` for one seed."""
    return run_cells(out, model, steps, k_shot, [seed], proto, log)[0]


def aggregate(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """004's across-run statistics of the per-seed mean test MSEs (``robust_summary``); with one
    seed the 95% interval is over test tasks instead."""
    means = [c["mean"] if not c["diverged"] else math.nan for c in cells]
    stats = robust_summary(means)
    stats["kept"] = iqr_kept(means)     # per run: in the statistics (finite, not an IQR outlier)
    if len(cells) == 1:
        stats["ci95"] = cells[0]["ci95_tasks"]
    stats["seeds"] = len(cells)
    stats["diverged_runs"] = sum(1 for c in cells if c["diverged"])
    stats["seconds"] = sum(c["seconds"] for c in cells)
    stats["ms_per_iteration"] = sum(c["ms_per_iteration"] for c in cells) / len(cells)
    return stats
