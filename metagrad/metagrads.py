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
  ``d = 1 / (6 rho a ||u||)`` (002, Theorem 4.17), computed per task. Mixed derivatives with
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

from .params import Params

__all__ = ["MODES", "HessianFree", "check_mode", "make_grad_op", "GradOp"]

MODES = ("second_order", "first_order", "hessian_free")

# (adapted, frozen, x, y) -> (grads wrt adapted, loss)
GradOp = Callable[[Params, Params, Tensor, Tensor], tuple[Params, Tensor]]
Objective = Callable[[Params, Params, Tensor, Tensor], Tensor]


def check_mode(mode: str, where: str = "metagrad") -> str:
    """Return ``mode`` or raise a one-line error listing the valid ones."""
    if mode not in MODES:
        raise ValueError(f"{where}: unknown mode {mode!r}; choose one of {', '.join(MODES)}")
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
            raise ValueError(f"HessianFree: delta must be positive, got {self.delta}")
        if self.rho is not None:
            if not self.rho > 0:
                raise ValueError(f"HessianFree: rho must be positive, got {self.rho}")
            if self.alpha is None or not self.alpha > 0:
                raise ValueError("HessianFree: rho needs the inner step size alpha > 0 "
                                 f"(got alpha={self.alpha}); or pass a fixed delta")

    def step(self, u_norm: Tensor) -> Tensor | float:
        if self.delta is not None or self.rho is None:
            return 1e-3 if self.delta is None else self.delta
        # Guard u = 0 (nothing to propagate): any finite d then gives H u = 0.
        return 1.0 / (6.0 * self.rho * self.alpha * torch.clamp(u_norm, min=1e-12))  # type: ignore[operator]


def make_grad_op(objective: Objective, mode: str, hf: HessianFree | None = None,
                 hvp_data: tuple[Tensor, Tensor] | None = None) -> GradOp:
    """Build ``(adapted, frozen, x, y) -> (grad_adapted L, L)`` for a meta-gradient mode.

    ``objective(adapted, frozen, x, y)`` is the support loss of one task.
    """
    check_mode(mode)
    gv = grad_and_value(objective)
    if mode == "second_order":
        return gv
    if mode == "first_order":
        def first(adapted: Params, frozen: Params, x: Tensor, y: Tensor) -> tuple[Params, Tensor]:
            g, v = gv(adapted, frozen, x, y)
            return {k: t.detach() for k, t in g.items()}, v.detach()
        return first
    hf = hf or HessianFree()

    def hessian_free(adapted: Params, frozen: Params, x: Tensor, y: Tensor) -> tuple[Params, Tensor]:
        hx, hy = (x, y) if hvp_data is None else hvp_data
        ak, fk = tuple(adapted), tuple(frozen)
        out = _FDGrad.apply(objective, hf, ak, fk, x, y, hx, hy,
                            *[adapted[k] for k in ak], *[frozen[k] for k in fk])
        # The loss value is handed to the update rule as a constant in this mode.
        return dict(zip(ak, out[:-1])), out[-1].detach()
    return hessian_free


class _FDGrad(torch.autograd.Function):
    """Forward: ``grad_w L(w, T)`` and ``L``. Backward: finite-difference ``H u`` (see module doc)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(objective: Objective, hf: HessianFree, ak: Sequence[str], fk: Sequence[str],
                x: Tensor, y: Tensor, hx: Tensor, hy: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        adapted = dict(zip(ak, flat[:len(ak)]))
        frozen = dict(zip(fk, flat[len(ak):]))
        g, v = grad_and_value(objective)(adapted, frozen, x, y)
        return (*[g[k] for k in ak], v)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        objective, hf, ak, fk, x, y, hx, hy, *flat = inputs
        ctx.objective, ctx.hf, ctx.ak, ctx.fk = objective, hf, ak, fk
        ctx.save_for_backward(hx, hy, *flat)

    @staticmethod
    def backward(ctx, *cot: Tensor):  # type: ignore[override]
        hx, hy, *flat = ctx.saved_tensors
        ak, fk = ctx.ak, ctx.fk
        u = cot[:len(ak)]  # the loss value's cotangent is ignored: it is a constant here
        w = flat[:len(ak)]
        frozen = dict(zip(fk, flat[len(ak):]))
        u_norm = torch.sqrt(sum((ui * ui).sum() for ui in u))
        d = ctx.hf.step(u_norm)
        both = torch.func.grad(lambda a, f: ctx.objective(a, f, hx, hy), argnums=(0, 1))
        # Both gradients of the central difference in one vmapped call over (w + d u, w - d u).
        pm = {k: torch.stack([wi + d * ui, wi - d * ui]) for k, wi, ui in zip(ak, w, u)}
        ga, gf = torch.func.vmap(both, in_dims=(0, None))(pm, frozen)
        grads_w = [(ga[k][0] - ga[k][1]) / (2 * d) for k in ak]
        grads_f = [(gf[k][0] - gf[k][1]) / (2 * d) for k in fk]
        return (None, None, None, None, None, None, None, None, *grads_w, *grads_f)


def adaptive_meta_step_size(algo: "torch.nn.Module", batch, L: float, rho: float, c: float = 1.0) -> float:
    """002's adaptive meta step size, eq. (16)-(17): ``beta = c / (4 L + 2 rho a mean_j ||grad f_j(w, D_beta)||)``.

    ``batch`` is a separate batch of ``B'`` tasks; each task's gradient is taken on its support
    set at the current meta-parameters ``w`` (no adaptation). ``a`` is the learner's nominal step
    size, ``L`` the gradient's and ``rho`` the Hessian's Lipschitz constants (002 Assumptions
    4.3-4.4); 002's theorems use ``c = 1/12`` (MAML), ``1/18`` (FO-MAML), ``1/25`` (HF-MAML).
    """
    from torch.func import functional_call, vmap

    alpha = algo.learner.nominal_lr
    if alpha is None:
        raise ValueError(f"adaptive_meta_step_size: learner {algo.learner.name!r} has no nominal step size a")
    for name, v in (("L", L), ("rho", rho), ("c", c)):
        if not v > 0:
            raise ValueError(f"adaptive_meta_step_size: {name} must be positive, got {v}")
    params = {k: v.detach() for k, v in algo.params().items()}

    def grad_norm(x: Tensor, y: Tensor) -> Tensor:
        g = torch.func.grad(lambda p: algo.loss(functional_call(algo.model, p, (x,)), y))(params)
        return torch.sqrt(sum((t * t).sum() for t in g.values()))

    mean_norm = vmap(grad_norm)(batch.support_x, batch.support_y).mean()
    return float(c / (4 * L + 2 * rho * alpha * mean_norm))
