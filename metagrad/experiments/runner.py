"""The runner: build an experiment from a ``Config``, meta-train it, evaluate it.

Everything about a run lives in one folder (DESIGN.md section 3): ``config.json``,
``metrics.jsonl`` (one JSON line per ``log_every`` iterations), ``checkpoint.pt`` (written
atomically; model and learner meta-parameters, meta-optimiser state, iteration and every
generator state, so ``train(..., resume=True)`` continues exactly) and ``eval.json``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch
from tqdm.auto import tqdm

from ..algorithm import MAML
from ..evaluation import mean_ci95
from ..io import save_torch, write_json
from ..metagrads import adaptive_meta_step_size
from . import registry
from .config import Config, ConfigError
from .presets import get_preset
from .system import tune_malloc

__all__ = ["build", "train", "evaluate", "evaluate_run", "resolve_config", "RunError"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class RunError(RuntimeError):
    """A run folder that cannot be used (missing, unreadable, or from another version)."""


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


def build(cfg: Config, split: str = "train") -> tuple[MAML, Any]:
    """Build ``(algorithm, task distribution of split)`` from a config (model seeded by ``cfg.seed``)."""
    task = registry.build("task", registry.TASKS, cfg.task["name"], cfg.section_options("task"), split=split)
    torch.manual_seed(cfg.seed)
    model = registry.build("model", registry.MODELS, cfg.model["name"], cfg.section_options("model"), task)
    model, learner = registry.build("inner", registry.LEARNERS, cfg.inner["learner"], cfg.learner_options(), model)
    model = model.to(_DTYPES[cfg.dtype])
    algo = MAML(model, learner=learner, inner_steps=cfg.inner["steps"], mode=cfg.inner["mode"],
                loss=task.loss, grad_clip=cfg.inner["grad_clip"], hf_delta=cfg.inner["hf_delta"],
                hf_rho=cfg.inner["hf_rho"], vectorize=cfg.vectorize, compile=cfg.compile)
    return algo.to(_DTYPES[cfg.dtype]), task


def _optimizer(cfg: Config, algo: MAML) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg.outer["optimizer"]]
    return cls(algo.parameters(), lr=cfg.outer["lr"])


def _scheduled_lr(cfg: Config, it: int) -> float:
    """Meta learning rate at iteration ``it``: constant, or cosine decay from ``outer.lr`` to 0."""
    if cfg.outer["schedule"] == "cosine":
        return 0.5 * cfg.outer["lr"] * (1 + math.cos(math.pi * it / max(cfg.outer["iterations"], 1)))
    return cfg.outer["lr"]


def evaluate(algo: MAML, task: Any, n_tasks: int, steps: Optional[int] = None, seed: int = 12345,
             batch: int = 100, dtype: torch.dtype = torch.float32, progress: bool = False) -> dict[str, Any]:
    """Adapt to ``n_tasks`` held-out tasks; mean and 95% CI of the query metric after each step.

    Returns ``{"metric", "mean", "ci95", "n_tasks", "steps", "curve", "curve_ci95"}`` where
    ``mean``/``ci95`` are after ``steps`` steps and ``curve[t]`` after ``t`` steps.
    """
    steps = algo.inner_steps if steps is None else steps
    g = torch.Generator().manual_seed(seed)
    curves = []
    with tqdm(total=n_tasks, desc="eval", unit="task", disable=not progress, leave=False) as bar:
        done = 0
        while done < n_tasks:
            n = min(batch, n_tasks - done)
            curves.append(algo.adaptation_curve(task.sample(n, g, dtype), steps))
            done += n
            bar.update(n)
    c = torch.cat(curves).to(torch.float64)
    stats = [mean_ci95(c[:, t]) for t in range(c.shape[1])]
    mean, ci = stats[-1]
    return {"metric": algo.metric_name, "mean": mean, "ci95": ci, "n_tasks": n_tasks, "steps": steps,
            "k_shot": getattr(task, "k_shot", None),
            "curve": [m for m, _ in stats], "curve_ci95": [h for _, h in stats]}


def _checkpoint(path: Path, it: int, algo: MAML, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    save_torch(path, {"iteration": it, "algo": algo.state_dict(), "optimizer": opt.state_dict(),
                      "task_generator": gen.get_state(), "torch_rng": torch.get_rng_state()})


def _load_checkpoint(run: Path) -> dict[str, Any]:
    path = run / "checkpoint.pt"
    if not path.is_file():
        raise RunError(f"cannot read run directory {str(run)!r}: no checkpoint.pt (was it written by metagrad train?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise RunError(f"cannot read {str(path)!r}: {type(e).__name__}: {e}") from None


def _load_config(run: Path) -> Config:
    if not run.is_dir():
        raise RunError(f"cannot read run directory {str(run)!r}: not a directory")
    if not (run / "config.json").is_file():
        raise RunError(f"cannot read run directory {str(run)!r}: no config.json (was it written by metagrad train?)")
    return Config.load(run / "config.json")


def train(config: Config | Mapping[str, Any] | str | Path | None = None, out: str | Path | None = None, *,
          overrides: Iterable[str] = (), resume: bool = False, progress: bool = True,
          stop_after: Optional[int] = None, evaluate_at_end: bool = True, threads: Optional[int] = None) -> Path:
    """Meta-train an experiment and write its run folder; returns the folder.

    ``config`` is a ``Config``, dict, preset name or JSON path. ``resume=True`` continues the run
    in ``out`` from its checkpoint (``config`` is then ignored and read from the folder).
    ``stop_after`` stops after that many iterations of this call (a checkpoint is written),
    as a crash would; used to test exact resumption. ``threads`` overrides the config's
    ``threads`` for this call only (how fast, not what is computed; a resumed run may take more
    cores than it started with).
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise RunError(f"train: threads must be an integer >= 1, got {threads!r}")
    if resume:
        if out is None:
            raise RunError("train: resume needs the run directory")
        run = Path(out)
        cfg = _load_config(run)
        ckpt = _load_checkpoint(run)
    else:
        if config is None:
            raise ConfigError("train: give a preset name, a config file or a Config")
        cfg = resolve_config(config, overrides)
        run = Path(out) if out is not None else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (run / "checkpoint.pt").exists():
            raise RunError(f"train: {str(run)!r} already holds a run; use --resume to continue it or choose another --out")
        run.mkdir(parents=True, exist_ok=True)
        write_json(run / "config.json", cfg.to_dict())
        ckpt = None

    if (threads or cfg.threads) is not None:
        torch.set_num_threads(threads or cfg.threads)
    tune_malloc()
    dtype = _DTYPES[cfg.dtype]
    algo, task = build(cfg, "train")
    opt = _optimizer(cfg, algo)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = 0
    metrics_path = run / "metrics.jsonl"
    if ckpt is not None:
        algo.load_state_dict(ckpt["algo"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["task_generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        start = int(ckpt["iteration"])
        _truncate_metrics(metrics_path, start)
    elif metrics_path.exists():
        metrics_path.unlink()

    total, mb = cfg.outer["iterations"], cfg.outer["meta_batch"]
    clip = cfg.outer["clip_norm"]
    window: list[float] = []
    t0, t_window = time.perf_counter(), time.perf_counter()
    it = start
    with open(metrics_path, "a") as log, tqdm(total=total, initial=start, desc=cfg.name, unit="it",
                                              disable=not progress, dynamic_ncols=True) as bar:
        while it < total:
            batch = task.sample(mb, gen, dtype)
            hvp = task.sample(mb, gen, dtype) if cfg.outer["hvp_batch"] and algo.mode == "hessian_free" else None
            if cfg.outer["schedule"] != "constant":
                for group in opt.param_groups:
                    group["lr"] = _scheduled_lr(cfg, it)
            if cfg.outer["adaptive_L"] is not None:
                # 002 eq. (16)-(17): the step size from a separate batch of tasks, every iteration.
                beta = adaptive_meta_step_size(algo, task.sample(mb, gen, dtype), cfg.outer["adaptive_L"],
                                               cfg.outer["adaptive_rho"], cfg.outer["adaptive_c"])
                for group in opt.param_groups:
                    group["lr"] = beta
            loss = algo.meta_loss(batch, hvp)
            if not torch.isfinite(loss):
                _checkpoint(run / "checkpoint.pt", it, algo, opt, gen)
                raise FloatingPointError(f"train: meta-loss is {loss.item()} at iteration {it}; lower outer.lr "
                                         f"or inner.lr (checkpoint of iteration {it} kept in {str(run)!r})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(algo.parameters(), clip)
            opt.step()
            it += 1
            window.append(loss.item())
            bar.update(1)
            if it % cfg.log_every == 0 or it == total:
                now = time.perf_counter()
                rec = {"iteration": it, "loss": sum(window) / len(window),
                       "ms_per_iter": 1000 * (now - t_window) / len(window), "elapsed_s": now - t0}
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                window, t_window = [], now
                if cfg.eval["every"] and it % cfg.eval["every"] == 0:
                    val_task = build(cfg, "val")[1]
                    val = evaluate(algo, val_task, cfg.eval["val_tasks"], cfg.eval["steps"],
                                   cfg.eval["seed"] + 1, cfg.eval["batch"], dtype)
                    rec.update({f"val_{val['metric']}": val["mean"], "val_ci95": val["ci95"]})
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if it % cfg.checkpoint_every == 0 or it == total:
                _checkpoint(run / "checkpoint.pt", it, algo, opt, gen)
            if stop_after is not None and it - start >= stop_after:
                _checkpoint(run / "checkpoint.pt", it, algo, opt, gen)
                return run
    if evaluate_at_end:
        result = evaluate(algo, build(cfg, "test")[1], cfg.eval["tasks"], cfg.eval["steps"],
                          cfg.eval["seed"], cfg.eval["batch"], dtype, progress=progress)
        result["train_wall_clock_s"] = _train_seconds(metrics_path)
        write_json(run / "eval.json", result)
    return run


def _truncate_metrics(path: Path, upto: int) -> None:
    """Drop log lines written after the checkpoint (a crash between them)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["iteration"] <= upto]
    path.write_text("".join(ln + "\n" for ln in keep))


def _train_seconds(path: Path) -> Optional[float]:
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    return _sum_time(lines) if lines else None


def _sum_time(lines: list[dict[str, Any]]) -> float:
    # elapsed_s restarts at a resume; add up the segments.
    total, prev = 0.0, 0.0
    for r in lines:
        if r["elapsed_s"] < prev:
            total += prev
        prev = r["elapsed_s"]
    return total + prev


def evaluate_run(run: str | Path, tasks: Optional[int] = None, steps: Optional[int] = None,
                 overrides: Iterable[str] = (), plot: bool = False, progress: bool = True) -> dict[str, Any]:
    """Evaluate a trained run on held-out tasks and write ``eval.json`` (and a tagged copy).

    ``overrides`` change the evaluation setting, e.g. ``["task.k_shot=5"]`` for a run trained at
    10 shots. With ``plot=True`` also writes ``adaptation.png`` and ``training.png``.
    """
    run = Path(run)
    cfg = _load_config(run).override(list(overrides))
    ckpt = _load_checkpoint(run)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    algo, task = build(cfg, "test")
    algo.load_state_dict(ckpt["algo"])
    n = cfg.eval["tasks"] if tasks is None else tasks
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"eval: --tasks must be an integer >= 1, got {n!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise ConfigError(f"eval: --steps must be an integer >= 0, got {steps!r}")
    result = evaluate(algo, task, n, steps if steps is not None else cfg.eval["steps"], cfg.eval["seed"],
                      cfg.eval["batch"], _DTYPES[cfg.dtype], progress=progress)
    result.update({"iteration": int(ckpt["iteration"]), "overrides": list(overrides)})
    write_json(run / "eval.json", result)
    tag = f"k{result['k_shot']}-s{result['steps']}-n{n}" if result["k_shot"] is not None else f"s{result['steps']}-n{n}"
    write_json(run / f"eval-{tag}.json", result)
    if plot:
        from ..plotting import plot_adaptation, plot_training
        plot_adaptation(result, run / "adaptation.png", title=cfg.name)
        if (run / "metrics.jsonl").exists():
            plot_training(run / "metrics.jsonl", run / "training.png", title=cfg.name)
    return result
