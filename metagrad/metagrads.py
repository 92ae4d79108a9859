"""The three meta-gradient modes: how the inner loop's gradient op is differentiated.

MAML's meta-gradient of ``L_q(U(theta))`` for one inner SGD step is
``(I - a H(theta)) grad L_q(theta')`` (Finn et al. 2017; 002 eq. (5)). The modes differ only in
how the *inner gradient op* ``g = grad L_s(w)`` is treated by the outer backward pass:

* ``second_order``: exactly (autograd through ``torch.func.grad``), which produces the
  Hessian-vector products ``H u`` of every step.
* ``first_order``: ``g`` is a constant (FO-MAML, 002 eq. (6)): ``H u`` is dropped.
* ``hessian_free``: ``H u`` is replaced by the central finite difference of 002 eq. (9)-(11),
  ``H u ~ (grad L(w + d u) - grad L(w - d u)) / (2 d)``, computed in the backward pass of a
  custom ``torch.autograd.Function`` (HF-MAML, Fallah, Mokhtari and Ozdaglar 2020). The
  gradients run on a separate batch ``D_h`` when one is given. ``d`` is fixed, or
  ``d = 1 / (6 rho a ||u||)`` (002, Theorem 4.17), computed per task. ``second_order`` given
  ``D_h`` takes its exact Hessian-vector products on ``D_h`` too (002's Algorithm 1). Mixed derivatives with
  respect to parameters the inner loop does not adapt (T-net transforms) use the same
  finite difference of their gradients. Everything else (the update rule's own Jacobian,
  the query loss) is differentiated exactly, so for one SGD step this is exactly HF-MAML
  and for ``T`` steps it is applied step by step backwards through the stored trajectory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.func import grad_and_value

from .errors import InputError
from .params import Params

__all__ = ["MODES", "HessianFree", "check_mode", "make_grad_op", "GradOp"]

MODES = ("second_order", "first_order", "hessian_free")

# (adapted, frozen, x, y) -> (grads wrt adapted, loss)
GradOp = Callable[[Params, Params, Tensor, Tensor], tuple[Params, Tensor]]
Objective = Callable[[Params, Params, Tensor, Tensor], Tensor]


def check_mode(mode: str, where: str = "metagrad") -> str:
    """Return ``mode`` or raise a one-line error listing the valid ones."""
    if mode not in MODES:
        raise InputError(f"{where}: unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class HessianFree:
    """Settings of the finite-difference Hessian-vector product of HF-MAML (002).

    ``delta``: a fixed step ``d``; or ``rho`` (the Hessian's Lipschitz constant) with ``alpha``
    (the inner step size), giving ``d = 1 / (6 rho alpha ||u||)`` per task (002, Theorem
    4.17). ``delta`` wins when both are given; with neither, ``delta = 1e-3``.
    """

    delta: Optional[float] = None
    rho: Optional[float] = None
    alpha: Optional[float] = None

    def __post_init__(self) -> None:
        if self.delta is not None and not self.delta > 0:
            raise InputError(f"HessianFree: delta must be positive, got {self.delta}")
        if self.rho is not None:
            if not self.rho > 0:
                raise InputError(f"HessianFree: rho must be positive, got {self.rho}")
            if self.alpha is None or not self.alpha > 0:
                raise InputError("HessianFree: rho needs the inner step size alpha > 0 "
                                 f"(got alpha={self.alpha}); or pass a fixed delta")

    @property
    def adaptive(self) -> bool:
        """Whether ``d`` depends on ``||u||`` (002's rule) rather than being fixed."""
        return self.delta is None and self.rho is not None

    def step(self, u_norm: Optional[Tensor]) -> Tensor | float:
        if self.delta is not None or self.rho is None:
            return 1e-3 if self.delta is None else self.delta
        # Guard u = 0 (nothing to propagate): any finite d then gives H u = 0.
        return 1.0 / (6.0 * self.rho * self.alpha * torch.clamp(u_norm, min=1e-12))  # type: ignore[operator]


def make_grad_op(objective: Objective, mode: str, hf: HessianFree | None = None,
                 hvp_data: tuple[Tensor, Tensor] | None = None, batched: bool = False) -> GradOp:
    """Build ``(adapted, frozen, x, y) -> (grad_adapted L, L)`` for a meta-gradient mode.

    ``objective(adapted, frozen, x, y)`` is the support loss of one task. ``batched=True``
    (``hessian_free`` only): ``adapted``, ``x``, ``y`` and ``hvp_data`` carry a leading task
    dimension and ``frozen`` is shared by the tasks.
    """
    check_mode(mode)
    if batched and mode != "hessian_free":
        raise InputError(f"make_grad_op: batched=True is for mode='hessian_free', not {mode!r}")
    gv = grad_and_value(objective)
    if mode == "second_order" and hvp_data is not None:
        # 002's Algorithm 1: the inner step on D_in, its Hessian on D_h. The value is grad L(w, D_in);
        # the derivative is that of grad L(w, D_h), i.e. the Hessian-vector products run on D_h.
        hx, hy = hvp_data

        def on_dh(adapted: Params, frozen: Params, x: Tensor, y: Tensor) -> tuple[Params, Tensor]:
            g, v = gv(adapted, frozen, x, y)
            gh = torch.func.grad(objective)(adapted, frozen, hx, hy)
            return {k: gh[k] + (g[k] - gh[k]).detach() for k in g}, v
        return on_dh
    if mode == "second_order":
        return gv
    if mode == "first_order":
        def first(adapted: Params, frozen: Params, x: Tensor, y: Tensor) -> tuple[Params, Tensor]:
            g, v = gv(adapted, frozen, x, y)
            return {k: t.detach() for k, t in g.items()}, v.detach()
        return first
    hf = hf or HessianFree()

    def hessian_free(adapted: Params, frozen: Params, x: Tensor, y: Tensor,
                     shared: bool = False) -> tuple[Params, Tensor]:
        # shared (batched only): ``adapted`` has no task dimension yet (the first inner step).
        hx, hy = (x, y) if hvp_data is None else hvp_data
        ak, fk = tuple(adapted), tuple(frozen)
        levels = (((True,) * 4 + (not shared,) * len(ak) + (False,) * len(fk)),) if batched else ()
        out = _FDGrad.apply(objective, hf, ak, fk, levels, x, y, hx, hy,
                            *[adapted[k] for k in ak], *[frozen[k] for k in fk])
        # The loss value is handed to the update rule as a constant in this mode.
        return dict(zip(ak, out[:-1])), out[-1].detach()
    return hessian_free


Levels = tuple[tuple[bool, ...], ...]
# Cotangent elements (all tasks) up to which the two finite-difference gradients run paired.
_PAIR_MAX = 1 << 17


def _batched(fn: Callable, levels: Levels, lead: int = 0) -> Callable:
    """``fn`` vmapped over the task dimensions of ``levels`` (outermost first); ``levels[i][j]``
    says whether tensor argument ``lead + j`` has a leading dimension at level ``i`` (the first
    ``lead`` arguments have one at every level)."""
    for mask in reversed(levels):
        fn = torch.func.vmap(fn, in_dims=(0,) * lead + tuple(0 if b else None for b in mask))
    return fn


class _FDGrad(torch.autograd.Function):
    """Forward: ``grad_w L(w, T)`` and ``L``. Backward: finite-difference ``H u`` (see module doc).

    Under ``vmap`` the custom ``vmap`` rule below re-applies the function to the whole batch,
    recording in ``levels`` which inputs carry a task dimension (parameters shared by all tasks
    do not, and are not expanded), so autograd records one node per inner step for all tasks
    and forward and backward each make one vmapped call. ``generate_vmap_rule`` instead
    traces forward and backward through functorch per step: measured 3.9x first-order on the
    sine workload (meta-batch 25, 5 steps) against about 2.5x this way.
    """

    @staticmethod
    def forward(objective: Objective, hf: HessianFree, ak: Sequence[str], fk: Sequence[str], levels: Levels,
                *tensors: Tensor) -> tuple[Tensor, ...]:
        def task(x: Tensor, y: Tensor, hx: Tensor, hy: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
            adapted, frozen = dict(zip(ak, flat[:len(ak)])), dict(zip(fk, flat[len(ak):]))
            g, v = grad_and_value(objective)(adapted, frozen, x, y)
            return (*[g[k] for k in ak], v)
        return _batched(task, levels)(*tensors)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        objective, hf, ak, fk, levels, *tensors = inputs
        ctx.objective, ctx.hf, ctx.ak, ctx.fk, ctx.levels = objective, hf, ak, fk, levels
        ctx.save_for_backward(*tensors)

    @staticmethod
    def backward(ctx, *cot: Tensor):  # type: ignore[override]
        tensors = ctx.saved_tensors
        ak, fk, objective, hf, levels = ctx.ak, ctx.fk, ctx.objective, ctx.hf, ctx.levels
        n = len(ak)

        # Paired (+d, -d) gradients while the cotangents are small: sine, meta-batch 25, 5 steps,
        # 2.7x first-order's time against 3.0x sequential; above _PAIR_MAX elements the sequential
        # form's lower peak memory wins (meta-batch 500: 34 MiB against 41 MiB).
        pair = sum(c.numel() for c in cot[:n]) <= _PAIR_MAX

        def shifted_by(sign: float, d: Tensor | float, u: Sequence[Tensor], flat: Sequence[Tensor]) -> Params:
            return {k: torch.add(wi, ui, alpha=sign * d) if isinstance(d, float)
                    else torch.addcmul(wi, d, ui, value=sign) for k, wi, ui in zip(ak, flat[:n], u)}

        def task(*args: Tensor) -> tuple[Tensor, ...]:
            u, (_, _, hx, hy, *flat) = args[:n], args[n:]
            frozen = dict(zip(fk, flat[n:]))
            d = hf.step(torch.sqrt(sum((ui * ui).sum() for ui in u)) if hf.adaptive else None)
            at = torch.func.grad(lambda a, f: objective(a, f, hx, hy), argnums=(0, 1))

            if pair:
                # Both gradients in one vmapped call over the sign (+d, -d): small ops are
                # dispatch-bound, so one call of twice the size costs far less than two.
                signed = torch.tensor([1.0, -1.0], dtype=flat[0].dtype, device=flat[0].device) * d
                shifted = {k: torch.addcmul(wi, signed.reshape(2, *([1] * wi.dim())), ui)
                           for k, wi, ui in zip(ak, flat[:n], u)}
                both_a, both_f = torch.func.vmap(at, in_dims=(0, None))(shifted, frozen)
                plus_a, minus_a = ({k: v[i] for k, v in both_a.items()} for i in (0, 1))
                plus_f, minus_f = ({k: v[i] for k, v in both_f.items()} for i in (0, 1))
            else:
                # One after the other, so that each graph and shifted copy of the weights is
                # freed before the next is built (large batches are memory-bound).
                plus_a, plus_f = at(shifted_by(1.0, d, u, flat), frozen)
                minus_a, minus_f = at(shifted_by(-1.0, d, u, flat), frozen)
            return (*[torch.sub(plus_a[k], minus_a[k]).div_(2 * d) for k in ak],
                    *[torch.sub(plus_f[k], minus_f[k]).div_(2 * d) for k in fk])

        # The loss value's cotangent (last) is ignored: the value is a constant in this mode.
        grads = list(_batched(task, levels, lead=n)(*cot[:n], *tensors))
        for j, g in enumerate(grads):
            # A parameter shared across the tasks of a level gets the sum of their gradients.
            for i in reversed(range(len(levels))):
                if not levels[i][4 + j]:
                    g = g.sum(i)
            grads[j] = g
        return (None, None, None, None, None, None, None, None, None, *grads)

    @staticmethod
    def vmap(info, in_dims, objective, hf, ak, fk, levels, *tensors):  # type: ignore[override]
        moved = [t if d is None else t.movedim(d, 0) for t, d in zip(tensors, in_dims[5:])]
        mask = tuple(d is not None for d in in_dims[5:])
        out = _FDGrad.apply(objective, hf, ak, fk, (mask, *levels), *moved)
        return out, (0,) * len(out)
