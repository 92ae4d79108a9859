"""``fit``: THE meta-training loop. Every command and every paper table trains through it.

One meta-iteration, for a ``MAML`` (one run) or a ``Population`` (``P`` runs as one computation)::

    draw            = stream.next()                         # tasks, from checkpointed generators
    F_p             = meta-loss of member p on its tasks    # MAML.meta_loss / Population.meta_losses
    grad            = d(sum_p F_p)/d(theta)                 # mean over ranks under torchrun
    guard:            F_p and ||grad_p||^2 finite, F_p <= explode * running level of F_p
    clip:             values to [-clip_value, clip_value] (of the parameters clip_keys selects),
                      then each member's norm to clip_norm
    lr              = schedule(it, module, draw)            # constant, cosine, 002's adaptive step
    theta          <- optimizer step (members failing the guard skip it)

A member that fails the guard is handled by the one ``nonfinite`` policy: ``"raise"`` stops the
whole run with a ``DivergenceError`` before anything is written (the last checkpoint, which was
checked finite before it was written, survives); ``"stop"`` freezes that member at its last good
state for the rest of the run; ``"skip"`` skips that update only. Every event is counted in the
result and the metrics. ``validate`` runs every ``val_every`` iterations and at the end; each
member's best validated state is kept (the caller tests it, or the final state, and says which).

The checkpoint holds everything the loop depends on (module, optimiser, stream, torch RNG,
best states, curves, counters and the partial logging window), so a run killed at any moment
and resumed writes the same checkpoint and the same ``metrics.jsonl`` as one never killed.
Wall-clock time lives apart (``timing.jsonl`` and the checkpoint's ``timing`` entry). A SIGINT or
SIGTERM (``metagrad.interrupts``) stops the loop after the iteration it interrupts, checkpointed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .algorithm import MAML
from .distributed import World
from .checkpoints import (check_checkpoint_path, finite_optimizer_state, kept_checkpoint, load_checkpoint,
                          resume_checkpoint, save_checkpoint)
from .errors import ConfigError, DivergenceError, InputError, InputTypeError, check_int, check_positive
from .guards import NONFINITE, diverged, updated_level, why
from .interrupts import SIGNALS, stop_requests
from .population import Population
from .runlog import JsonLog
from .schedules import Schedule
from .streams import Draw, TaskStream

__all__ = ["fit", "FitResult", "NONFINITE", "load_checkpoint"]

__all__ = ["fit", "FitResult", "load_checkpoint"]   # load_checkpoint: metagrad.checkpoints', read here too


@dataclass
class FitResult:
    """What a ``fit`` call ended with; per-member lists have one entry per member (one for a MAML)."""

    iteration: int                                  # iterations done in all
    iterations: int                                 # iterations asked for
    stopped: Optional[str] = None                   # None, "nonfinite" (every member stopped), "stop_after",
                                                    # "deadline", "signal"
    best: list[Optional[dict[str, Tensor]]] = field(default_factory=list)   # best validated states
    best_val: list[float] = field(default_factory=list)
    val_curves: list[list[tuple[int, float]]] = field(default_factory=list)
    nonfinite_at: list[Optional[int]] = field(default_factory=list)  # first failed guard, in iterations
    skipped: list[int] = field(default_factory=list)                  # updates skipped (policy "skip")
    train_seconds: float = 0.0                      # wall clock of the loop, summed over resumes
    signum: Optional[int] = None                    # the signal that stopped it (stopped="signal")
    wall_seconds: float = 0.0                       # wall clock of fit (validation, checkpoints too), summed over resumes

    @property
    def finished(self) -> bool:
        return self.iteration >= self.iterations

    @property
    def ms_per_iteration(self) -> float:
        return 1000.0 * self.train_seconds / max(self.iteration, 1)


class _Members:
    """One interface over a ``MAML`` (one member) and a ``Population`` (``P`` members)."""

    def __init__(self, module: MAML | Population) -> None:
        self.module, self.pop = module, isinstance(module, Population)
        self.named = list(zip(module.names, module.stacked)) if self.pop else list(module.named_parameters())
        self.size = module.size if self.pop else 1

    def losses(self, draw: Draw) -> Tensor:
        if self.pop:
            if draw.hvp is not None:
                raise ConfigError("fit: a Population does not take HF-MAML's separate Hessian batch")
            return self.module.meta_losses(draw.batch)
        return self.module.meta_loss(draw.batch, draw.hvp).reshape(1)

    def rows(self, t: Tensor) -> Tensor:
        """``t`` (a parameter or its gradient) as ``[P, -1]``."""
        return t.reshape(self.size, -1) if self.pop else t.reshape(1, -1)

    def grad_sq_norms(self) -> Tensor:
        """Each member's squared gradient norm in the gradients' dtype (inf where it overflows,
        which is where Adam's second moment would)."""
        out = torch.zeros(self.size, dtype=torch.float64)
        for _, p in self.named:
            if p.grad is not None:
                out += self.rows(p.grad).pow(2).sum(1).to(torch.float64).cpu()
        return out

    def finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for _, p in self.named)

    def state(self, p: int) -> dict[str, Tensor]:
        return self.module.member_state(p) if self.pop else {n: v.detach().clone() for n, v in self.named}

    @torch.no_grad()
    def load_state(self, p: int, state: dict[str, Tensor]) -> None:
        if self.pop:
            self.module.load_member_state(p, state)
        else:
            for n, v in self.named:
                v.copy_(state[n])

    @torch.no_grad()
    def clip(self, clip_value: Optional[float], clip_keys: Optional[Callable[[str], bool]],
             clip_norm: Optional[float]) -> None:
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_([p for n, p in self.named if clip_keys is None or clip_keys(n)],
                                            clip_value)
        if clip_norm is not None:
            if self.pop:
                self.module.clip_grad_norm_(clip_norm)
            else:
                torch.nn.utils.clip_grad_norm_([p for _, p in self.named], clip_norm)

    def step(self, opt: torch.optim.Optimizer, skip: Sequence[int]) -> None:
        if self.pop:
            self.module.step_skipping(opt, skip)
        elif not skip:
            opt.step()


