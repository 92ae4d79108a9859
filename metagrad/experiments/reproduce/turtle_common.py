"""004's sine protocol (appendix A.1) shared by ``turtle-table6`` and ``turtle-order``.

* Tasks ``y = A sin(x - p)``, ``A ~ U[0.1, 5]``, ``p ~ U[0, pi]``, ``x ~ U[-5, 5]``; ``k`` support
  points, query sets of 50; 2,000 fixed test tasks (the same for every model and seed). Drawn
  by us (``data="metagrad"``: each seed its own meta-training stream) or the thesis's own tasks
  (``data="thesis"``, ``turtle_data``: its 70,000 meta-training tasks in its order for every
  seed, its 1,000 validation and 2,000 test tasks).
* Base-learner: MLP 1-40-40-1, ReLU, zero biases (the thesis's code).
* 70,000 meta-training tasks; Adam 1e-3; validation every 2,500 tasks on 1,000 fixed tasks,
  the best validated state is tested (as the thesis's text says; besides it, the state its code
  tests: TURTLE's best initialisation with its final rule, the LSTM's final state;
  ``Spec.thesis_restores``).
* so-MAML: inner SGD 0.01, meta-batch 1; for T > 1 inner gradients clipped to [-10, 10]
  (``grad_clip=10``) and, as in the thesis's code, the meta-gradient too (value clipping).
* so-TURTLE: 5 hidden layers of 20 ReLU units, per-parameter learning rates; T = 1: raw
  gradient, meta-batch 1; T = 5: gradient + EMA(0.9) of gradients + time step, meta-batch 2;
  T = 10: gradient + EMA(0.3), meta-batch 4 (004 section 4.2.5); for T > 1 inner gradients
  clipped as MAML's and, as in the thesis's ``turtle.py``, the meta-gradient of the base-learner
  initialisation only (the meta-network's is not clipped). The thesis clamps each task's before
  summing the meta-batch: T = 10 does that (``clip_value_scope="init_per_task"``; against the
  meta-batch mean clamped, same 5 seeds, k = 10 0.068 +- 0.023 against 0.247 +- 0.118, thesis
  0.08 +- 0.02; ``reproductions/turtle-table6/README.md``); T = 5 clamps the mean of its
  meta-batch of 2 (``"init"``; the per-task clamp measured the same there, k = 10: 0.027 +- 0.006
  against 0.031 +- 0.006, so its runs are kept).
  Clamping the initialisation's mean (``"init"``) against every meta-parameter's (``"all"``)
  measured better on 4 of 5 seeds at T = 10, k = 15 (one seed diverged under each rule) and the
  same at T = 5, k = 10.
* LSTM meta-learner: hidden 20, first-order assumption, meta-batch 1, meta-gradient norm
  clipped to 0.25 (``outer.clip_norm``); the rule sees the support gradient divided by ``k``
  (``grad_scale = 1 / k``), as in the thesis's code (``ownlstm.py``: ``grad / batch_size``).
  At T = 10 an update whose meta-gradient is not finite is skipped (``nonfinite="skip"``; the
  thesis's code has no guard): unguarded, 2 of 5 runs at k = 10 and 1 of 5 at k = 5 ended
  within the first 10,000 tasks. Two details of the thesis's code are not followed: it carries
  the gates' pre-sigmoid activations (``prev_gate="logit"``) and starts the first layer as torch's
  ``LSTMCell`` (``layer1_init="torch"``). With both, T = 10, k = 15, seeds 0-4, the first
  non-finite meta-gradient came sooner (3 runs within 10,000 tasks, at 2,725, 3,100 and 7,567,
  against 1 run, at 6,486, with the settings here; stopped there); each alone too (10,000-task
  runs: ``"logit"`` 3 runs, at 3,401, 3,742 and 7,087; ``"torch"`` 4 runs, by 3,385 tasks). So
  neither explains the thesis's stable T = 10 runs.
* Transfer baselines: Adam 1e-3; Finetuning pre-trains on 70,000 flat batches of 16 from the
  merged meta-training data; test protocol 100 steps on batches of 4, best of every 25.

This file holds the protocol's constants and settings (``Spec``, ``spec``, ``clip_grads``);
``turtle_train`` meta-trains and tests a cell's runs with them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from ...algorithm import MAML
from ...population import Population
from ...batch import TaskBatch
from ...learners.base import Learner
from ...learners.lstm import LSTMMetaLearner
from ...learners.sgd import SGD
from ...learners.turtle import Turtle
from ...models.mlp import MLP
from ...tasks.base import check_shots
from ...tasks.sine import Sinusoid
from .turtle_data import DATA, check_data, thesis_tasks

__all__ = ["TASKS", "TEST_TASKS", "VAL_TASKS", "VAL_EVERY", "QUERY", "DATA", "Spec", "spec", "sine",
           "fixed_tasks", "fixed_test_tasks", "check_data", "base_model", "Record", "BASELINES",
           "clip_grads"]

BASELINES = ("TrainFromScratch", "Finetuning")

TASKS = 70_000          # meta-training tasks per run
TEST_TASKS = 2_000
VAL_TASKS = 1_000
VAL_EVERY = 2_500       # in tasks
QUERY = 50
TEST_SEED, VAL_SEED = 10_000, 20_000


def sine(k_shot: int) -> Sinusoid:
    """004's sine family with ``k_shot`` support points and 50 query points."""
    return Sinusoid(k_shot=k_shot, k_query=QUERY)


