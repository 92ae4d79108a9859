"""``Population``: ``P`` independent meta-learning runs trained as one vmapped computation.

Small meta-learning problems (004's sine tables: a 1-40-40-1 MLP, meta-batches of 1 to 4 tasks)
spend most of a meta-iteration on per-operation overhead, not arithmetic, so the seeds of one
experiment cost almost as much together as one alone once they run as one batch. ``Population``
stacks the meta-parameters of ``P`` ``MAML`` objects of the same structure on a new leading
dimension and computes every member's meta-loss in one call::

    F_p(theta_p, meta_p) = 1/B sum_i L_query_{p,i}( adapt(theta_p, meta_p; support_{p,i}) ),
    losses = vmap(F)(theta, meta, batches)                     # [P], one per member

``losses.sum().backward()`` leaves in each member's slice the gradient of its own loss only
(the members share no parameters), and element-wise optimisers (SGD, Adam: Kingma & Ba 2015)
then update every member exactly as they would one run on its own. Only norm clipping couples
the elements of a member; ``clip_grad_norm_`` does it per member. ``member(p)`` copies a
member's state into a standalone ``MAML`` for evaluation or saving.

``task_clip=c`` clamps each task's own meta-gradient of the initialisation to ``[-c, c]`` before
the meta-batch mean (the thesis's ``turtle.py``, 004: clamp per task, then accumulate)::

    grad theta_p = 1/B sum_i clamp(dL_{p,i}/dtheta_p, -c, c)
"""
from __future__ import annotations

import copy
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import vmap

from .errors import InputError, InputIndexError, InputTypeError
from .algorithm import MAML
from .batch import TaskBatch

__all__ = ["Population"]


class _ClampGrad(torch.autograd.Function):
    """Identity forward; backward clamps the incoming gradient to ``[-c, c]`` element-wise."""

    generate_vmap_rule = True   # element-wise, so vmap's generated rule is exact

    @staticmethod
    def forward(x: Tensor, c: float) -> Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:   # type: ignore[no-untyped-def]
        ctx.c = inputs[1]

    @staticmethod
    def backward(ctx, g: Tensor):   # type: ignore[no-untyped-def]
        return g.clamp(-ctx.c, ctx.c), None


