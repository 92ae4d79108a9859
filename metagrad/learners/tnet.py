"""T-nets and MT-nets as update rules (Lee & Choi 2018, "Gradient-Based Meta-Learning with
Learned Layerwise Metric and Subspace", seed 001).

The model is converted with ``metagrad.models.to_tnet`` so every layer computes
``y = T (W x + b)``. ``TNet`` adapts only ``W`` and ``b`` (001 eq. (4)); the transforms ``T``
(keys ending in ``.T``) are learned in the outer loop only. ``MTNet`` also meta-learns one
logit ``zeta_j`` per output row of every T-layer (``meta["mask/<layer>"]``) and updates only
the rows its mask ``M`` selects (001 eq. (8)): ``W' = W - a M ⊙ grad_W L``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError, MissingKeyError, check_finite, check_positive
from ..models.tnet import is_transform, layer_of, transform_layers
from ..params import Params
from .base import Learner
from .sgd import SGD

__all__ = ["TNet", "MTNet", "MASK_PREFIX", "gumbel_noise", "relaxed_mask", "update_fraction",
           "update_fractions"]

MASK_PREFIX = "mask/"
_MASKS = ("sample", "threshold", "ones")


def _check_tnet(where: str, params: Params) -> list[str]:
    layers = transform_layers(params)
    if not layers:
        raise InputError(f"{where}: the model has no T-net layers (no key ending in '.T'); "
                         "convert it with metagrad.models.to_tnet(model)")
    return layers


@dataclass(frozen=True)
class TNet(Learner):
    """T-net inner rule: ``inner`` (SGD by default) updates ``W`` and ``b`` only, never ``T``.

    ``(W, b)' = (W, b) - a grad_{W,b} L_support(W, b, T)`` (001 eq. (4)); the step of the layer
    output is then ``-a T T^T grad_A L x`` (001 eq. (17)): ``T`` learns a metric.
    """

    inner: Learner = field(default_factory=SGD)
    name: str = "tnet"

    def __post_init__(self) -> None:
        if not isinstance(self.inner, Learner):
            raise InputTypeError(f"{type(self).__name__}: inner must be an update rule such as SGD(lr=0.4), "
                                 f"got {type(self.inner).__name__}")

    @property
    def nominal_lr(self) -> Optional[float]:
        return self.inner.nominal_lr

    def adapts(self, key: str) -> bool:
        return not is_transform(key) and self.inner.adapts(key)

    def init_meta(self, params: Params) -> Params:
        _check_tnet("TNet.init_meta", params)
        return self.inner.init_meta({k: v for k, v in params.items() if self.adapts(k)})

    def init(self, params: Params, meta: Params) -> Any:
        return self.inner.init(params, meta)

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        return self.inner.step(grads, params, state, meta, t, loss)


def gumbel_noise(shape: torch.Size | tuple[int, ...], like: Tensor) -> Tensor:
    """``g1 - g2`` for ``g1, g2 ~ Gumbel(0, 1)`` (001 eq. (10)), drawn from torch's global RNG.

    Inside ``vmap(..., randomness="different")`` every task gets its own draw; seed with
    ``torch.manual_seed`` for reproducible runs.
    """
    tiny = torch.finfo(like.dtype).tiny
    u = torch.rand((2, *shape), dtype=like.dtype, device=like.device).clamp(tiny, 1.0 - 1e-7)
    g = -torch.log(-torch.log(u))
    return g[0] - g[1]


def relaxed_mask(zeta: Tensor, noise: Tensor, temperature: float, hard: bool) -> Tensor:
    """001 eq. (11): ``m = e^{(zeta+g1)/tau} / (e^{(zeta+g1)/tau} + e^{g2/tau}) = sigmoid((zeta + g1 - g2)/tau)``.

    ``hard=True`` is the straight-through estimator of the reference code: the forward value
    is the binary sample ``1[m > 1/2]`` (001 eq. (9)), the gradient that of the relaxed ``m``.
    """
    soft = torch.sigmoid((zeta + noise) / temperature)
    if not hard:
        return soft
    # soft - soft.detach() is exactly 0 in value, so the forward mask is exactly binary.
    return (soft > 0.5).to(soft.dtype) + (soft - soft.detach())


@dataclass(frozen=True)
class MTNet(TNet):
    """MT-net inner rule: a T-net whose update of each layer's rows is gated by a mask ``M``.

    ``W' = W - a M ⊙ grad_W L``, ``b' = b - a m ⊙ grad_b L`` (001 eq. (8)), with row ``j`` of
    ``M`` one (update) with probability ``sigmoid(zeta_j)`` (eq. (9)). ``M`` is drawn once per
    task (at ``init``) and reused for every inner step. The mask multiplies the gradient handed
    to ``inner`` (for SGD exactly eq. (8)).

    Args:
        inner: the rule applied to masked gradients (``SGD(lr)`` by default).
        temperature: Gumbel-softmax temperature ``tau`` of eq. (11) (reference code: 1).
        hard: straight-through binary samples (reference code) or the relaxed mask of eq. (11).
        logit_init: initial ``zeta`` (001: 0, i.e. every row updated with probability 1/2).
        mask: ``"sample"`` (training; eq. (10)-(11)), ``"threshold"`` (evaluation with the
            deterministic mask ``sigmoid(zeta) > 1/2``) or ``"ones"`` (every row: a T-net).
        fixed_noise: ``{layer: g1 - g2}`` used instead of fresh Gumbel noise (tests,
            deterministic evaluation); every task then gets the same mask.
    """

    temperature: float = 1.0
    hard: bool = True
    logit_init: float = 0.0
    mask: str = "sample"
    fixed_noise: Optional[Mapping[str, Tensor]] = field(default=None, compare=False)
    name: str = "mtnet"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("MTNet", "temperature", self.temperature, error=InputError)
        check_finite("MTNet", "logit_init", self.logit_init, InputError)
        if self.mask not in _MASKS:
            raise InputError(f"MTNet: unknown mask {self.mask!r}; choose one of {', '.join(_MASKS)}")
        if self.fixed_noise is not None and not isinstance(self.fixed_noise, Mapping):
            raise InputTypeError(f"MTNet: fixed_noise must be a dict {{layer: noise tensor}} or None, "
                                 f"got {type(self.fixed_noise).__name__}")
        if self.fixed_noise is not None and self.mask != "sample":
            raise InputError(f"MTNet: fixed_noise is only used with mask='sample', not {self.mask!r}")

    def evaluation(self, mask: str = "threshold") -> "MTNet":
        """The same rule with another mask mode (e.g. the hard ``sigmoid(zeta) > 1/2`` mask)."""
        return MTNet(inner=self.inner, temperature=self.temperature, hard=self.hard,
                     logit_init=self.logit_init, mask=mask,
                     fixed_noise=self.fixed_noise if mask == "sample" else None)

    def init_meta(self, params: Params) -> Params:
        """``meta["mask/<layer>"] = logit_init`` (one logit per output row) plus ``inner``'s meta."""
        layers = _check_tnet("MTNet.init_meta", params)
        meta = super().init_meta(params)
        for layer in layers:
            t = params[(layer + "." if layer else "") + "T"]
            meta[MASK_PREFIX + layer] = torch.full((t.shape[0],), float(self.logit_init),
                                                   dtype=t.dtype, device=t.device)
        return meta

    def _masks(self, meta: Params) -> dict[str, Tensor]:
        zetas = {k[len(MASK_PREFIX):]: v for k, v in meta.items() if k.startswith(MASK_PREFIX)}
        if not zetas:
            raise MissingKeyError("MTNet.init: meta has no 'mask/<layer>' logits; create meta with "
                           "learner.init_meta(params) for the T-net model")
        if self.mask == "ones":
            return {k: torch.ones_like(z) for k, z in zetas.items()}
        if self.mask == "threshold":
            return {k: (z > 0).to(z.dtype) for k, z in zetas.items()}
        out = {}
        for k, z in zetas.items():
            if self.fixed_noise is not None:
                if k not in self.fixed_noise:
                    raise MissingKeyError(f"MTNet.init: fixed_noise has no entry for layer {k!r}; "
                                   f"give one for each of {sorted(zetas)}")
                noise = self.fixed_noise[k].to(z)
                if noise.shape != z.shape:
                    raise InputError(f"MTNet.init: fixed_noise[{k!r}] has shape {tuple(noise.shape)}, "
                                     f"expected {tuple(z.shape)}")
            else:
                noise = gumbel_noise(z.shape, z)
            out[k] = relaxed_mask(z, noise, self.temperature, self.hard)
        return out

    def init(self, params: Params, meta: Params) -> Any:
        return self._masks(meta), self.inner.init(params, meta)

    def step(self, grads: Params, params: Params, state: Any, meta: Params, t: int,
             loss: Tensor) -> tuple[Params, Any]:
        masks, inner_state = state
        masked = {}
        for k, g in grads.items():
            m = masks.get(layer_of(k)) if k.rsplit(".", 1)[-1] in ("weight", "bias") else None
            if m is None:  # not a T-layer's weight (e.g. a bias transformation): always updated
                masked[k] = g
                continue
            if g.shape[0] != m.shape[0]:
                raise InputError(f"MTNet.step: {k} has {g.shape[0]} rows but its mask has {m.shape[0]}")
            masked[k] = g * m.reshape(-1, *([1] * (g.dim() - 1)))
        new, inner_state = self.inner.step(masked, params, inner_state, meta, t, loss)
        return new, (masks, inner_state)