def fixed_tasks(k_shot: int, n: int, seed: int) -> TaskBatch:
    """A fixed set of ``n`` tasks (the same for every model and training seed)."""
    return sine(k_shot).sample(n, torch.Generator().manual_seed(seed + k_shot))


def fixed_test_tasks(k_shot: int, n: int = TEST_TASKS, data: str = "metagrad") -> TaskBatch:
    """The first ``n`` test tasks of ``data`` for ``k_shot`` (the same for every model and seed)."""
    check_data("fixed_test_tasks", data, 0, 0, n)
    return thesis_tasks(k_shot, QUERY).test[:n] if data == "thesis" else fixed_tasks(k_shot, n, TEST_SEED)


def base_model(seed: int) -> MLP:
    """MLP 1-40-40-1 with ReLU and zero biases, drawn from ``seed``."""
    torch.manual_seed(seed)
    model = MLP([1, 40, 40, 1])
    with torch.no_grad():
        for m in model.net:
            if isinstance(m, nn.Linear):
                m.bias.zero_()
    return model


@dataclass(frozen=True)
class Spec:
    """How one meta-learner of 004 is trained: rule, meta-gradient mode, meta-batch, clipping."""

    name: str
    learner: Callable[[], Learner]
    mode: str = "second_order"
    meta_batch: int = 1
    grad_clip: Optional[float] = None     # inner gradient value clipping
    clip_value: Optional[float] = None    # meta-gradient value clipping
    clip_norm: Optional[float] = None     # meta-gradient norm clipping (outer.clip_norm)
    # value-clip "all" meta-parameters' meta-gradient, only the "init"'s, or the init's of each task
    # before the meta-batch mean ("init_per_task": the thesis's turtle.py; needs a Population)
    clip_value_scope: str = "all"
    # a member whose meta-gradient is not finite: "stop" (the update goes through, the run is lost
    # and tested at its best validated state, as the thesis's code would) or "skip" that update
    nonfinite: str = "stop"
    # what the thesis's code tests, where its text (appendix A.1) says "the best validated state":
    # its dump_state copies MAML's and TURTLE's initialisation but holds the meta-network's and the
    # LSTM's parameters by reference (nn.Module.state_dict), so Adam's in-place steps after the best
    # validation carry into them, and TURTLE's per-parameter rates are not dumped at all. "all":
    # the best state (MAML); "init": the best initialisation with the final rule (TURTLE); "none":
    # the final state (the LSTM). Tested besides the best state; it changes no training.
    thesis_restores: str = "all"

    def __post_init__(self) -> None:
        if self.clip_value_scope not in ("all", "init", "init_per_task"):
            raise ValueError(f"Spec: clip_value_scope must be 'all', 'init' or 'init_per_task', "
                             f"got {self.clip_value_scope!r}")
        if self.nonfinite not in ("stop", "skip"):
            raise ValueError(f"Spec: nonfinite must be 'stop' or 'skip', got {self.nonfinite!r}")
        if self.thesis_restores not in ("all", "init", "none"):
            raise ValueError(f"Spec: thesis_restores must be 'all', 'init' or 'none', got {self.thesis_restores!r}")

    def describe(self) -> dict[str, Any]:
        """The settings a run was trained with, as plain JSON (kept in every run summary, so a
        cached run is reused only under the same settings)."""
        # LSTMMetaLearner.prev_gate (2026-12-02) and layer1_init (2026-12-03) came later; their defaults
        # are what every earlier run did, so they are left out (earlier runs and checkpoints stay valid)
        learner = repr(self.learner()).replace(", prev_gate='value'", "").replace(", layer1_init='small'", "")
        return {"learner": learner, "mode": self.mode, "meta_batch": self.meta_batch,
                "grad_clip": self.grad_clip, "clip_value": self.clip_value,
                "clip_value_scope": self.clip_value_scope, "clip_norm": self.clip_norm,
                **({} if self.nonfinite == "stop" else {"nonfinite": self.nonfinite})}   # "stop": every earlier run


def clip_grads(sp: Spec, module: MAML | Population) -> None:
    """``sp``'s meta-gradient clipping of a ``MAML`` or a ``Population``, after ``backward``:
    values to ``[-clip_value, clip_value]`` (of every meta-parameter, or with scope ``"init"``
    of the base-learner initialisation only; with ``"init_per_task"`` the ``Population`` has done
    it in its meta-loss, task by task), then each run's norm to ``clip_norm``."""
    named = list(zip(module.names, module.stacked)) if isinstance(module, Population) else \
        list(module.named_parameters())
    if sp.clip_value is not None and sp.clip_value_scope == "init_per_task":
        if not isinstance(module, Population):
            raise ValueError("clip_grads: clip_value_scope='init_per_task' clamps inside the meta-loss; "
                             "train through a Population(task_clip=...) (train_meta does)")
        if module.task_clip != sp.clip_value:
            raise ValueError(f"clip_grads: the Population clamps each task at {module.task_clip}, the spec asks "
                             f"for {sp.clip_value}; build it with Population(task_clip={sp.clip_value})")
    elif sp.clip_value is not None:
        torch.nn.utils.clip_grad_value_([p for n, p in named if sp.clip_value_scope == "all"
                                         or n.startswith("model.")], sp.clip_value)
    if sp.clip_norm is not None:
        if isinstance(module, Population):
            module.clip_grad_norm_(sp.clip_norm)
        else:
            torch.nn.utils.clip_grad_norm_(module.parameters(), sp.clip_norm)