def _check_parts(stream: Any, optimizer: Any) -> None:
    """``fit``'s stream and optimiser, refused before any work when they cannot be."""
    if not all(callable(getattr(stream, a, None)) for a in ("next", "state_dict", "load_state_dict")):
        raise InputTypeError(f"fit: stream must be a TaskStream (next, state_dict, load_state_dict), e.g. "
                             f"mg.SampledStream(task, meta_batch=25, seed=0); got {type(stream).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputTypeError(f"fit: optimizer must be a torch.optim.Optimizer, e.g. torch.optim.Adam(algo.parameters(), "
                             f"lr=1e-3); got {type(optimizer).__name__}")


def fit(module: MAML | Population, stream: TaskStream, optimizer: torch.optim.Optimizer, iterations: int, *,
        schedule: Optional[Schedule] = None, clip_value: Optional[float] = None,
        clip_keys: Optional[Callable[[str], bool]] = None, clip_norm: Optional[float] = None,
        nonfinite: str = "raise", explode: Optional[float] = 1e6,
        validate: Optional[Callable[[Any], Sequence[float] | Tensor | float]] = None, val_every: int = 0,
        maximize: bool = False, val_name: str = "val",
        checkpoint: Optional[str | Path] = None, checkpoint_every: Optional[int] = None,
        checkpoint_every_s: Optional[float] = None, key: Optional[dict[str, Any]] = None,
        upgrade_key: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None,
        metrics: Optional[str | Path] = None, timing: Optional[str | Path] = None, log_every: int = 100,
        on_record: Optional[Callable[[dict[str, Any]], None]] = None, progress: bool | str = False,
        stop_after: Optional[int] = None, deadline: Optional[float] = None, world: World = World(),
        stop_on_signals: bool = True) -> FitResult:
    """Meta-train ``module`` for ``iterations`` meta-iterations on ``stream`` with ``optimizer``.

    Args:
        module: a ``MAML`` or a ``Population`` (its members share the loop, not their numbers).
        stream: a ``TaskStream`` (``SampledStream``, ``PopulationStream`` or one's own).
        optimizer: over ``module.parameters()``; element-wise rules (Adam, SGD) keep members apart.
        schedule: ``(it, module, draw) -> lr`` set on every parameter group before each step
            (``None``: the optimiser's own rate). ``constant_schedule``, ``cosine_schedule``,
            ``metagrad.schedules.AdaptiveMetaStep`` (002 eq. 16-17).
        clip_value, clip_keys, clip_norm: meta-gradient clipping (values of the parameters whose
            name ``clip_keys`` accepts, e.g. ``lambda n: n.startswith("model.")``; then norms per member).
        nonfinite: ``"raise"``, ``"stop"`` or ``"skip"`` (module docstring).
        explode: a finite loss above ``explode`` times the member's running level (a geometric mean
            of its accepted losses) counts as diverged too; ``None``: only non-finite values do.
        validate: ``module -> value per member`` (lower is better unless ``maximize``), run every
            ``val_every`` iterations (0: never) and at the last iteration.
        checkpoint: file to save and resume from (written atomically every ``checkpoint_every``
            iterations and/or ``checkpoint_every_s`` seconds, at the end and at ``stop_after``;
            only after checking that the parameters and the optimiser's state are finite). An
            existing file is resumed if its ``key`` equals ``key`` (settings that define the run),
            else it is an error. ``upgrade_key`` maps a stored key to today's form first (e.g.
            ``Config.stored_identity``: settings added since it was written take their defaults).
        metrics, timing: JSON-lines logs (every ``log_every`` iterations, and at validations);
            ``metrics`` holds no wall-clock numbers, so a resumed run writes the same file.
        on_record: called with each metrics record (e.g. to print progress lines).
        progress: show a progress bar (a string: its label).
        stop_after: return after this many iterations of this call (as a crash would; tests).
        deadline: a ``time.time()`` past which the loop checkpoints and returns (``stopped="deadline"``):
            a job's wall-clock limit; under torchrun the ranks stop together.
        world: this process's rank under ``torchrun`` (``World.from_env()``).
        stop_on_signals: the first SIGINT / SIGTERM ends the iteration under way, checkpoints and
            returns ``stopped="signal"`` (``signum`` says which); ``False`` leaves the process's handlers.
    """
    check_int("fit", "iterations", iterations, 1)
    check_int("fit", "log_every", log_every, 1)
    check_int("fit", "val_every", val_every, 0)
    if nonfinite not in NONFINITE:
        raise ConfigError(f"fit: nonfinite must be one of {', '.join(NONFINITE)}, got {nonfinite!r}")
    check_positive("fit", "explode", explode, optional=True)
    for name, v in (("clip_value", clip_value), ("clip_norm", clip_norm), ("checkpoint_every_s", checkpoint_every_s)):
        check_positive("fit", name, v, optional=True)
    if checkpoint_every is not None:
        check_int("fit", "checkpoint_every", checkpoint_every, 1)
    if stop_after is not None:
        check_int("fit", "stop_after", stop_after, 1)
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline != deadline):
        raise ConfigError(f"fit: deadline must be a time.time() value, e.g. time.time() + 3600, got {deadline!r}")
    _check_parts(stream, optimizer)
    check_checkpoint_path(checkpoint)
    m = _Members(module)
    P = m.size
    st: dict[str, Any] = {"best": [None] * P, "best_val": [-math.inf if maximize else math.inf] * P, "curves": [[] for _ in range(P)],
                          "nonfinite_at": [None] * P, "skipped": [0] * P, "stopped": [False] * P,
                          "window": [], "level": [None] * P}
    key = dict(key or {})
    start, timing_s, wall_s = 0, 0.0, 0.0
    ck_path = Path(checkpoint) if checkpoint is not None else None
    if ck_path is not None and ck_path.exists():
        ck = resume_checkpoint(ck_path, key, upgrade_key, module, optimizer, stream)
        st.update(ck["fit"])
        timing_ck = ck.get("timing", {})
        start, timing_s = int(ck["iteration"]), float(timing_ck.get("train_seconds", 0.0))
        wall_s = float(timing_ck.get("wall_seconds", timing_s))   # older checkpoints: the loop's time
    wall0 = time.perf_counter()

    def wall() -> float:
        return wall_s + time.perf_counter() - wall0

    log = JsonLog(metrics, resume_at=start if start else None) if metrics is not None and world.main else None
    tlog = JsonLog(timing, resume_at=start if start else None) if timing is not None and world.main else None

    def save(it: int) -> None:
        if ck_path is None:
            return
        if not m.finite() or not finite_optimizer_state(optimizer):
            kept = kept_checkpoint(ck_path) or "no checkpoint was written"
            raise DivergenceError(f"fit: parameters or optimiser state are not finite at iteration {it}; {kept}")
        if world.main:
            save_checkpoint(ck_path, key, it, module, optimizer, stream, st,
                            {"train_seconds": timing_s, "wall_seconds": wall()})
        world.barrier()

    def record(it: int, values: Optional[list[float]]) -> None:
        rec: dict[str, Any] = {"iteration": it}
        if st["window"]:
            w = st["window"]
            rec["loss"] = sum(sum(x) for x in w) / (len(w) * P)
            if P > 1:
                rec["losses"] = [sum(x[p] for x in w) / len(w) for p in range(P)]
        if values is not None:
            rec[val_name] = values if P > 1 else values[0]
        if any(st["skipped"]):
            rec["skipped"] = st["skipped"] if P > 1 else st["skipped"][0]
        if any(st["stopped"]):
            rec["stopped"] = st["stopped"] if P > 1 else st["stopped"][0]
        st["window"] = []
        if log is not None:
            log.write(rec)
        if tlog is not None:
            tlog.write({"iteration": it, "train_seconds": round(timing_s, 3),
                        "ms_per_iter": round(1000 * timing_s / max(it, 1), 3)})
        if on_record is not None and world.main:
            on_record(rec)

    label = progress if isinstance(progress, str) else "meta-train"
    bar = tqdm(total=iterations, initial=start, desc=label, unit="it", dynamic_ncols=True,
               disable=not progress or not world.main)
    last_save, it = time.perf_counter(), start
    with stop_requests(SIGNALS if stop_on_signals else ()) as request:
        try:
            while it < iterations and not all(st["stopped"]):
                t0 = time.perf_counter()
                draw = stream.next()
                with world.rank_rng():   # a loss's own noise (MT-net) differs between ranks
                    losses = m.losses(draw)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()
                world.average_gradients(module.parameters())
                values = world.mean(losses.detach()).to(torch.float64).cpu()
                bad = diverged(values, m.grad_sq_norms(), st["level"], explode)
                for p in bad:
                    what = why(values[p].item(), st["level"][p], explode)
                    if st["nonfinite_at"][p] is None:
                        st["nonfinite_at"][p] = it + 1
                    if nonfinite == "raise":
                        kept = kept_checkpoint(ck_path)
                        raise DivergenceError(f"fit: {what} at iteration {it + 1}{' (member %d)' % p if P > 1 else ''}"
                                              f"{'; ' + kept if kept else ''}; lower the meta or inner learning rate, add clipping, or "
                                              f"choose nonfinite='skip'")
                    if nonfinite == "skip":
                        st["skipped"][p] += 1
                    else:
                        st["stopped"][p] = True
                frozen = sorted(set(bad) | {p for p in range(P) if st["stopped"][p]})
                m.clip(clip_value, clip_keys, clip_norm)
                lr = schedule(it, module, draw) if schedule is not None else None
                if lr is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                m.step(optimizer, frozen)
                for p in range(P):
                    if p not in frozen:
                        st["level"][p] = updated_level(st["level"][p], values[p].item())
                it += 1
                timing_s += time.perf_counter() - t0
                st["window"].append([v if math.isfinite(v) else float("nan") for v in values.tolist()])
                bar.update(1)
                val_values = None
                if validate is not None and val_every and (it % val_every == 0 or it == iterations):
                    val_values = _as_list(validate(module), P)
                    for p, v in enumerate(val_values):
                        st["curves"][p].append((it, v))
                        better = v > st["best_val"][p] if maximize else v < st["best_val"][p]
                        if math.isfinite(v) and better:
                            st["best_val"][p], st["best"][p] = v, m.state(p)
                if it % log_every == 0 or it == iterations or val_values is not None:
                    record(it, val_values)
                    bar.set_postfix(loss=f"{float(values.mean()):.4g}")
                # every rank asks (one collective under torchrun), so all stop together for the same reason
                late, signum = world.max([float(deadline is not None and time.time() >= deadline),
                                          float(request.signum or 0)])
                cut = "stop_after" if stop_after is not None and it - start >= stop_after else \
                    "deadline" if late else "signal" if signum else None
                if it == iterations or all(st["stopped"]) or cut or (checkpoint_every and it % checkpoint_every == 0) or \
                        (checkpoint_every_s is not None and time.perf_counter() - last_save > checkpoint_every_s):
                    save(it)
                    last_save = time.perf_counter()
                if cut and (it < iterations or cut == "signal"):   # a signal in the last one: resume evaluates
                    return _result(st, it, iterations, cut, timing_s, wall(), int(signum))
        finally:
            bar.close()
            for f in (log, tlog):
                if f is not None:
                    f.close()
    return _result(st, it, iterations, "nonfinite" if all(st["stopped"]) else None, timing_s, wall())


def _as_list(v: Sequence[float] | Tensor | float, P: int) -> list[float]:
    if isinstance(v, Tensor):
        v = v.detach().flatten().tolist()
    elif isinstance(v, (int, float)):
        v = [float(v)]
    v = [float(x) for x in v]
    if len(v) != P:
        raise InputError(f"fit: validate returned {len(v)} values for {P} member(s)")
    return v


def _result(st: dict[str, Any], it: int, iterations: int, stopped: Optional[str], seconds: float, wall: float,
            signum: Optional[int] = None) -> FitResult:
    return FitResult(it, iterations, stopped, list(st["best"]), list(st["best_val"]), [list(c) for c in st["curves"]],
                     list(st["nonfinite_at"]), list(st["skipped"]), seconds, signum if stopped == "signal" else None,
                     wall)
