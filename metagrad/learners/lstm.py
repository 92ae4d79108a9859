"""The LSTM meta-learner of Ravi & Larochelle (2017), as described in 004 section 2.3.3.

A coordinate-wise two-layer LSTM whose second layer's cell state *is* the base-learner's
weights (004 eq. (8)-(10))::

    x_t         = [p(L_t), p(g_t)]                          (eq. (11) preprocessing: 4 features)
    h_t, c_t    = LSTMCell(x_t, (h_{t-1}, c_{t-1}))         (layer 1, ``hidden_size`` units)
    f_t         = sigmoid(W_F [h_t, theta_t, f_{t-1}] + b_F) (forget gate, eq. (10))
    i_t         = sigmoid(W_I [h_t, theta_t, i_{t-1}] + b_I) (input gate = learning rate, eq. (9))
    theta_{t+1} = f_t * theta_t - i_t * g_t                  (cell update, eq. (8), c_bar = -g)

with ``g_t`` and ``L_t`` the support gradient and loss. The same weights serve every
coordinate; the layer-1 state ``(h, c)`` and the previous gates ``(f, i)`` live in the learner
``state`` (per task under ``vmap``), the initial cell state ``c_0 = theta_0`` is the model's
own parameters. By default gradients and loss are treated as constants inside the rule (the
first-order assumption of Ravi & Larochelle, following Andrychowicz et al. 2016);
``second_order=True`` differentiates through them. Meta-gradient norm clipping (0.25 in the
original) belongs to the outer optimiser. ``grad_scale`` multiplies ``g_t`` before the rule sees it
(in the preprocessing and in the cell update): the thesis's code (004) divides the gradient of the
mean support loss once more by the batch size, ``grad_scale = 1 / k`` for a full support batch.
``prev_gate`` says what ``f_{t-1}``, ``i_{t-1}`` are: the gate values, as eq. (9)-(10) write them
(``"value"``, default), or the gates' pre-sigmoid activations, as the code of Ravi & Larochelle's
PyTorch port that 004 builds on carries them (``"logit"``). The two agree on the first step (both
start at zero) and differ from the second on. ``layer1_init`` says how the first layer starts:
``"small"`` (default; every weight and its one bias ``U(-0.01, 0.01)``) or ``"torch"`` (PyTorch's
``LSTMCell`` initialisation, ``U(-1/sqrt(hidden), 1/sqrt(hidden))`` with separate input and hidden
biases, as 004's code does, ``modules/network.py``: only the second layer, the gates of
eq. (9)-(10), starts at ``U(-0.01, 0.01)`` there).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, check_int
from ..params import Params
from .base import Learner
from .coordinatewise import check_p, flat, preprocess, unflat

__all__ = ["LSTMMetaLearner"]

_P = "lstm."


@dataclass(frozen=True)
class LSTMMetaLearner(Learner):
    """Ravi & Larochelle's LSTM meta-learner (004 eq. (8)-(11)) as an inner-loop rule.

    Args:
        hidden_size: units of the first LSTM layer (20 in the original).
        second_order: differentiate through the gradient and loss inputs (default ``False``:
            they are detached inside the rule, the original's first-order assumption).
        p: the constant of the eq. (11) preprocessing (10).
        grad_scale: factor on the support gradient fed to the rule (default 1; 004's code uses
            ``1 / batch_size``, the support size ``k`` in its sine experiments).
        prev_gate: ``"value"`` (eq. (9)-(10): the previous gates enter as sigmoid outputs) or
            ``"logit"`` (as in 004's code: their pre-sigmoid activations).
        layer1_init: ``"small"`` (every first-layer weight and bias ``U(-0.01, 0.01)``) or
            ``"torch"`` (``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``, input and hidden biases
            apart, as 004's code's ``LSTMCell``).

    The gates start as in the original code: weights ``U(-0.01, 0.01)``, forget-gate bias
    ``U(4, 6)`` (gate near 1) and input-gate bias ``U(-5, -4)`` (rate near 0.01), so that the
    rule starts close to gradient descent. The previous gates are zero at the first step.
    """

    hidden_size: int = 20
    second_order: bool = False
    p: float = 10.0
    grad_scale: float = 1.0
    prev_gate: str = "value"
    layer1_init: str = "small"
    name: str = "lstm"

    def __post_init__(self) -> None:
        check_int("LSTMMetaLearner", "hidden_size", self.hidden_size, 1, InputError)
        check_p("LSTMMetaLearner", self.p)
        if not (isinstance(self.grad_scale, (int, float)) and 0 < self.grad_scale < float("inf")):
            raise InputError(f"LSTMMetaLearner: grad_scale must be a positive finite number (1 / k for 004's "
                             f"code), got {self.grad_scale!r}")
        if self.prev_gate not in ("value", "logit"):
            raise InputError(f"LSTMMetaLearner: prev_gate must be 'value' (eq. (9)-(10)) or 'logit' (004's code), "
                             f"got {self.prev_gate!r}")
        if self.layer1_init not in ("small", "torch"):
            raise InputError(f"LSTMMetaLearner: layer1_init must be 'small' (U(-0.01, 0.01)) or 'torch' (the original "
                             f"code's U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))), got {self.layer1_init!r}")

    def init_meta(self, params: Params) -> Params:
        ref = next(iter(params.values()))
        kw = dict(dtype=ref.dtype, device=ref.device)
        h = self.hidden_size

        def u(*shape: int, lo: float = -0.01, hi: float = 0.01) -> Tensor:
            return lo + (hi - lo) * torch.rand(*shape, **kw)

        gates = {f"{_P}W_F": u(h + 2), f"{_P}W_I": u(h + 2),
                 f"{_P}b_F": u(1, lo=4.0, hi=6.0), f"{_P}b_I": u(1, lo=-5.0, hi=-4.0)}
        if self.layer1_init == "small":
            return {f"{_P}W_ih": u(4 * h, 4), f"{_P}W_hh": u(4 * h, h), f"{_P}b": u(4 * h), **gates}
        s = h ** -0.5
        # two biases, as torch's LSTMCell: Adam steps each, so this is not one bias of their sum
        return {f"{_P}W_ih": u(4 * h, 4, lo=-s, hi=s), f"{_P}W_hh": u(4 * h, h, lo=-s, hi=s),
                f"{_P}b": u(4 * h, lo=-s, hi=s), f"{_P}b_hh": u(4 * h, lo=-s, hi=s), **gates}

    def init(self, params: Params, meta: Params) -> Any:
        n = sum(v.numel() for v in params.values())
        ref = next(iter(params.values()))
        z = lambda *s: torch.zeros(*s, dtype=ref.dtype, device=ref.device)  # noqa: E731
        return {"h": z(n, self.hidden_size), "c": z(n, self.hidden_size), "f": z(n), "i": z(n)}

    def gates(self, grads: Params, params: Params, state: Any, meta: Params,
              loss: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Forget gate ``f_t``, input gate ``i_t`` (flat ``[n]``) and the next state (layer 1, and
        the gates or their activations, per ``prev_gate``)."""
        keys = list(grads)
        g, theta = flat(grads, keys), flat(params, keys)
        x = torch.cat([preprocess(loss, self.p).expand(g.shape[0], 2), preprocess(g, self.p)], dim=1)
        z = x @ meta[f"{_P}W_ih"].T + state["h"] @ meta[f"{_P}W_hh"].T + meta[f"{_P}b"]
        if f"{_P}b_hh" in meta:
            z = z + meta[f"{_P}b_hh"]
        zi, zf, zg, zo = z.chunk(4, dim=1)
        c = torch.sigmoid(zf) * state["c"] + torch.sigmoid(zi) * torch.tanh(zg)
        h = torch.sigmoid(zo) * torch.tanh(c)
        w_f, w_i = meta[f"{_P}W_F"], meta[f"{_P}W_I"]
        hs = self.hidden_size
        a_f = h @ w_f[:hs] + theta * w_f[hs] + state["f"] * w_f[hs + 1] + meta[f"{_P}b_F"]
        a_i = h @ w_i[:hs] + theta * w_i[hs] + state["i"] * w_i[hs + 1] + meta[f"{_P}b_I"]
        f, i = torch.sigmoid(a_f), torch.sigmoid(a_i)
        carry = (f, i) if self.prev_gate == "value" else (a_f, a_i)
        return f, i, {"h": h, "c": c, "f": carry[0], "i": carry[1]}

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        if not self.second_order:
            # Ravi & Larochelle's assumption: the inputs do not depend on the meta-parameters.
            grads = {k: v.detach() for k, v in grads.items()}
            loss = loss.detach()
        if self.grad_scale != 1.0:
            grads = {k: v * self.grad_scale for k, v in grads.items()}
        keys = list(grads)
        f, i, new_state = self.gates(grads, params, state, meta, loss)
        theta = flat(params, keys)
        new = f * theta - i * flat(grads, keys)
        return unflat(new, grads, keys), new_state