def spec(model: str, steps: int, k_shot: Optional[int] = None) -> Spec:
    """The 004 setting of ``model`` (``so-MAML``, ``fo-MAML``, ``so-TURTLE``, ``fo-TURTLE``,
    ``LSTM``, or ``so-TURTLE-raw`` / ``fo-TURTLE-raw``: Fig. 11's raw-gradient TURTLE) for ``steps``.

    ``k_shot`` matters (and is required) for the LSTM only: the thesis's code feeds its rule the
    support gradient divided by the batch size, the whole support set of ``k_shot`` points."""
    clip = 10.0 if steps > 1 else None
    order = "first_order" if model.startswith("fo-") else "second_order"
    if model in ("so-MAML", "fo-MAML"):
        return Spec(model, lambda: SGD(0.01), order, 1, clip, clip)
    if model in ("so-TURTLE", "fo-TURTLE"):
        if steps == 1:
            rule, mb = (lambda: Turtle(inputs=("grad",))), 1
        elif steps <= 5:
            rule, mb = (lambda: Turtle(inputs=("grad", "ema_grad", "time"), beta=0.9)), 2
        else:
            rule, mb = (lambda: Turtle(inputs=("grad", "ema_grad"), beta=0.3)), 4
        # The thesis's turtle.py clamps each task's meta-gradient of the initialisation before the
        # meta-batch sum; at T=10 (meta-batch 4) that differs from clamping the mean, because one task
        # whose unrolled gradient explodes would otherwise set the whole update's direction.
        scope = "init_per_task" if steps > 5 else "init"
        return Spec(model, rule, order, mb, clip, clip, clip_value_scope=scope, thesis_restores="init")
    if model in ("so-TURTLE-raw", "fo-TURTLE-raw"):   # 004 section 4.2.2 / Fig. 11
        return Spec(model, lambda: Turtle(inputs=("grad",), learn_lr=False), order, 1, clip, clip,
                    clip_value_scope="init", thesis_restores="init")
    if model == "LSTM":
        if k_shot is None:
            raise ValueError("spec: the LSTM's setting depends on the support size (its gradient is divided by "
                             "it, as in the thesis's code); pass spec('LSTM', steps, k_shot), got k_shot=None")
        check_shots("spec", k_shot=k_shot)
        # T = 10: a member whose meta-gradient is not finite skips that update instead of ending
        # its run (measured 2026-12-02: the thesis's unguarded rule lost 2 of 5 runs at k = 10)
        return Spec(model, lambda: LSTMMetaLearner(grad_scale=1.0 / k_shot), "second_order", 1, None, None, 0.25,
                    nonfinite="skip" if steps >= 10 else "stop", thesis_restores="none")
    raise ValueError(f"spec: unknown model {model!r}; choose so-MAML, fo-MAML, so-TURTLE, fo-TURTLE, "
                     "so-TURTLE-raw, fo-TURTLE-raw or LSTM")


@dataclass
class Record:
    """What one training run produced: per-task test MSE and timings."""

    test_mse: torch.Tensor
    seconds: float
    ms_per_iteration: float
    iterations: int
    best_val: float = math.nan
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    diverged: bool = False
    population: int = 1     # runs trained together; ``ms_per_iteration`` is for all of them
    # meta-training tasks seen when the run's meta-gradient first was not finite (with nonfinite="stop"
    # its parameters are lost from then on and it is tested at its best validated state); None: never
    nonfinite_at: Optional[int] = None
    skipped: int = 0        # updates skipped for a non-finite meta-gradient (Spec.nonfinite="skip")
    # per-task test MSE of the state the thesis's code tests (Spec.thesis_restores); None where
    # that is the best validated state (MAML) or it was not measured (runs before 2026-12-02)
    thesis_restore_mse: Optional[torch.Tensor] = None

    def summary(self) -> dict[str, Any]:
        v = self.test_mse
        out = {"mean": float(v.mean()), "median": float(v.median()), "seconds": self.seconds,
               "ms_per_iteration": self.ms_per_iteration, "iterations": self.iterations,
               "best_val": self.best_val, "val_curve": self.val_curve, "diverged": self.diverged,
               "population": self.population, "nonfinite_at": self.nonfinite_at, "skipped": self.skipped}
        if self.thesis_restore_mse is not None:
            out["thesis_restore_mean"] = float(self.thesis_restore_mse.mean())
            out["thesis_restore_median"] = float(self.thesis_restore_mse.median())
        return out