def update_fractions(meta: Params) -> dict[str, float]:
    """Per T-layer: the expected fraction of rows an MT-net updates, ``mean_j sigmoid(zeta_j)``."""
    out = {k[len(MASK_PREFIX):]: float(torch.sigmoid(v.detach()).mean())
           for k, v in meta.items() if k.startswith(MASK_PREFIX)}
    if not out:
        raise MissingKeyError("update_fractions: meta has no 'mask/<layer>' logits (not an MT-net)")
    return out


def update_fraction(meta: Params, threshold: bool = False) -> float:
    """Fraction of all rows (every layer pooled) that an MT-net updates (001 Fig. 4).

    ``sigmoid(zeta)`` averaged over rows, or with ``threshold=True`` the fraction of rows with
    ``sigmoid(zeta) > 1/2``. (001's Fig. 4 text writes ``e^{-l}/(e^{-l}+1)``, the reference
    code's summary of ``-zeta``; with the mask of eq. (9) the update probability is ``sigmoid(zeta)``.)
    """
    zs = [v.detach().reshape(-1) for k, v in meta.items() if k.startswith(MASK_PREFIX)]
    if not zs:
        raise MissingKeyError("update_fraction: meta has no 'mask/<layer>' logits (not an MT-net)")
    z = torch.cat(zs)
    return float((z > 0).to(torch.float64).mean()) if threshold else float(torch.sigmoid(z).mean())
