"""The runner: build an experiment from a ``Config``, meta-train it with ``fit``, evaluate it.

Everything about a run lives in one folder (DESIGN.md section 3): ``config.json``,
``metrics.jsonl`` (losses and validations, no wall-clock numbers: a resumed run writes the same
file), ``timing.jsonl``, ``checkpoint.pt`` (written atomically and only once checked finite),
``resumes.jsonl`` (what each ``--resume`` changed) and ``eval.json``. One process at a time writes
a folder (``RunLock``); under ``torchrun`` every rank trains and only rank 0 writes.
"""
from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch

from ..device import resolve_device
from ..distributed import World
from ..errors import ConfigError, DivergenceError, Interrupted, MetagradError, RunError, TimeLimitReached, check_int
from ..evaluation import evaluate
from ..io import write_json, write_text
from ..runlog import JsonLog, RunLock, remove_stale_temporaries
from ..tensorboard_log import FOLDER as _TB, TensorBoardLog
from ..training import fit, load_checkpoint
from .building import DTYPES as _DTYPES, build, check_world, make_module, optimizer as _optimizer, schedule as _schedule
from .config import Config
from .loading import load_best as _load_best, load_config as _load_config, load_run
from .presets import get_preset
from .system import tune_malloc

__all__ = ["build", "train", "evaluate_run", "resolve_config", "planned_config", "RunError", "RESUMABLE"]

# Settings a resumed run may change: how fast, how long, how often it logs, how it is evaluated;
# never what is computed per iteration (task, model, inner loop, optimiser kind, batch, seed, dtype).
RESUMABLE = ("outer.lr", "outer.iterations", "outer.schedule", "outer.nonfinite", "outer.explode",
             "outer.clip_norm", "threads", "log_every", "checkpoint_every", "device", "eval.")
_NOT_IDENTITY = (*RESUMABLE, "name")
_RUN_FILES = ("config.json", "metrics.jsonl", "timing.jsonl", "checkpoint.pt", "eval.json", "resumes.jsonl")


def resolve_config(spec: Config | Mapping[str, Any] | str | Path, overrides: Iterable[str] = ()) -> Config:
    """A ``Config`` from a Config, a dict, a preset name or a JSON file path, plus overrides."""
    if isinstance(spec, Config):
        cfg = spec
    elif isinstance(spec, Mapping):
        cfg = Config.from_dict(spec)
    elif Path(spec).suffix == ".json" or Path(spec).is_file():
        cfg = Config.load(spec)
    else:
        cfg = get_preset(str(spec))
    return cfg.override(list(overrides))


def planned_config(config: Config | Mapping[str, Any] | str | Path | None = None,
                   overrides: Iterable[str] = (), resume: str | Path | None = None) -> Config:
    """The config ``train`` would record in ``config.json``, checked, without training (``--print-config``):
    ``config`` plus ``overrides`` for a fresh run, or the run folder ``resume``'s own config plus its
    resumable overrides."""
    if resume is not None:
        return _load_config(Path(resume)).override(_resume_overrides(overrides))
    if config is None:
        raise ConfigError("train: give a preset name, a config file or a Config")
    return resolve_config(config, overrides)


def _resume_overrides(overrides: Iterable[str]) -> list[str]:
    overrides = list(overrides)
    for a in overrides:
        key = a.split("=", 1)[0].strip()
        if not any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE):
            raise ConfigError(f"train --resume: {key!r} defines the run and cannot change on resume; resumable "
                              f"settings: {', '.join(RESUMABLE)}* (start a new run to change {key!r})")
    return overrides


def _prepare_fresh(run: Path, overwrite: bool) -> None:
    if (run / "checkpoint.pt").exists() and not overwrite:
        raise RunError(f"train: {str(run)!r} already holds a run; use --resume to continue it, --overwrite to "
                       "replace it, or choose another --out")
    others = [p.name for p in run.iterdir() if p.name != ".lock" and not p.name.startswith(".")] if run.exists() else []
    if (run / "config.json").exists() and not overwrite:
        raise RunError(f"train: {str(run)!r} holds a run stopped before its first checkpoint; use --resume to "
                       "train it, --overwrite to replace it, or choose another --out")
    if others and not overwrite:
        raise RunError(f"train: {str(run)!r} is not empty ({', '.join(sorted(others)[:3])}...) and holds no run; "
                       "choose another --out, or pass --overwrite to replace its run files")
    for name in _RUN_FILES:
        (run / name).unlink(missing_ok=True)
    shutil.rmtree(run / _TB, ignore_errors=True)