class Population(nn.Module):
    """Meta-parameters of ``len(members)`` ``MAML`` runs stacked on a leading dimension.

    Example (5 seeds of so-MAML on sine, each with its own task stream)::

        pop = Population([MAML(make_model(seed), inner_steps=5) for seed in range(5)])
        opt = torch.optim.Adam(pop.parameters(), lr=1e-3)
        losses = pop.meta_losses(TaskBatch.cat([dist.sample(1, g) for g in gens]))
        opt.zero_grad(); losses.sum().backward(); opt.step()

    Args:
        members: ``MAML`` objects with the same model structure, learner and settings (their
            initial values may differ); ``hessian_free`` is not supported (its finite-difference
            op is a custom autograd function, which would be wrapped once per member).
        compile: ``torch.compile`` the population's meta-loss (pays off for overhead-bound
            rules; about a minute to compile).
        compile_curves: ``torch.compile`` ``adaptation_curves`` (evaluation without gradients is
            dominated by element-wise ops that inductor fuses: measured 2.5x-4x faster for 5
            members of so-MAML, so-TURTLE and the LSTM on 004's sine setting; about a minute to
            compile per task-chunk shape).
        task_clip: clamp every task's meta-gradient of the initialisation (the ``model.``
            parameters) to ``[-task_clip, task_clip]`` before the meta-batch mean; ``None``: no clamp.
    """

    def __init__(self, members: Sequence[MAML], *, compile: bool = False, compile_curves: bool = False,
                 task_clip: Optional[float] = None) -> None:
        super().__init__()
        if len(members) == 0:
            raise InputError("Population: needs at least one member, got an empty sequence")
        bad = next((m for m in members if not isinstance(m, MAML)), None)
        if bad is not None:
            raise InputTypeError(f"Population: members must be mg.MAML, e.g. [mg.MAML(make_model(seed)) for seed in "
                                 f"seeds]; got {type(bad).__name__}")
        first = members[0]
        if first.mode == "hessian_free":
            raise InputError("Population: mode='hessian_free' is not supported; use 'second_order' or 'first_order'")
        names = [n for n, _ in first.named_parameters()]
        for i, m in enumerate(members[1:], start=1):
            other = [n for n, _ in m.named_parameters()]
            if other != names or m.mode != first.mode or m.inner_steps != first.inner_steps \
                    or repr(m.learner) != repr(first.learner):
                raise InputError(f"Population: member {i} differs from member 0 in its parameters "
                                 f"or settings; all members must be built the same way")
        # The template runs the pure per-task functions; its own parameters are never used.
        # Kept out of the module tree, so that ``parameters()`` is exactly the stacked tensors.
        self.__dict__["template"] = copy.deepcopy(first)
        self.names = names
        if task_clip is not None and not task_clip > 0:
            raise InputError(f"Population: task_clip must be positive or None, got {task_clip!r}")
        self.compile, self.compile_curves, self.task_clip = compile, compile_curves, task_clip
        self._fn: Optional[Callable[..., Tensor]] = None
        self._curves_fn: Optional[Callable[..., Tensor]] = None
        self.stacked = nn.ParameterList(
            nn.Parameter(torch.stack([dict(m.named_parameters())[n].detach() for m in members]).clone())
            for n in names)

    @property
    def size(self) -> int:
        """The number of members ``P``."""
        return self.stacked[0].shape[0]

    def _split(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return MAML.split_named(dict(zip(self.names, self.stacked)))

    def meta_losses(self, batch: TaskBatch) -> Tensor:
        """Each member's meta-loss on its own tasks: ``batch`` holds ``P * B`` tasks, member
        ``p``'s are ``p * B .. (p + 1) * B - 1`` (``TaskBatch.cat`` of the members' batches).
        Returns ``[P]``."""
        P = self.size
        if batch.n_tasks % P:
            raise InputError(f"Population.meta_losses: {batch.n_tasks} tasks do not split evenly "
                             f"over {P} members; give each member the same number of tasks")
        self.template.check_batch(batch, "Population.meta_losses")
        B = batch.n_tasks // P
        args = [a.reshape(P, B, *a.shape[1:]) for a in
                (batch.support_x, batch.support_y, batch.query_x, batch.query_y)]
        params, meta = self._split()
        if self._fn is None:
            algo, c = self.template, self.task_clip

            def member(p: dict[str, Tensor], m: dict[str, Tensor], sx: Tensor, sy: Tensor, qx: Tensor,
                       qy: Tensor) -> Tensor:
                if c is None:
                    return algo.vmapped_losses(p, m, sx, sy, qx, qy, None, None).mean()
                # one copy of theta per task, so that each task's gradient can be clamped on its own;
                # it arrives scaled by 1/B (the mean), hence the bound c/B
                n = sx.shape[0]
                pb = {k: _ClampGrad.apply(v.expand(n, *v.shape), c / n) for k, v in p.items()}
                return algo.vmapped_losses(pb, m, sx, sy, qx, qy, None, None, batched_params=True).mean()
            fn = vmap(member, randomness="different")
            self._fn = torch.compile(fn) if self.compile else fn
        return self._fn(params, meta, *args)

    @torch.no_grad()
    def adaptation_curves(self, batch: TaskBatch, steps: Optional[int] = None) -> Tensor:
        """Every member's ``MAML.adaptation_curve`` on the same tasks, in one vmapped call:
        ``[P, B, steps + 1]`` (query metric after ``0..steps`` inner steps)."""
        algo = self.template
        algo.check_batch(batch, "Population.adaptation_curves")
        steps = algo.inner_steps if steps is None else steps
        params, meta = self._split()
        params = {k: v.detach() for k, v in params.items()}
        meta = {k: v.detach() for k, v in meta.items()}
        if self._curves_fn is None:
            def curves(p: dict[str, Tensor], m: dict[str, Tensor], sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor,
                       steps: int) -> Tensor:
                b = TaskBatch(sx, sy, qx, qy)
                return vmap(lambda pp, mm: algo.curves(pp, mm, b, steps), randomness="different")(p, m)
            self._curves_fn = torch.compile(curves) if self.compile_curves else curves
        return self._curves_fn(params, meta, batch.support_x, batch.support_y, batch.query_x, batch.query_y, steps)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        """Scale each member's gradient to global norm at most ``max_norm`` (as
        ``torch.nn.utils.clip_grad_norm_`` would on that member alone); returns the ``[P]`` norms."""
        grads = [p.grad for p in self.stacked if p.grad is not None]
        if not grads:
            return torch.zeros(self.size)
        norms = torch.stack([g.reshape(self.size, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
        return norms

    @torch.no_grad()
    def member(self, p: int) -> MAML:
        """A standalone ``MAML`` holding member ``p``'s current meta-parameters (a copy)."""
        if not 0 <= p < self.size:
            raise InputIndexError(f"Population.member: index {p} out of range for {self.size} members")
        algo = copy.deepcopy(self.template)
        for v, s in zip(algo.parameters(), self.stacked):
            v.copy_(s[p])
        return algo

    def member_state(self, p: int) -> dict[str, Tensor]:
        """Member ``p``'s meta-parameters as a detached ``{name: tensor}`` copy (for best-state keeping)."""
        return {n: s[p].detach().clone() for n, s in zip(self.names, self.stacked)}

    @torch.no_grad()
    def load_member_state(self, p: int, state: dict[str, Tensor]) -> None:
        """Write ``state`` (from ``member_state``) into member ``p``."""
        for n, s in zip(self.names, self.stacked):
            s[p].copy_(state[n])

    @torch.no_grad()
    def step_skipping(self, opt: torch.optim.Optimizer, skip: Sequence[int]) -> None:
        """``opt.step()`` for every member except those in ``skip``, which keep their
        meta-parameters and their rows of the optimiser state (Adam's moments) as they were:
        the members' own "skip this update", as a mixed-precision ``GradScaler`` skips a step
        whose gradient is not finite.

        The optimiser's per-tensor step counter is shared by the members and still advances,
        so a skipped member's next Adam step has a slightly different bias correction than it
        would have alone. ``opt`` must hold exactly this population's parameters.
        """
        skip = sorted(set(int(p) for p in skip))
        if any(not 0 <= p < self.size for p in skip):
            raise InputIndexError(f"Population.step_skipping: members {skip} out of range for {self.size} members")
        if not skip:
            opt.step()
            return
        rows = torch.tensor(skip)
        saved = []
        for s in self.stacked:
            if s.grad is not None:
                s.grad[rows] = 0.0        # a NaN row must not reach a fused/foreach kernel's shared math
            state = {k: v[rows].clone() for k, v in opt.state.get(s, {}).items()
                     if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == self.size}
            saved.append((s[rows].clone(), state, s in opt.state))
        opt.step()
        for s, (value, state, had_state) in zip(self.stacked, saved):
            s[rows] = value
            for k, v in opt.state.get(s, {}).items():
                if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == self.size:
                    # no state before this step: the rows stay as the optimiser initialises them (zeros)
                    v[rows] = state[k] if had_state else 0.0
