"""A trained run folder back as Python objects: ``mg.load_run("runs/o5")``.

``metagrad train`` writes a folder (``config.json``, ``checkpoint.pt``, ...); ``load_run`` rebuilds
the algorithm and the test task distribution from its config and loads the state ``train`` tested
(the best validated one where the run validated, else the last), so a model meta-trained from the
command line adapts to one's own tasks in Python::

    run = mg.load_run("runs/o5")                  # run.algo: a MAML with the meta-learned initialisation
    fast = run.algo.adapt(support_x, support_y)   # fast weights for one task ([K, ...] support set)
    logits = run.algo.predict(fast, query_x)

``metagrad eval`` evaluates through the same function.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from ..errors import ConfigError, RunError
from ..training import load_checkpoint
from .building import build
from .config import Config

__all__ = ["TrainedRun", "load_run", "load_config", "load_best"]


@dataclass
class TrainedRun:
    """What ``load_run`` returns."""

    algo: Any          # the algorithm (a MAML, or 000's oracle / a black-box learner) in the loaded state
    task: Any          # the test split's task distribution, as the config (and overrides) build it
    config: Config     # the run's config with the overrides applied
    state: str         # "final" or "best_validated (iteration N)", as eval.json records it
    iteration: int     # the iterations the checkpoint had trained


def load_run(run: str | Path, state: Optional[str] = None, overrides: Iterable[str] = (),
             device: Optional[str] = None, *, config: Optional[Config] = None, where: str = "load_run") -> TrainedRun:
    """Rebuild a trained run from its folder (``metagrad train``'s ``--out``), or from a run a
    reproduction kept (``reproductions/NAME/cells/CELL_sSEED.run.pt``: e.g. 001 Table 3's Omniglot MAML).

    ``state``: ``"best"`` (the best validated state the checkpoint keeps), ``"final"`` (the last
    one), or ``None`` for the run's own ``eval.test_state`` (what ``train`` tested). ``overrides``
    (``["task.k_shot=5"]``) change the setting the run is used in, never the model's shapes (a
    one-line error names the tensor). ``device``: where to put it (a run trained on a GPU loads on
    a CPU). ``config``: the run's config with those applied, when the caller has it already;
    ``where``: who asks, for the error messages (``metagrad eval`` says ``eval``).
    Reading a checkpoint that training is writing is safe (it is replaced by a rename).
    """
    run = Path(run)
    if state not in (None, "best", "final"):
        raise ConfigError(f"load_run: state must be 'best', 'final' or None (the run's eval.test_state), got {state!r}")
    overrides = list(overrides)
    if run.name.endswith(".run.pt"):
        return _load_kept(run, state, overrides, device, where)
    cfg = config if config is not None else \
        load_config(run).override(overrides + ([f"device={device}"] if device else []))
    ck = load_checkpoint(run / "checkpoint.pt", need=("iteration", "module"))
    algo, task = build(cfg, "test")
    _load_module(algo, ck["module"], overrides, where)
    name = _tested_state(algo, ck, state or cfg.eval["test_state"], explicit=state is not None, where=where)
    return TrainedRun(algo, task, cfg, name, int(ck["iteration"]))


def _load_kept(path: Path, state: Optional[str], overrides: list[str], device: Optional[str],
               where: str) -> TrainedRun:
    """A run kept by a reproduction (``kept_runs``): its config, the tested state and the final one."""
    if not path.is_file():
        raise RunError(f"{where}: {str(path)!r} does not exist (a reproduction keeps its runs as "
                       "reproductions/NAME/cells/CELL_sSEED.run.pt)")
    try:
        kept = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:   # a truncated or foreign file
        raise RunError(f"{where}: cannot read {str(path)!r}: {type(e).__name__}: {e}") from None
    missing = [k for k in ("config", "state", "final", "train") if not isinstance(kept, dict) or k not in kept]
    if missing:
        raise RunError(f"{where}: {str(path)!r} is not a run a reproduction kept (no {missing[0]!r} entry)")
    tested, final, train = kept["state"], kept["final"], kept["train"]
    cfg = Config.from_dict(kept["config"]).override(overrides + ([f"device={device}"] if device else []))
    algo, task = build(cfg, "test")
    validated = train.get("state") == "best_validated"
    want = state or cfg.eval["test_state"]
    if want == "best" and not validated and state is not None:
        raise RunError(f"{where}(state='best'): this run kept no validated state; use state='final'")
    use_best = want == "best" and validated
    _load_module(algo, tested if use_best or final is None else final, overrides, where, params_only=True)
    name = _best_name(train.get("val_curve") or [], train.get("best_val")) if use_best else "final"
    return TrainedRun(algo, task, cfg, name, int(train["iterations"]))


def load_config(run: Path) -> Config:
    """A run folder's ``config.json``, with one-line errors for a folder that holds no run."""
    if not run.is_dir():
        raise RunError(f"cannot read run directory {str(run)!r}: not a directory")
    if not (run / "config.json").is_file():
        raise RunError(f"cannot read run directory {str(run)!r}: no config.json (was it written by metagrad train?)")
    return Config.load(run / "config.json")


def _load_module(algo: Any, state: dict[str, Any], overrides: Iterable[str] = (), where: str = "load_run",
                 params_only: bool = False) -> None:
    """A checkpoint's module state into ``algo`` (a ``Population`` of one is stored stacked; a kept
    run holds the parameters only), after checking that ``overrides`` left every tensor's shape as trained."""
    stacked = "stacked.0" in state
    own = dict(algo.named_parameters()) if stacked or params_only else algo.state_dict()
    trained = dict(zip(own, (state[f"stacked.{i}"][0] for i in range(len(state))))) if stacked else state
    fix = "evaluate with settings that keep the model as trained (task.n_way, model.*)"
    sets = f"--set {' '.join(overrides)}" if overrides else "the run's config"
    if len(state) != len(own) or trained.keys() != own.keys():   # len(state): zip drops extra stacked tensors
        other = sorted(trained.keys() ^ own.keys())
        raise RunError(f"{where}: the model {sets} builds has other tensors than the one trained "
                       f"({len(own)} against {len(state)}{', e.g. ' + other[0] if other else ''}); {fix}")
    bad = next((n for n, v in trained.items() if v.shape != own[n].shape), None)
    if bad is not None:
        raise RunError(f"{where}: {bad} was trained with shape {tuple(trained[bad].shape)} but {sets} builds it with "
                       f"{tuple(own[bad].shape)}; {fix}")
    if stacked or params_only:
        with torch.no_grad():
            for n, p in own.items():
                p.copy_(trained[n])
        return
    algo.load_state_dict(state)


def load_best(algo: Any, best: dict[str, Any], curve: list, best_val: float) -> str:
    """Copy the best validated state ``best`` into ``algo``; its name as ``eval.json`` records it."""
    with torch.no_grad():
        for n, p in algo.named_parameters():
            p.copy_(best[n])
    return _best_name(curve, best_val)


def _best_name(curve: list, best_val: Any) -> str:
    """The best validated state's name as ``eval.json`` records it: the first validation that reached it."""
    return f"best_validated (iteration {next((i for i, v in curve if v == best_val), None)})"


def _tested_state(algo: Any, ck: dict[str, Any], want: str, explicit: bool, where: str) -> str:
    """Load the best validated state of checkpoint ``ck`` into ``algo`` when ``want`` is ``"best"`` and the
    run validated (else keep the final state, which ``--state best`` asked for explicitly refuses);
    returns the state's name as ``eval.json`` records it."""
    fit = ck.get("fit", {})
    best = (fit.get("best") or [None])[0]
    if want == "final" or best is None:
        if want == "best" and explicit:
            asked, fix = ("eval --state best", "--state final") if where == "eval" else \
                (f"{where}(state='best')", "state='final'")
            raise RunError(f"{asked}: this run kept no validated state (it trained with eval.every=0); use {fix}")
        return "final"
    return load_best(algo, best, fit.get("curves", [[]])[0], fit["best_val"][0])
