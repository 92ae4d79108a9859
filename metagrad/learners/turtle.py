"""TURTLE: a stateless feed-forward meta-network as the inner-loop optimiser (004, section 3.3).

For every base-learner parameter coordinate ``i`` the same network ``g_phi`` maps the
coordinate's meta-information ``I_t^(i)`` to an update that is added to the fast weights
(004 Algorithm 4)::

    theta_{t+1} = theta_t + lr * g_phi(I_t)          (lr: per-parameter, meta-learned, optional)

``I_t`` is chosen from: the raw gradient, the loss, the gradient and loss preprocessed by 004
eq. (11), an exponential moving average of past gradients or of past updates (004 eq. (18)),
and the step index ``t``. ``phi`` and the per-parameter rates live in ``meta``; the moving
averages live in the learner ``state`` (per task under ``vmap``). Meta-gradients are second
order by default (the core's ``mode="second_order"``); ``mode="first_order"`` gives
fo-TURTLE (004 section 4.2.2, Fig. 11).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from ..errors import InputError, check_finite, check_int
from ..params import Params
from .base import Learner
from .coordinatewise import check_p, flat, preprocess, unflat

__all__ = ["Turtle", "TURTLE_INPUTS", "ACTIVATIONS"]

# name -> number of features it contributes per coordinate
TURTLE_INPUTS = {"grad": 1, "loss": 1, "grad_proc": 2, "loss_proc": 2, "ema_grad": 1,
                 "ema_update": 1, "time": 1}
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
               "linear": lambda x: x}
_NET = "turtle."   # prefix of the meta-network's keys in ``meta``
_LR = "lr."        # prefix of the per-parameter learning rates' keys


@dataclass(frozen=True)
class Turtle(Learner):
    """TURTLE (Huisman, 004 section 3.3, appendix A.1): ``theta <- theta + lr * g_phi(I)``.

    Args:
        inputs: per-coordinate inputs of ``g_phi``, any of ``grad`` (raw gradient), ``loss``
            (support loss), ``grad_proc`` / ``loss_proc`` (004 eq. (11), two features each),
            ``ema_grad`` (EMA of gradients, started at the first gradient and including the
            current one), ``ema_update`` (EMA of past updates: 0 at ``t = 0``, the previous
            update at ``t = 1``, then ``beta h + (1 - beta) u_{t-1}``; 004 eq. (18) as in the
            thesis's code), ``time`` (the step index ``t``).
        hidden_layers, width: ``hidden_layers`` hidden layers of ``width`` units (0: linear).
        activation: ``relu`` | ``tanh`` | ``sigmoid`` | ``linear``.
        beta: decay of the moving averages (004 eq. (18)).
        learn_lr: a meta-learned learning rate per base-learner parameter coordinate.
        lr_init: initial value of those rates; ``None`` draws them from ``U[0, 1]`` as the
            thesis's code does.
        bias: whether the meta-network's layers have biases (initialised to zero).

    The defaults are the thesis's best setting (appendix A.1): five hidden layers of 20 ReLU
    units, inputs gradient + EMA(0.9) of gradients + time step, per-parameter rates.
    Weights use PyTorch's default ``nn.Linear`` initialisation (seed the global RNG first).
    """

    inputs: tuple[str, ...] = ("grad", "ema_grad", "time")
    hidden_layers: int = 5
    width: int = 20
    activation: str = "relu"
    beta: float = 0.9
    learn_lr: bool = True
    lr_init: Optional[float] = None
    bias: bool = True
    p: float = 10.0
    name: str = "turtle"

    def __post_init__(self) -> None:
        if isinstance(self.inputs, str) or not isinstance(self.inputs, (tuple, list)):
            raise InputError(f"Turtle: inputs must be a list of names from {', '.join(TURTLE_INPUTS)}, got {self.inputs!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not self.inputs:
            raise InputError(f"Turtle: inputs must name at least one of {', '.join(TURTLE_INPUTS)}")
        for name in self.inputs:
            if not isinstance(name, str) or name not in TURTLE_INPUTS:
                raise InputError(f"Turtle: unknown input {name!r}; choose from {', '.join(TURTLE_INPUTS)}")
        if len(set(self.inputs)) != len(self.inputs):
            raise InputError(f"Turtle: inputs {self.inputs} repeat a name; list each input once")
        check_int("Turtle", "hidden_layers", self.hidden_layers, 0, InputError)
        check_int("Turtle", "width", self.width, 1, InputError)
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise InputError(f"Turtle: unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if not 0.0 <= check_finite("Turtle", "beta", self.beta, InputError) <= 1.0:
            raise InputError(f"Turtle: beta must lie in [0, 1], got {self.beta}")
        if self.lr_init is not None and not check_finite("Turtle", "lr_init", self.lr_init, InputError) > 0:
            raise InputError(f"Turtle: lr_init must be positive or None (U[0, 1]), got {self.lr_init}")
        check_p("Turtle", self.p)

    @property
    def n_features(self) -> int:
        """Number of per-coordinate input features of ``g_phi``."""
        return sum(TURTLE_INPUTS[n] for n in self.inputs)

    def layer_sizes(self) -> list[int]:
        """``[features, width, ..., width, 1]``."""
        return [self.n_features, *([self.width] * self.hidden_layers), 1]

    def init_meta(self, params: Params) -> Params:
        ref = next(iter(params.values()))
        kw = dict(dtype=ref.dtype, device=ref.device)
        meta: Params = {}
        sizes = self.layer_sizes()
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); zero biases (thesis code)
            bound = 1.0 / fan_in ** 0.5
            meta[f"{_NET}{i}.weight"] = (torch.rand(fan_out, fan_in, **kw) * 2 - 1) * bound
            if self.bias:
                meta[f"{_NET}{i}.bias"] = torch.zeros(fan_out, **kw)
        if self.learn_lr:
            for k, v in params.items():
                meta[_LR + k] = (torch.rand_like(v) if self.lr_init is None
                                 else torch.full_like(v, float(self.lr_init)))
        return meta

    def init(self, params: Params, meta: Params) -> Any:
        state: dict[str, Params] = {}
        if "ema_grad" in self.inputs:
            state["ema_grad"] = {k: torch.zeros_like(v) for k, v in params.items()}
        if "ema_update" in self.inputs:
            state["ema_update"] = {k: torch.zeros_like(v) for k, v in params.items()}
            state["last_update"] = {k: torch.zeros_like(v) for k, v in params.items()}
        return state

    def network(self, x: Tensor, meta: Params) -> Tensor:
        """``g_phi``: ``[n, features] -> [n]`` (the same network for every coordinate)."""
        act = ACTIVATIONS[self.activation]
        n_layers = self.hidden_layers + 1
        for i in range(n_layers):
            w = meta[f"{_NET}{i}.weight"]
            x = x @ w.T
            if self.bias:
                x = x + meta[f"{_NET}{i}.bias"]
            if i < n_layers - 1:
                x = act(x)
        return x.squeeze(-1)

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        keys = list(grads)
        g = flat(grads, keys)
        state = dict(state)
        cols: list[Tensor] = []
        for name in self.inputs:
            if name == "grad":
                cols.append(g[:, None])
            elif name == "loss":
                cols.append(loss.expand_as(g)[:, None])
            elif name == "grad_proc":
                cols.append(preprocess(g, self.p))
            elif name == "loss_proc":
                cols.append(preprocess(loss, self.p).expand(g.shape[0], 2))
            elif name == "ema_grad":
                # Started at the first observed gradient (004 section 3.3, thesis code).
                h = grads if t == 0 else {k: self.beta * state["ema_grad"][k] + (1 - self.beta) * grads[k]
                                          for k in keys}
                state["ema_grad"] = h
                cols.append(flat(h, keys)[:, None])
            elif name == "ema_update":
                prev = state["ema_update"]
                last = state["last_update"]
                if t == 1:
                    h = last
                elif t >= 2:
                    h = {k: self.beta * prev[k] + (1 - self.beta) * last[k] for k in keys}
                else:
                    h = prev  # zeros: no update made yet
                state["ema_update"] = h
                cols.append(flat(h, keys)[:, None])
            elif name == "time":
                cols.append(torch.full_like(g, float(t))[:, None])
        x = torch.cat(cols, dim=1)
        update = unflat(self.network(x, meta), grads, keys)
        if self.learn_lr:
            update = {k: meta[_LR + k] * u for k, u in update.items()}
        if "ema_update" in self.inputs:
            state["last_update"] = update
        return {k: params[k] + update[k] for k in keys}, state
