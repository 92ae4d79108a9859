"""Name -> builder tables that configs refer to (``task.name``, ``model.name``, ``inner.learner``).

A builder's keyword parameters are the keys its config section accepts; ``build`` rejects
any other key with a one-line error that lists the valid ones. Adding a task family, a
model or an update rule to the config system is one ``register_*`` call here.

* ``TASKS[name](split=..., **options) -> TaskDistribution`` (``split`` is ``"train"``,
  ``"val"`` or ``"test"``; builders without a ``split`` parameter ignore it).
* ``MODELS[name](task, **options) -> nn.Module`` (``task`` is the training distribution, for
  input and output sizes).
* ``LEARNERS[name](model, **options) -> (model, Learner)`` (a rule may transform the model,
  e.g. T-nets wrap its layers).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from ..errors import InputError, did_you_mean
from ..learners.base import Learner
from ..learners.sgd import SGD
from ..models.mlp import MLP
from ..models.bias_transform import bias_transformed_mlp
from ..tasks.polynomial import Polynomial
from ..tasks.sine import Sinusoid
from ..tasks.quadratic import Quadratic
from ..models.linear import LinearModel

__all__ = ["TASKS", "MODELS", "LEARNERS", "MEASURES", "CURVE_MEASURES", "register_task", "register_model", "register_learner",
           "accepted_keys", "build"]

TASKS: dict[str, Callable[..., Any]] = {}
MODELS: dict[str, Callable[..., nn.Module]] = {}
LEARNERS: dict[str, Callable[..., tuple[nn.Module, Learner]]] = {}


def register_task(name: str, builder: Callable[..., Any]) -> None:
    """Make ``task.name = name`` build tasks with ``builder``."""
    TASKS[name] = builder


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    """Make ``model.name = name`` build models with ``builder(task, **options)``."""
    MODELS[name] = builder


def register_learner(name: str, builder: Callable[..., tuple[nn.Module, Learner]]) -> None:
    """Make ``inner.learner = name`` build ``(model, learner)`` with ``builder(model, **options)``."""
    LEARNERS[name] = builder


def accepted_keys(builder: Callable[..., Any], skip: tuple[str, ...] = ()) -> list[str]:
    """Keyword parameters of ``builder`` (the keys its config section may hold)."""
    return [p.name for p in inspect.signature(builder).parameters.values()
            if p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def build(kind: str, table: Mapping[str, Callable[..., Any]], name: str, options: Mapping[str, Any],
          *args: Any, skip: tuple[str, ...] = (), **fixed: Any) -> Any:
    """Look ``name`` up in ``table`` and call it with ``options``, rejecting unknown keys."""
    if name not in table:
        raise InputError(f"{kind}: unknown name {name!r}{did_you_mean(name, table)}; choose one of {', '.join(sorted(table))}")
    builder = table[name]
    keys = accepted_keys(builder, skip)
    bad = [k for k in options if k not in keys]
    if bad:
        raise InputError(f"{kind}: unknown key {kind}.{bad[0]} for {name!r}; valid keys: {', '.join(keys)}")
    if "split" in fixed and "split" not in inspect.signature(builder).parameters:
        fixed = {k: v for k, v in fixed.items() if k != "split"}
    return builder(*args, **fixed, **options)


# --- built-in entries --------------------------------------------------------------------

def _sine(k_shot: int = 10, k_query: int = 10, amplitude: tuple[float, float] = (0.1, 5.0),
          phase: tuple[float, float] = (0.0, math.pi), frequency: tuple[float, float] = (1.0, 1.0),
          x_range: tuple[float, float] = (-5.0, 5.0)) -> Sinusoid:
    return Sinusoid(k_shot, k_query, tuple(amplitude), tuple(phase), tuple(frequency), tuple(x_range))


def _polynomial(k_shot: int = 10, k_query: int = 10, degree: int = 3,
                coef_range: tuple[float, float] = (-1.0, 1.0),
                x_range: tuple[float, float] = (-3.0, 3.0)) -> Polynomial:
    return Polynomial(k_shot, k_query, degree, tuple(coef_range), tuple(x_range))


def _mlp(task: Any, hidden: list[int] = (40, 40), activation: str = "relu", init: str = "default",
         bias_transform: int = 0, bias_init: str = "default") -> nn.Module:
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hidden):
        raise InputError(f"model: mlp hidden must be a list of layer widths, e.g. [40, 40], got {hidden!r}")
    if hasattr(task, "in_shape"):   # an image task: the MLP reads vectors of task.in_features
        raise InputError(f"model: mlp takes vector inputs, but this task gives images of shape {tuple(task.in_shape)}; "
                         f"use model.name=conv4")
    sizes = [getattr(task, "in_features", 1), *hidden, getattr(task, "out_features", 1)]
    if bias_init not in ("default", "zero"):
        raise InputError(f"model: mlp bias_init must be 'default' or 'zero', got {bias_init!r}")
    if bias_transform:  # 000's learned input vector of this length (0: none)
        model = bias_transformed_mlp(sizes, bias_transform, activation, init)
    else:
        model = MLP(sizes, activation, init)
    if bias_init == "zero":  # weights as drawn, biases zero (004's code); draws nothing more
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.data.zero_()
    return model


def _sgd(model: nn.Module, lr: float = 0.01, learn_lr: bool = False) -> tuple[nn.Module, Learner]:
    return model, SGD(lr=lr, learn_lr=learn_lr)


def _quadratic(dim: int = 10, k_shot: int = 10, k_query: int = 10, curvature: tuple[float, float] = (0.5, 2.0),
               spread: float = 1.0, noise: float = 0.0, mean: float = 1.0) -> Quadratic:
    return Quadratic(dim, k_shot, k_query, tuple(curvature), spread, noise, mean)


def _linear(task: Any, init: float = 0.0) -> nn.Module:
    return LinearModel(getattr(task, "in_features", 1), init)


register_task("sine", _sine)
register_task("quadratic", _quadratic)
register_model("linear", _linear)
register_task("polynomial", _polynomial)
register_model("mlp", _mlp)
register_learner("sgd", _sgd)


# --- learned inner-loop geometry (001: Meta-SGD, T-net, MT-net) ----------------------------
from ..learners.meta_sgd import MetaSGD  # noqa: E402
from ..learners.tnet import MTNet, TNet, update_fraction  # noqa: E402
from ..models.tnet import to_tnet  # noqa: E402


def _meta_sgd(model: nn.Module, lr: float = 0.01, lr_init: str = "uniform",
              lr_range: tuple[float, float] = (0.005, 0.1), seed: Optional[int] = None) -> tuple[nn.Module, Learner]:
    # seed None: the rates' draw comes from the global RNG, which ``building.build`` seeds with the run's seed
    seed = int(torch.randint(0, 2 ** 31 - 1, ())) if seed is None else seed
    return model, MetaSGD(lr=lr, lr_init=lr_init, lr_range=tuple(lr_range), seed=seed)


def _tnet(model: nn.Module, lr: float = 0.01) -> tuple[nn.Module, Learner]:
    return to_tnet(model), TNet(SGD(lr=lr))


def _mtnet(model: nn.Module, lr: float = 0.01, temperature: float = 1.0, hard: bool = True,
           logit_init: float = 0.0, mask: str = "sample") -> tuple[nn.Module, Learner]:
    return to_tnet(model), MTNet(SGD(lr=lr), temperature=temperature, hard=hard,
                                 logit_init=logit_init, mask=mask)


register_learner("meta_sgd", _meta_sgd)
register_learner("tnet", _tnet)
register_learner("mtnet", _mtnet)

# Numbers a sweep computes on each trained run (``sweep.Cell.measures``): name -> f(MAML) -> float.
MEASURES: dict[str, Callable[[Any], float]] = {
    "update_fraction": lambda algo: update_fraction(algo.meta_params()),   # 001 Fig. 4: mean sigmoid(zeta)
    "threshold_fraction": lambda algo: update_fraction(algo.meta_params(), threshold=True),   # sigmoid(zeta) > 1/2
}


def _grad_norm_F(algo: Any, task: Any) -> float:
    """``||grad F(w)||`` of 002 eq. (2) in closed form (quadratic tasks and a linear model)."""
    from ..tasks.quadratic import meta_gradient
    if not isinstance(task, Quadratic):
        raise InputError(f"eval.measure grad_norm_F needs task.name=quadratic (exact F), not {type(task).__name__}")
    alpha = algo.learner.nominal_lr
    params = {k: v.detach().to(torch.float64) for k, v in algo.params().items()}
    return float(meta_gradient(params, alpha, task).norm())


# Numbers a run records every ``eval.every`` iterations in place of validation (``eval.measure``; the run
# summary's ``val_curve``): name -> f(MAML, training task distribution) -> float (lower is better).
def _grad_norm_F_sampled(algo: Any, task: Any) -> float:
    """``||grad F(w)||`` estimated with a very large batch (any task family with ``resample``): 2,000
    tasks of 100 support and 100 query examples, exact second order (``metagrad.stationarity``)."""
    from ..stationarity import meta_gradient_norm
    return meta_gradient_norm(algo, task)[0]


CURVE_MEASURES: dict[str, Callable[[Any, Any], float]] = {"grad_norm_F": _grad_norm_F,
                                                          "grad_norm_F_sampled": _grad_norm_F_sampled}


# --- learned optimisers (004: TURTLE, the LSTM meta-learner) --------------------------------
from ..learners.lstm import LSTMMetaLearner  # noqa: E402
from ..learners.turtle import Turtle  # noqa: E402


def _turtle(model: nn.Module, inputs: tuple[str, ...] = ("grad", "ema_grad", "time"), hidden_layers: int = 5,
            width: int = 20, activation: str = "relu", beta: float = 0.9, learn_lr: bool = True,
            lr_init: float | None = None, bias: bool = True) -> tuple[nn.Module, Learner]:
    return model, Turtle(inputs=tuple(inputs), hidden_layers=hidden_layers, width=width, activation=activation,
                         beta=beta, learn_lr=learn_lr, lr_init=lr_init, bias=bias)


def _lstm(model: nn.Module, hidden_size: int = 20, second_order: bool = False, p: float = 10.0,
          grad_scale: float = 1.0, prev_gate: str = "value", layer1_init: str = "small") -> tuple[nn.Module, Learner]:
    return model, LSTMMetaLearner(hidden_size=hidden_size, second_order=second_order, p=p, grad_scale=grad_scale,
                                  prev_gate=prev_gate, layer1_init=layer1_init)


register_learner("turtle", _turtle)
register_learner("lstm", _lstm)


# --- image benchmarks (Omniglot, miniImageNet, CUB) and conv4 ----------------------------

from ..models.conv4 import Conv4  # noqa: E402
from ..tasks.images import CUB, MiniImageNet  # noqa: E402
from ..tasks.omniglot import Omniglot  # noqa: E402


def _conv4(task: Any, hidden: Optional[int] = None, pooling: str = "auto", blocks: int = 4, norm: str = "batch",
           eps: float = 1e-5) -> Conv4:
    # "auto": stride-2 convs for grey 28x28 Omniglot, 2x2 max-pooling for RGB 84x84 images;
    # hidden None: 64 filters with strides (Omniglot), 32 with max-pooling (MAML's miniImageNet).
    if pooling == "auto":
        pooling = "stride" if getattr(task, "channels", 1) == 1 else "max"
    hidden = hidden if hidden is not None else (64 if pooling == "stride" else 32)
    return Conv4(n_way=getattr(task, "n_way", 5), channels=getattr(task, "channels", 1),
                 image_size=getattr(task, "image_size", 28), hidden=hidden, pooling=pooling,
                 blocks=blocks, norm=norm, eps=eps)


register_task("omniglot", Omniglot)
register_task("miniimagenet", MiniImageNet)
register_task("cub", CUB)
register_model("conv4", _conv4)


# --- how a model is meta-learned: config key ``algorithm`` (000's baselines beside MAML) ------------
from ..algorithm import MAML  # noqa: E402
from ..baselines.blackbox import BlackBox  # noqa: E402
from ..baselines.oracle import TaskConditioned, description_size  # noqa: E402
from ..models.snail import SNAIL  # noqa: E402


class Widened:
    """``task`` as a model builder sees it, with other per-example input/output sizes (what the
    network reads: ``[x; tau]`` for the oracle, ``(x, y, flag)`` steps for a black-box learner)."""

    def __init__(self, task: Any, in_features: int, out_features: Optional[int] = None) -> None:
        self._task, self.in_features = task, in_features
        self.out_features = out_features if out_features is not None else getattr(task, "out_features", 1)

    def __getattr__(self, name: str) -> Any:
        if name == "_task":   # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._task, name)


def _maml(cfg: Any, task: Any, make_model: Callable[[Any], nn.Module]) -> nn.Module:
    model = make_model(task)
    model, learner = build("inner", LEARNERS, cfg.inner["learner"], cfg.learner_options(), model)
    model = model.to(getattr(torch, cfg.dtype))   # before MAML: learners draw their meta-parameters like the weights
    return MAML(model, learner=learner, inner_steps=cfg.inner["steps"], mode=cfg.inner["mode"],
                loss=task.loss, grad_clip=cfg.inner["grad_clip"], hf_delta=cfg.inner["hf_delta"],
                hf_rho=cfg.inner["hf_rho"], vectorize=cfg.vectorize, compile=cfg.compile)


def _oracle(cfg: Any, task: Any, make_model: Callable[[Any], nn.Module]) -> nn.Module:
    # fine-tuned at test time by plain SGD: inner.learner must be sgd (inner.lr, inner.steps)
    if cfg.inner["learner"] != "sgd":
        raise InputError(f"algorithm oracle: fine-tunes with plain SGD; inner.learner must be 'sgd', "
                         f"got {cfg.inner['learner']!r}")
    model = make_model(Widened(task, getattr(task, "in_features", 1) + description_size(task)))
    return TaskConditioned(model, inner_lr=cfg.inner.get("lr", 0.01), inner_steps=cfg.inner["steps"],
                           loss=task.loss, vectorize=cfg.vectorize)


def _blackbox(cfg: Any, task: Any, make_model: Callable[[Any], nn.Module]) -> nn.Module:
    out = getattr(task, "n_way", 1) if task.loss == "cross_entropy" else getattr(task, "out_features", 1)
    embed, features = None, getattr(task, "in_features", 1)
    if hasattr(task, "image_size"):   # images: Mishra et al.'s conv embedding, here 000's conv4 without its head
        conv = _conv4(task)
        embed, features = nn.Sequential(conv.features, nn.Flatten()), conv.feature_dim
    net = make_model(Widened(task, features + out + 1, out))
    return BlackBox(net, loss=task.loss, inner_steps=cfg.inner["steps"], embed=embed)


def _snail(task: Any, blocks: int = 2, dilations: list[int] = (1, 2, 4, 8), filters: int = 16,
           key_size: int = 8, value_size: int = 8) -> nn.Module:
    return SNAIL(task.in_features, task.out_features, blocks, list(dilations), filters, key_size, value_size)


# ``algorithm`` (a top-level config key, default "maml") -> builder(cfg, task, make_model) -> module that
# ``fit`` trains and ``evaluate`` tests (``meta_loss``, ``adaptation_curve``, ``metric_name``, ``inner_steps``).
# ``make_model(view)`` builds the config's model section for a task view (input/output sizes).
ALGORITHMS: dict[str, Callable[..., nn.Module]] = {"maml": _maml, "oracle": _oracle, "blackbox": _blackbox}
register_model("snail", _snail)