def train(config: Config | Mapping[str, Any] | str | Path | None = None, out: str | Path | None = None, *,
          overrides: Iterable[str] = (), resume: bool = False, progress: bool = True,
          stop_after: Optional[int] = None, evaluate_at_end: bool = True, threads: Optional[int] = None,
          device: Optional[str] = None, overwrite: bool = False, deadline: Optional[float] = None,
          tensorboard: bool = False) -> Path:
    """Meta-train an experiment and write its run folder; returns the folder.

    ``config`` is a ``Config``, dict, preset name or JSON path. ``resume=True`` continues the run
    in ``out`` from its checkpoint; ``overrides`` may then change only ``RESUMABLE`` settings (e.g.
    ``outer.lr`` after a divergence), which are recorded in ``resumes.jsonl``. ``stop_after``
    stops after that many iterations of this call (a checkpoint is written), as a crash would.
    ``threads`` and ``device`` override the config's for this call. Under ``torchrun`` each rank
    trains its share of every meta-batch (``metagrad.distributed``). ``deadline`` (a ``time.time()``):
    past it, training checkpoints and raises ``TimeLimitReached``; ``resume=True`` continues it.
    ``tensorboard``: also write the metrics as TensorBoard events to ``out/tensorboard/``
    (``metagrad.tensorboard_log``); a resumed run that wrote them before goes on writing them.
    """
    if threads is not None:
        check_int("train", "threads", threads, 1, RunError)
    extra = [*([f"threads={threads}"] if threads is not None else []), *([f"device={device}"] if device else [])]
    if resume:
        if out is None:
            raise RunError("train: resume needs the run directory")
        run = Path(out)
        base = _load_config(run)
        kept = base.override(_resume_overrides(overrides))   # what config.json records: --set, not --threads/--device
        cfg = kept.override(extra)
    else:
        cfg = planned_config(config, list(overrides) + extra)
        run = Path(out) if out is not None else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dev = resolve_device(cfg.device)
    world = World.from_env(dev)
    check_world(cfg, world)   # every rank: a one-line error before anything is written
    created, resume_at = not run.exists(), None
    with RunLock(run, "train") if world.main else _Nothing():
        if world.main:
            remove_stale_temporaries(run)
            if resume:
                if not (run / "checkpoint.pt").exists():   # stopped before its first checkpoint: nothing to keep
                    warnings.warn(f"train --resume: {str(run)!r} has no checkpoint yet (it stopped before its first "
                                  "one); training it from iteration 0", stacklevel=2)
                JsonLog.read(run / "metrics.jsonl")   # a damaged log: one error, before anything is written
                resume_at = _record_resume(run, base, cfg, list(overrides) + extra)
            else:
                _prepare_fresh(run, overwrite)
            write_json(run / "config.json", (kept if resume else cfg).to_dict())
        world.barrier()
        try:
            tb = _tensorboard(run, world, tensorboard, resume_at)
            try:
                return _train(cfg, run, world, resume, progress, stop_after, evaluate_at_end, deadline, tb)
            finally:
                if tb is not None:
                    tb.close()
        except MetagradError:
            if world.main and not resume and not (run / "checkpoint.pt").exists():
                _forget(run, created)   # bad input found while building: leave nothing half-made behind
            raise


def _forget(run: Path, created: bool) -> None:
    """Remove the files a fresh run wrote before it failed (and its folder, if this call made it)."""
    for name in _RUN_FILES:
        (run / name).unlink(missing_ok=True)
    shutil.rmtree(run / _TB, ignore_errors=True)
    if created:
        (run / ".lock").unlink(missing_ok=True)
        try:
            run.rmdir()
        except OSError:   # something else is in it now: leave the folder
            pass


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _tensorboard(run: Path, world: World, asked: bool, resume_at: Optional[int]) -> Optional[TensorBoardLog]:
    """The run's TensorBoard writer (rank 0's) when asked, or when a resumed run has written events before."""
    if not world.main or not (asked or (resume_at is not None and (run / _TB).is_dir())):
        return None
    return TensorBoardLog(run / _TB, resume_at)


