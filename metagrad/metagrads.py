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
            # g is a constant here, so it is computed from detached inputs: the outer graph then
            # never records the inner forward and backward (measured a few percent faster on
            # conv4 Omniglot, and less memory) instead of recording them and dropping them.
            g, v = gv({k: t.detach() for k, t in adapted.items()}, {k: t.detach() for k, t in frozen.items()}, x, y)
            return g, v
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


def _expand_levels(t: Tensor, has: Sequence[bool], sizes: Sequence[int]) -> Tensor:
    """``t`` (leading dims at the levels where ``has``) with a dim at every level (a broadcast view)."""
    for i, (h, n) in enumerate(zip(has, sizes)):
        if not h:
            t = t.unsqueeze(i)
            t = t.expand(*t.shape[:i], n, *t.shape[i + 1:])
    return t


class _FDGrad(torch.autograd.Function):
    """Forward: ``grad_w L(w, T)`` and ``L``. Backward: finite-difference ``H u`` (see module doc).

    Under ``vmap`` the custom ``vmap`` rule below re-applies the function to the whole batch,
    recording in ``levels`` which inputs carry a task dimension (parameters shared by all tasks
    do not), so autograd records one node per inner step for all tasks. Inside, no functorch
    ``grad`` transform runs: the objective is vmapped over the tasks (forward only) and
    differentiated by ordinary autograd with respect to per-task leaves, and the backward pass
    evaluates both shifted gradients ``grad L(w +- d u)`` as one vmapped forward over twice the
    tasks (the signs stacked on the outermost task dimension) and one ``autograd.grad`` of
    ``sum_s s L(w + s d u) / (2 d)`` (the difference comes out of the weights, and the frozen
    parameters' mixed term is summed over the tasks by autograd itself). Measured on the sine
    workload (meta-batch 25, 5 steps, one thread, interleaved medians): HF 2.65x first order with
    functorch's ``grad`` under ``vmap`` inside this Function (about 2.8 ms of wrapper overhead per
    inner step), 1.84x this way; the floor by counting is about 11 gradient evaluations against 6.
    """

    @staticmethod
    def forward(objective: Objective, hf: HessianFree, ak: Sequence[str], fk: Sequence[str], levels: Levels,
                *tensors: Tensor) -> tuple[Tensor, ...]:
        n = len(ak)
        x, y, _, _, *flat = tensors
        sizes = x.shape[:len(levels)]

        def loss(x: Tensor, y: Tensor, *ps: Tensor) -> Tensor:
            return objective(dict(zip(ak, ps[:n])), dict(zip(fk, ps[n:])), x, y)

        with torch.enable_grad():
            leaves = [_expand_levels(t.detach(), [m[4 + j] for m in levels], sizes).requires_grad_()
                      for j, t in enumerate(flat[:n])]
            mask = [(True, True) + (True,) * n + m[4 + n:] for m in levels]
            values = _batched(loss, tuple(mask))(x, y, *leaves, *[t.detach() for t in flat[n:]])
            grads = torch.autograd.grad(values.sum(), leaves)
        return (*grads, values.detach())

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        objective, hf, ak, fk, levels, *tensors = inputs
        ctx.objective, ctx.hf, ctx.ak, ctx.fk, ctx.levels = objective, hf, ak, fk, levels
        ctx.save_for_backward(*tensors)

    @staticmethod
    def backward(ctx, *cot: Tensor):  # type: ignore[override]
        _, _, hx, hy, *flat = ctx.saved_tensors
        ak, fk, objective, hf, levels = ctx.ak, ctx.fk, ctx.objective, ctx.hf, ctx.levels
        n = len(ak)
        u = cot[:n]                      # each with a dim at every level
        single = not levels              # one task (the loop path): run it as a batch of one
        if single:
            hx, hy, u = hx.unsqueeze(0), hy.unsqueeze(0), [c.unsqueeze(0) for c in u]
            flat = [t.unsqueeze(0) for t in flat[:n]] + list(flat[n:])
            levels = ((True,) * (4 + n) + (False,) * len(fk),)
        L = len(levels)
        sizes = u[0].shape[:L]
        dtype, device = u[0].dtype, u[0].device
        if hf.adaptive:
            d: Tensor | float = hf.step(torch.sqrt(sum(ui.flatten(L).pow(2).sum(-1) for ui in u)))
        else:
            d = hf.step(None)
        dw = d.reshape(*sizes, 1) if isinstance(d, Tensor) else d
        frozen = [t.detach() for t in flat[n:]]
        mask = [(True, True) + (True,) * n + m[4 + n:] for m in levels]

        def loss(x: Tensor, y: Tensor, *ps: Tensor) -> Tensor:
            return objective(dict(zip(ak, ps[:n])), dict(zip(fk, ps[n:])), x, y)
        task_losses = _batched(loss, tuple(mask))

        # The signs are stacked along the outermost task dimension (level 0): one vmapped forward of
        # twice the tasks costs far less than two, as these small ops are dispatch-bound; above
        # _PAIR_MAX cotangent elements one sign after the other, so that each graph is freed before
        # the next is built (large batches are memory-bound).
        pair = sum(c.numel() for c in u) <= _PAIR_MAX
        groups = [(1.0, -1.0)] if pair else [(1.0,), (-1.0,)]
        steps = [(uj.flatten(L) * dw).reshape(uj.shape) if isinstance(d, Tensor) else uj * d for uj in u]
        base = [_expand_levels(w.detach(), [m[4 + j] for m in levels], sizes) for j, w in enumerate(flat[:n])]
        batched0 = levels[0][4 + n:]   # which frozen tensors have a dim at level 0
        hu: list[Optional[Tensor]] = [None] * n
        hf_frozen: list[Optional[Tensor]] = [None] * len(frozen)
        for group in groups:
            k = len(group)
            scale = torch.cat([torch.full(sizes[:1], sg, dtype=dtype, device=device) for sg in group])
            scale = scale.reshape(-1, *[1] * (L - 1)) / (2 * (d if isinstance(d, float) else d.repeat(k, *[1] * (L - 1))))
            with torch.enable_grad():
                ws = [torch.cat([torch.add(w, st, alpha=sg) for sg in group]).requires_grad_()
                      for w, st in zip(base, steps)]
                fl = [f.detach().requires_grad_() for f in frozen]
                fcat = [torch.cat([f] * k) if b0 and k > 1 else f for f, b0 in zip(fl, batched0)]
                hxk, hyk = (torch.cat([t] * k) if k > 1 else t for t in (hx, hy))
                # sum over signs and tasks of s L(w + s d u) / (2 d): its gradient is the central difference
                total = (task_losses(hxk, hyk, *ws, *fcat) * scale).sum()
                gs = torch.autograd.grad(total, ws + fl, allow_unused=True)
            for j in range(n):
                g = gs[j].reshape(k, *sizes, *gs[j].shape[L:]).sum(0)
                hu[j] = g if hu[j] is None else hu[j] + g
            for j in range(len(frozen)):
                g = gs[n + j] if gs[n + j] is not None else torch.zeros_like(frozen[j])
                hf_frozen[j] = g if hf_frozen[j] is None else hf_frozen[j] + g
        grads = []
        for j, g in enumerate(hu):
            # A parameter shared across the tasks of a level gets the sum of their gradients.
            for i in reversed(range(L)):
                if not levels[i][4 + j]:
                    g = g.sum(i)
            grads.append(g)
        if single:
            grads = [g.squeeze(0) for g in grads]
        # The loss value's cotangent (last) is ignored: the value is a constant in this mode.
        return (None, None, None, None, None, None, None, None, None, *grads, *hf_frozen)

    @staticmethod
    def vmap(info, in_dims, objective, hf, ak, fk, levels, *tensors):  # type: ignore[override]
        moved = [t if d is None else t.movedim(d, 0) for t, d in zip(tensors, in_dims[5:])]
        mask = tuple(d is not None for d in in_dims[5:])
        out = _FDGrad.apply(objective, hf, ak, fk, (mask, *levels), *moved)
        return out, (0,) * len(out)
