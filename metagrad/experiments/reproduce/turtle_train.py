"""Meta-training and testing for 004's sine protocol (``turtle_common``): the runs of one cell.

``train_meta`` trains a spec's seeds together as one vmapped ``Population`` for 70,000 tasks
(Adam 1e-3), validates every 2,500 tasks on 1,000 fixed tasks, keeps each run's best validated
state and tests it on the 2,000 fixed test tasks (004 appendix A.1), checkpointing so that a cell
resumes exactly after a crash. Split from ``turtle_common`` (the protocol's constants and
settings) to keep each file small.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ...algorithm import MAML
from ...batch import TaskBatch
from ...io import save_torch
from ...population import Population
from .turtle_common import (QUERY, TASKS, TEST_TASKS, VAL_EVERY, VAL_SEED, VAL_TASKS, Record, Spec, base_model,
                            clip_grads, fixed_tasks, fixed_test_tasks, sine)
from .turtle_data import check_data, thesis_tasks

__all__ = ["train_meta", "evaluate_meta", "evaluate_population", "build_meta", "build_population",
           "thesis_meta_batch"]


@torch.no_grad()
def evaluate_meta(algo: MAML, tasks: TaskBatch, steps: int, chunk: int = 250) -> torch.Tensor:
    """Query MSE after ``steps`` inner steps for every task (in chunks, to bound memory)."""
    out = [algo.adaptation_curve(tasks[i:i + chunk], steps)[:, -1] for i in range(0, tasks.n_tasks, chunk)]
    return torch.cat(out)


@torch.no_grad()
def evaluate_population(pop: Population, tasks: TaskBatch, steps: int, chunk: int = 50) -> torch.Tensor:
    """``evaluate_meta`` for every member at once: query MSE after ``steps`` steps, ``[P, n_tasks]``.

    Chunks of 50 tasks: with 5 members the LSTM's per-coordinate state of 250 tasks is about
    0.7 GB per tensor, and the smaller chunk was measured 1.4x faster (eager, 1 thread)."""
    out = [pop.adaptation_curves(tasks[i:i + chunk], steps)[..., -1] for i in range(0, tasks.n_tasks, chunk)]
    return torch.cat(out, dim=1)


def build_meta(sp: Spec, steps: int, seed: int) -> MAML:
    """The ``MAML`` object of spec ``sp`` with its base-learner and rule drawn from ``seed``."""
    model = base_model(seed)
    torch.manual_seed(seed + 1)      # the rule's own initialisation
    return MAML(model, learner=sp.learner(), inner_steps=steps, mode=sp.mode, grad_clip=sp.grad_clip)


def build_population(sp: Spec, steps: int, seeds: Sequence[int], **kwargs: Any) -> Population:
    """The seeds of spec ``sp`` as one ``Population`` (``build_meta`` per seed), clamping each task's
    meta-gradient of the initialisation where ``sp`` asks for it (``clip_value_scope="init_per_task"``)."""
    task_clip = sp.clip_value if sp.clip_value_scope == "init_per_task" else None
    return Population([build_meta(sp, steps, s) for s in seeds], task_clip=task_clip, **kwargs)


def thesis_meta_batch(pool: TaskBatch, it: int, meta_batch: int, members: int) -> TaskBatch:
    """Meta-iteration ``it``'s (from 1) batch on the thesis's tasks: its next ``meta_batch`` tasks
    in its order, the same for every one of the ``members`` (the thesis trains all runs of a
    setting on one task stream; ``turtle_data``)."""
    return TaskBatch.cat([pool[(it - 1) * meta_batch:it * meta_batch]] * members)


def train_meta(sp: Spec, k_shot: int, steps: int, seeds: Sequence[int], tasks: int = TASKS, *,
               val_every: Optional[int] = VAL_EVERY, val_tasks: int = VAL_TASKS, test: Optional[TaskBatch] = None,
               log: Optional[Callable[[str], None]] = None, compile: bool = False, compile_eval: bool = False,
               checkpoint: Optional[Path] = None, checkpoint_every_s: float = 300.0,
               data: str = "metagrad") -> list[Record]:
    """Meta-train ``sp`` once per seed on ``tasks`` sine tasks, keep each run's best validated
    state, test it; one ``Record`` per seed.

    The seeds train together as one ``Population`` (one vmapped computation; Adam and value
    clipping act element by element and norm clipping per member, so each run is the run it
    would be alone: its own initialisation from ``build_meta(seed)`` and its own task stream
    from ``Generator().manual_seed(seed)``). ``compile``: ``torch.compile`` the population's
    meta-loss (one-time compilation of about a minute; measured faster for MAML and the LSTM,
    slower for TURTLE; see ``turtle_cells.COMPILE``). ``compile_eval``: compile the validation and test
    evaluation (``Population(compile_curves=True)``; measured 2.5-4x faster for every model).

    ``checkpoint``: a file where the whole training state (members, Adam, task generators, best
    states, curves) is saved atomically every ``checkpoint_every_s`` seconds; a run started
    again with the same arguments continues from it exactly, so one long cell can span several
    sessions. The file is removed when the run ends.

    A member whose meta-gradient is not finite is logged once (``Record.nonfinite_at``); with
    ``sp.nonfinite="skip"`` that update is skipped for it (``Population.step_skipping``), counted
    in ``Record.skipped``.
    """
    seeds = list(seeds)
    check_data("train_meta", data, tasks, val_tasks if val_every else 0, 0)
    pop = build_population(sp, steps, seeds, compile=compile, compile_curves=compile_eval)
    opt = torch.optim.Adam(pop.parameters(), lr=1e-3)
    dist, gens = sine(k_shot), [torch.Generator().manual_seed(s) for s in seeds]
    splits = thesis_tasks(k_shot, QUERY) if data == "thesis" else None
    pool = splits.train if splits is not None else None     # in the thesis's order, the same for every member
    if not val_every:
        val = None
    else:
        val = splits.val[:val_tasks] if splits is not None else fixed_tasks(k_shot, val_tasks, VAL_SEED)
    best: list[Optional[dict[str, torch.Tensor]]] = [None] * len(seeds)
    best_val, curves = [math.inf] * len(seeds), [[] for _ in seeds]
    nonfinite_at: list[Optional[int]] = [None] * len(seeds)
    skipped = [0] * len(seeds)
    iterations = max(1, tasks // sp.meta_batch)
    every = max(1, (val_every or tasks) // sp.meta_batch)
    # the settings belong to the key: a checkpoint never resumes under other settings
    key = {"model": sp.name, "steps": steps, "k_shot": k_shot, "seeds": seeds, "tasks": tasks,
           "val_every": val_every, "val_tasks": val_tasks, "spec": sp.describe(),
           **({"data": data} if data != "metagrad" else {})}
    t0 = time.perf_counter()
    train_time, first, earlier = 0.0, 1, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        ck = torch.load(checkpoint, weights_only=False)
        if ck["key"] == key:
            pop.load_state_dict(ck["population"])
            opt.load_state_dict(ck["optimizer"])
            for g, state in zip(gens, ck["generators"]):
                g.set_state(state)
            best, best_val, curves = ck["best"], ck["best_val"], ck["curves"]
            nonfinite_at = ck.get("nonfinite_at", nonfinite_at)   # absent in checkpoints before 2026-12-02
            skipped = ck.get("skipped", skipped)
            train_time, first, earlier = ck["train_time"], ck["iteration"] + 1, ck["elapsed"]
            if log:
                log(f"{sp.name} T={steps} k={k_shot} seeds={seeds}: resumed at iteration {ck['iteration']}")
    last_save = time.perf_counter()
    for it in range(first, iterations + 1):
        t1 = time.perf_counter()
        if pool is not None:
            batch = thesis_meta_batch(pool, it, sp.meta_batch, len(seeds))
        else:
            batch = TaskBatch.cat([dist.sample(sp.meta_batch, g) for g in gens])
        losses = pop.meta_losses(batch)
        opt.zero_grad()
        losses.sum().backward()       # members share nothing: each slice gets its own gradient
        bad = _nonfinite_members(pop)
        for p in bad:
            if sp.nonfinite == "skip":
                skipped[p] += 1
            if nonfinite_at[p] is None:
                nonfinite_at[p] = it * sp.meta_batch
                if log:
                    log(f"{sp.name} T={steps} k={k_shot} seed={seeds[p]}: meta-gradient not finite at "
                        f"{it * sp.meta_batch} tasks; " + ("this update and any later non-finite one are skipped"
                        if sp.nonfinite == "skip" else "the run keeps its best validated state from before"))
        clip_grads(sp, pop)
        if sp.nonfinite == "skip":
            pop.step_skipping(opt, bad)
        else:
            opt.step()
        train_time += time.perf_counter() - t1
        if val is not None and (it % every == 0 or it == iterations):
            for p, v in enumerate(evaluate_population(pop, val, steps).mean(1).tolist()):
                curves[p].append((it * sp.meta_batch, v))
                if math.isfinite(v) and v < best_val[p]:
                    best_val[p], best[p] = v, pop.member_state(p)
            if log:
                vals = ", ".join(f"{c[-1][1]:.3f}" for c in curves)
                log(f"{sp.name} T={steps} k={k_shot} seeds={seeds}: {it * sp.meta_batch} tasks, val MSE {vals}, "
                    f"{1000 * train_time / it:.1f} ms/it")
        if checkpoint is not None and it < iterations and time.perf_counter() - last_save > checkpoint_every_s:
            save_torch(checkpoint, {"key": key, "iteration": it, "population": pop.state_dict(),
                                    "optimizer": opt.state_dict(), "generators": [g.get_state() for g in gens],
                                    "best": best, "best_val": best_val, "curves": curves, "train_time": train_time,
                                    "nonfinite_at": nonfinite_at, "skipped": skipped,
                                    "elapsed": earlier + time.perf_counter() - t0})
            last_save = time.perf_counter()
    test = test if test is not None else fixed_test_tasks(k_shot, TEST_TASKS, data)
    thesis = _thesis_restore_test(sp, pop, best, test, steps)
    for p, state in enumerate(best):
        if state is not None:
            pop.load_member_state(p, state)
    mses = evaluate_population(pop, test, steps)       # [P, n_tasks], one vmapped call
    share = (earlier + time.perf_counter() - t0) / len(seeds)     # each run's share of the wall clock
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    return [Record(mse, share, 1000 * train_time / iterations, iterations, best_val[p], curves[p],
                   diverged=not bool(torch.isfinite(mse).all()), population=len(seeds),
                   nonfinite_at=nonfinite_at[p], skipped=skipped[p],
                   thesis_restore_mse=None if thesis is None else thesis[p])
            for p, mse in enumerate(mses)]


def _thesis_restore_test(sp: Spec, pop: Population, best: Sequence[Optional[dict[str, torch.Tensor]]],
                         test: TaskBatch, steps: int) -> Optional[torch.Tensor]:
    """Per-task test MSE ``[P, n_tasks]`` of the state the thesis's code tests (``sp.thesis_restores``),
    from the final state ``pop`` ends training in: ``"none"`` the final state, ``"init"`` each run's
    best validated base-learner initialisation (``model.*``) with its final rule; ``None`` for
    ``"all"`` (that is the best state, tested anyway). Leaves ``pop`` in that state."""
    if sp.thesis_restores == "all":
        return None
    if sp.thesis_restores == "init":
        for p, state in enumerate(best):
            if state is not None:
                final = pop.member_state(p)
                pop.load_member_state(p, {n: state[n] if n.startswith("model.") else v for n, v in final.items()})
    return evaluate_population(pop, test, steps)


def _nonfinite_members(pop: Population) -> list[int]:
    """The members whose meta-gradient holds a NaN or an infinity (after ``backward``)."""
    bad = torch.zeros(pop.size, dtype=torch.bool)
    for p in pop.stacked:
        if p.grad is not None:
            bad |= ~torch.isfinite(p.grad.reshape(pop.size, -1)).all(1)
    return bad.nonzero().flatten().tolist()