def _record_resume(run: Path, base: Config, cfg: Config, overrides: list[str]) -> int:
    """Append this resumption to ``resumes.jsonl``; returns the iteration it resumes from."""
    at = int(load_checkpoint(run / "checkpoint.pt")["iteration"]) if (run / "checkpoint.pt").exists() else 0
    threads = torch.get_num_threads() if cfg.threads is None else cfg.threads
    rows = JsonLog.read(run / "resumes.jsonl")   # a line cut by a crash is dropped
    before = [r for r in rows if "threads" in r]
    started = before[-1]["threads"] if before else None
    if started is not None and started != threads:
        warnings.warn(f"train --resume: the run was trained with {started} thread(s) and continues with {threads}; "
                      "results are identical per thread count, so the numbers from here on differ slightly "
                      "from an uninterrupted run", stacklevel=3)
    rows.append({"at_iteration": at, "overrides": overrides, "threads": threads})
    write_text(run / "resumes.jsonl", "".join(json.dumps(r) + "\n" for r in rows))   # atomic: never half a line
    return at


def _train(cfg: Config, run: Path, world: World, resume: bool, progress: bool, stop_after: Optional[int],
           evaluate_at_end: bool, deadline: Optional[float] = None, tb: Optional[TensorBoardLog] = None) -> Path:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if world.main and not resume:
        write_text(run / "resumes.jsonl",   # the thread count the run started with
                   json.dumps({"at_iteration": 0, "overrides": [], "threads": torch.get_num_threads()}) + "\n")
    tune_malloc()
    dtype = _DTYPES[cfg.dtype]
    module, stream, members, task = make_module(cfg, [cfg.seed], world)
    algo = members[0]
    opt = _optimizer(cfg, module)
    validate, measure = None, cfg.eval["measure"]
    if cfg.eval["every"] and measure is not None:   # a number of the state itself, logged as val_<measure>
        from .train_runs import curve_measure
        validate = curve_measure(measure, task)
    elif cfg.eval["every"]:
        val = build(cfg, "val")[1]
        validate = lambda m: evaluate(m, (val, cfg.eval["val_tasks"], cfg.eval["seed"] + 1),   # noqa: E731
                                      cfg.eval["steps"], chunk=cfg.eval["batch"], dtype=dtype)["mean"]
    scope = cfg.outer["clip_scope"]
    sched = _schedule(cfg, algo, task)
    if getattr(sched, "estimate", None) is not None and world.main:   # 002's L and rho, estimated
        write_json(run / "smoothness.json", {"L": sched.estimate.L, "rho": sched.estimate.rho,
                                             "L_used": sched.L, "rho_used": sched.rho})
    try:
        res = fit(module, stream, opt, cfg.outer["iterations"], schedule=sched,
                  clip_value=None if scope == "init_per_task" else cfg.outer["clip_value"],
                  clip_keys=None if scope == "all" else (lambda n: n.startswith("model.")),
                  clip_norm=cfg.outer["clip_norm"], nonfinite=cfg.outer["nonfinite"], explode=cfg.outer["explode"],
                  validate=validate, val_every=cfg.eval["every"],
                  maximize=algo.metric_name == "accuracy" and measure is None,
                  val_name=f"val_{measure or algo.metric_name}", checkpoint=run / "checkpoint.pt",
                  checkpoint_every=cfg.checkpoint_every, key={"config": _identity(cfg)}, upgrade_key=_upgrade,
                  metrics=run / "metrics.jsonl", timing=run / "timing.jsonl", log_every=cfg.log_every,
                  progress=cfg.name if progress else False, stop_after=stop_after, deadline=deadline, world=world,
                  on_record=None if tb is None else tb.write)
    except DivergenceError as e:
        raise DivergenceError(f"{e}. Continue from the last checkpoint with a lower rate: metagrad train --resume "
                              f"{run} --set outer.lr={cfg.outer['lr'] / 10:g}") from None
    if module is not algo:   # a Population of one (the per-task clamp): test its member
        algo = module.member(0)
    if res.stopped == "deadline":
        raise TimeLimitReached(f"train {run}", res.iteration, res.iterations, f"metagrad train --resume {run}")
    if res.stopped == "signal":
        raise Interrupted(f"train {run}", res.iteration, res.iterations, res.signum, f"metagrad train --resume {run}")
    if res.stopped == "stop_after" or not evaluate_at_end:
        return run
    state = "final"
    if cfg.eval["every"] and cfg.eval["test_state"] == "best" and res.best[0] is not None:
        state = _load_best(algo, res.best[0], res.val_curves[0], res.best_val[0])
    result = evaluate(algo, (build(cfg, "test")[1], cfg.eval["tasks"], cfg.eval["seed"]), cfg.eval["steps"],
                      chunk=cfg.eval["batch"], dtype=dtype, progress=progress and world.main,
                      k_shot=getattr(task, "k_shot", None), state=state, stopped=res.stopped)
    if world.main:
        _write_eval(run, result, "eval.json")
    return run


