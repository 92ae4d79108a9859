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
  ``HessianFree(one_sided=True)`` (opt-in, not 002's eq. (9)) uses the forward difference
  ``(grad L(w + d u) - grad L(w)) / d`` instead, reusing the inner step's gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.func import grad_and_value

from .errors import InputError, check_positive
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

    ``one_sided=True`` (opt-in; *not* 002's eq. (9)) uses the forward difference
    ``H u ~ (grad L(w + d u) - grad L(w)) / d``, whose error is O(d) rather than O(d^2). Without a
    separate ``D_h`` and without parameters the rule leaves unchanged, ``grad L(w)`` is the gradient
    the inner step already computed, so each backward step evaluates one shifted gradient instead
    of two; otherwise ``grad L(w, D_h)`` is evaluated beside ``grad L(w + d u, D_h)``.
    """

    delta: Optional[float] = None
    rho: Optional[float] = None
    alpha: Optional[float] = None
    one_sided: bool = False

    def __post_init__(self) -> None:
        check_positive("HessianFree", "delta", self.delta, optional=True, error=InputError)
        if self.rho is not None:
            check_positive("HessianFree", "rho", self.rho, error=InputError)
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
        # one-sided: reuse the forward's grad L(w) when it is on the same data and covers every input
        reuse = hf.one_sided and hvp_data is None and not fk
        out = _FDGrad.apply(objective, hf, reuse, ak, fk, levels, x, y, hx, hy,
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


class _Loss:
    """``(x, y, *adapted, *frozen) -> objective(dict(adapted), dict(frozen), x, y)``: the objective on
    flat tensors (what ``vmap`` maps over)."""

    def __init__(self, objective: Objective, ak: Sequence[str], fk: Sequence[str]) -> None:
        self.objective, self.ak, self.fk, self.n = objective, ak, fk, len(ak)

    def __call__(self, x: Tensor, y: Tensor, *ps: Tensor) -> Tensor:
        return self.objective(dict(zip(self.ak, ps[:self.n])), dict(zip(self.fk, ps[self.n:])), x, y)


class _FDGrad(torch.autograd.Function):
    """Forward: ``grad_w L(w, T)`` and ``L``. Backward: finite-difference ``H u`` (see module doc).

    Under ``vmap`` the custom ``vmap`` rule below re-applies the function to the whole batch,
    recording in ``levels`` which inputs carry a task dimension (parameters shared by all tasks
    do not), so autograd records one node per inner step for all tasks. Inside, no functorch
    ``grad`` transform runs: the objective is vmapped over the tasks (forward only) and
    differentiated by ordinary autograd with respect to per-task leaves, and the backward pass
    evaluates both shifted gradients ``grad L(w +- d u)`` as one vmapped forward over twice the
    tasks (the signs stacked on the outermost task dimension) and one ``autograd.grad`` of
    ``sum_s s L(w + s d u) / (2 d)`` with respect to the unshifted ``w`` (the difference comes out
    of the cotangent weights; autograd sums over the signs, over the tasks sharing a parameter and,
    for the frozen parameters' mixed term, over the tasks). Cost on the sine workload (meta-batch
    25, 5 steps): the default central difference evaluates two gradients per inner step in the
    backward pass, against one for ``one_sided`` (reusing the forward's ``grad L(w)``), on top of
    the 5 + 1 gradient evaluations first order makes; ``benchmarks/bench_sine.py --one-sided``
    measures all three side by side (README, "002's convergence claims, measured").
    """

    @staticmethod
    def forward(objective: Objective, hf: HessianFree, reuse: bool, ak: Sequence[str], fk: Sequence[str],
                levels: Levels, *tensors: Tensor) -> tuple[Tensor, ...]:
        n = len(ak)
        x, y, _, _, *flat = tensors
        sizes = x.shape[:len(levels)]

        with torch.enable_grad():
            leaves = [_expand_levels(t.detach(), [m[4 + j] for m in levels], sizes).requires_grad_()
                      for j, t in enumerate(flat[:n])]
            mask = tuple((True, True) + (True,) * n + m[4 + n:] for m in levels)
            values = _batched(_Loss(objective, ak, fk), mask)(x, y, *leaves, *[t.detach() for t in flat[n:]])
            grads = torch.autograd.grad(values.sum(), leaves)
        return (*grads, values.detach())

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        objective, hf, reuse, ak, fk, levels, *tensors = inputs
        ctx.objective, ctx.hf, ctx.reuse, ctx.ak, ctx.fk, ctx.levels = objective, hf, reuse, ak, fk, levels
        ctx.save_for_backward(*tensors, *(output[:-1] if reuse else ()))

    @staticmethod
    def backward(ctx, *cot: Tensor):  # type: ignore[override]
        ak, fk, objective, hf, levels = ctx.ak, ctx.fk, ctx.objective, ctx.hf, ctx.levels
        n = len(ak)
        _, _, hx, hy, *flat = ctx.saved_tensors
        g0 = flat[n + len(fk):]           # the forward's grad L(w) (one-sided reuse), at every level
        flat = flat[:n + len(fk)]
        u = cot[:n]                      # each with a dim at every level
        single = not levels              # one task (the loop path): run it as a batch of one
        if single:
            hx, hy, u = hx.unsqueeze(0), hy.unsqueeze(0), [c.unsqueeze(0) for c in u]
            flat = [t.unsqueeze(0) for t in flat[:n]] + list(flat[n:])
            g0 = [t.unsqueeze(0) for t in g0]
            levels = ((True,) * (4 + n) + (False,) * len(fk),)
        L = len(levels)
        sizes = u[0].shape[:L]
        if hf.adaptive:
            d: Tensor | float = hf.step(torch.sqrt(sum(ui.flatten(L).pow(2).sum(-1) for ui in u)))
        else:
            d = hf.step(None)
        mask = tuple((True, True) + (True,) * n + m[4 + n:] for m in levels)
        task_losses = _batched(_Loss(objective, ak, fk), mask)
        # Each group evaluates sum_s c_s L(w + a_s d u) / d over its shifts a_s and weights c_s as one
        # vmapped forward (the shifts stacked on the outermost task dimension: one forward of twice
        # the tasks costs far less than two, as these small ops are dispatch-bound) and one
        # autograd.grad, whose gradient is the finite difference. Above _PAIR_MAX cotangent elements
        # one shift after the other, so that each graph is freed before the next is built.
        pair = sum(c.numel() for c in u) <= _PAIR_MAX
        if not hf.one_sided:
            plan = ((1.0, 0.5), (-1.0, -0.5))       # 002 eq. (9): central difference
        elif ctx.reuse:
            plan = ((1.0, 1.0),)                    # minus grad L(w) / d from the forward, below
        else:
            plan = ((0.0, -1.0), (1.0, 1.0))
        groups = [plan] if pair else [(p,) for p in plan]
        # Leaves: each parameter as saved, with size-1 dims at the levels it is shared over, so that
        # w + a d u broadcasts and autograd sums over the shifts and over the tasks sharing it.
        leaves = [w.detach().requires_grad_() for w in flat[:n]]
        fl = [f.detach().requires_grad_() for f in flat[n:]]
        batched0 = levels[0][4 + n:]   # which frozen tensors have a dim at level 0
        out: list[Optional[Tensor]] = [None] * (n + len(fl))
        for group in groups:
            k = len(group)
            shifts = torch.tensor([a for a, _ in group], dtype=u[0].dtype, device=u[0].device)
            weights = torch.tensor([c for _, c in group], dtype=u[0].dtype, device=u[0].device).view(k, *[1] * L)
            if isinstance(d, Tensor):     # per task: [k, *sizes]
                shift, scale = shifts.view(k, *[1] * L) * d, weights / d
            else:
                shift, scale = shifts * d, (weights / d).expand(k, *sizes)
            views: dict[int, Tensor] = {}   # shift with trailing size-1 dims, by rank
            with torch.enable_grad():
                ws = []
                for j, (w, uj) in enumerate(zip(leaves, u)):
                    for i in range(L):
                        if not levels[i][4 + j]:
                            w = w.unsqueeze(i)
                    r = uj.dim() + 1
                    if r not in views:
                        views[r] = shift.view(*shift.shape, *[1] * (r - shift.dim()))
                    ws.append(torch.addcmul(w, views[r], uj).flatten(0, 1))
                fcat = [torch.cat([f] * k) if b0 and k > 1 else f for f, b0 in zip(fl, batched0)]
                hxk, hyk = (torch.cat([t] * k) if k > 1 else t for t in (hx, hy))
                values = task_losses(hxk, hyk, *ws, *fcat)
                gs = torch.autograd.grad(values.view(k, *sizes), leaves + fl, grad_outputs=scale,
                                         allow_unused=True)
            for j, g in enumerate(gs):
                if g is None:
                    g = torch.zeros_like(leaves[j] if j < n else fl[j - n])
                out[j] = g if out[j] is None else out[j] + g
        for j, g in enumerate(g0):       # one-sided reuse: - grad L(w) / d, summed where w is shared
            g = g * (1.0 / d if isinstance(d, float) else (1.0 / d).view(*sizes, *[1] * (g.dim() - L)))
            for i in reversed(range(L)):
                if not levels[i][4 + j]:
                    g = g.sum(i)
            out[j] = out[j] - g.reshape(out[j].shape)  # type: ignore[operator]
        if single:
            out[:n] = [g.squeeze(0) for g in out[:n]]  # type: ignore[union-attr]
        # The loss value's cotangent (last) is ignored: the value is a constant in this mode.
        return (None, None, None, None, None, None, None, None, None, None, *out)

    @staticmethod
    def vmap(info, in_dims, objective, hf, reuse, ak, fk, levels, *tensors):  # type: ignore[override]
        moved = [t if d is None else t.movedim(d, 0) for t, d in zip(tensors, in_dims[6:])]
        mask = tuple(d is not None for d in in_dims[6:])
        out = _FDGrad.apply(objective, hf, reuse, ak, fk, (mask, *levels), *moved)
        return out, (0,) * len(out)