def _identity(cfg: Config) -> dict[str, Any]:
    """The settings that define what a run computes (a checkpoint resumes only under them)."""
    return cfg.identity(_NOT_IDENTITY)


def _upgrade(key: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's key in today's form (``Config.stored_identity``)."""
    return {**key, "config": Config.stored_identity(key.get("config"), _NOT_IDENTITY)}


def _write_eval(run: Path, result: dict[str, Any], name: str) -> None:
    """Write an evaluation unless it is not finite (a good ``eval.json`` is never replaced by NaN)."""
    if not (isinstance(result["mean"], float) and result["mean"] == result["mean"]
            and abs(result["mean"]) != float("inf")):
        raise DivergenceError(f"eval: the {result['metric']} is {result['mean']} after {result['steps']} steps; "
                              f"{name} in {str(run)!r} is left as it was (check the learning rates)")
    write_json(run / name, result)


def evaluate_run(run: str | Path, tasks: Optional[int] = None, steps: Optional[int] = None,
                 overrides: Iterable[str] = (), plot: bool = False, progress: bool = True,
                 device: Optional[str] = None, state: Optional[str] = None) -> dict[str, Any]:
    """Evaluate a trained run on held-out tasks and write ``eval.json`` and a tagged copy. ``state``:
    ``"best"`` (the best validated state its checkpoint keeps), ``"final"`` (the last one), or ``None``
    for the run's own ``eval.test_state``, which is what ``train`` tested (the final state where no
    validation ran). ``overrides`` change the evaluation setting, e.g. ``["task.k_shot=5"]`` for a run
    trained at 10 shots. With ``plot=True`` also writes ``adaptation.png`` and ``training.png``.
    ``run`` may also be a run a reproduction kept (``cells/CELL_sSEED.run.pt``): it is evaluated and
    the result returned, and nothing is written beside it (its record stays as committed)."""
    run = Path(run)
    kept = run.name.endswith(".run.pt")
    if kept and plot:
        raise RunError("eval --plot: a kept run (.run.pt) is evaluated without writing anything beside it; drop --plot")
    cfg = None if kept else _load_config(run).override(list(overrides) + ([f"device={device}"] if device else []))
    if tasks is not None:
        check_int("eval", "--tasks", tasks, 1)
    if steps is not None:
        check_int("eval", "--steps", steps, 0)
    if state not in (None, "best", "final"):
        raise ConfigError(f"eval: --state must be best or final, got {state!r}")
    with _Nothing() if kept else RunLock(run, "eval"):
        loaded = load_run(run, state, overrides, device, config=cfg, where="eval")
        algo, task, cfg = loaded.algo, loaded.task, loaded.config
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        n = cfg.eval["tasks"] if tasks is None else tasks
        result = evaluate(algo, (task, n, cfg.eval["seed"]), steps if steps is not None else cfg.eval["steps"],
                          chunk=cfg.eval["batch"], dtype=_DTYPES[cfg.dtype], progress=progress,
                          k_shot=getattr(task, "k_shot", None), state=loaded.state, iteration=loaded.iteration,
                          overrides=list(overrides))
        if kept:
            return result
        _write_eval(run, result, "eval.json")
        tag = f"k{result['k_shot']}-s{result['steps']}-n{n}" if result["k_shot"] is not None else f"s{result['steps']}-n{n}"
        write_json(run / f"eval-{tag}.json", result)
        if plot:
            from ..plotting import plot_adaptation, plot_training
            plot_adaptation(result, run / "adaptation.png", title=cfg.name)
            if (run / "metrics.jsonl").exists():
                plot_training(run / "metrics.jsonl", run / "training.png", title=cfg.name)
    return result
