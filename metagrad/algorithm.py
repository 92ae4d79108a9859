"""``MAML``: one object for every gradient-based meta-learner built on ``adapt``.

The meta-objective (Finn et al. 2017; 002 eq. (2)) is, over a batch of ``B`` tasks,

    F(theta, meta) = 1/B sum_i L_query_i( adapt(theta, meta; support_i) ),

where ``adapt`` runs ``inner_steps`` updates of the ``learner`` (plain SGD: MAML; per-parameter
rates: Meta-SGD; a learned network: TURTLE; ...). ``meta_loss(batch)`` returns ``F`` as an
ordinary autograd scalar, so ``loss.backward()`` leaves in ``model.parameters()`` and in the
learner's meta-parameters the meta-gradient of the chosen ``mode`` (``second_order``,
``first_order``, ``hessian_free``). The per-task computation is vmapped over the task
dimension (``torch.func.vmap``); a Python loop over tasks is the fallback (``vectorize=False``),
and the default ``"auto"`` loops only for a single task, where it is measured faster.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.func import vmap

from .errors import InputError, InputTypeError, check_finite, check_int, check_positive
from .batch import TaskBatch
from .exact import exact_call
from .inner import Loss, adapt, adapt_tasks
from .learners.base import Learner
from .learners.combine import chain, clip
from .learners.sgd import SGD
from .losses import get_loss, metric_for
from .metagrads import HessianFree, check_mode
from .params import Params

__all__ = ["MAML"]


def _safe(key: str) -> str:
    # nn.ParameterDict forbids "." in names; meta keys mirror parameter names like "0.weight".
    return key.replace(".", "|")


def _unsafe(key: str) -> str:
    return key.replace("|", ".")


class MAML(nn.Module):
    """Gradient-based meta-learning of ``model`` with an inner-loop ``learner``.

    Example::

        model = mg.models.MLP([1, 40, 40, 1])
        algo = mg.MAML(model, inner_lr=0.01, inner_steps=5, mode="second_order")
        opt = torch.optim.Adam(algo.parameters(), lr=1e-3)
        loss = algo.meta_loss(batch); opt.zero_grad(); loss.backward(); opt.step()
        fast = algo.adapt(support_x, support_y, steps=10); pred = algo.predict(fast, query_x)

    Args:
        model: any ``nn.Module``, run with ``functional_call`` on explicit parameters, inside
            ``metagrad.exact`` (norms, attention and recurrent kernels as exact elementary ops,
            so second-order meta-gradients are exact under ``vmap``; see ``exact_call``).
        inner_lr: step size ``a`` of the default SGD learner.
        inner_steps: number of inner updates during meta-training (``>= 0``).
        mode: ``second_order`` | ``first_order`` | ``hessian_free``.
        learner: an update rule (default ``SGD(inner_lr)``); its meta-parameters are
            registered here and returned by ``parameters()``.
        loss: ``"mse"``, ``"cross_entropy"`` or a callable ``(pred, y) -> scalar``.
        grad_clip: clip inner gradients to ``[-grad_clip, grad_clip]`` (004 on sine).
        learn_inner_lr: meta-learn the scalar SGD step size.
        hf_delta, hf_rho: Hessian-free finite-difference step (fixed ``d``, or 002's
            ``d = 1 / (6 rho a ||u||)``).
        hf_one_sided: opt-in forward difference ``(grad L(w + d u) - grad L(w)) / d`` reusing the
            inner step's gradient (not 002's eq. (9); see ``HessianFree``).
        vectorize: ``True`` (vmap), ``False`` (loop over tasks) or ``"auto"``.
        compile: wrap the vmapped meta-loss in ``torch.compile``.
    """

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, inner_steps: int = 1,
                 mode: str = "second_order", *, learner: Optional[Learner] = None,
                 loss: str | Loss = "mse", grad_clip: Optional[float] = None,
                 learn_inner_lr: bool = False, hf_delta: Optional[float] = None,
                 hf_rho: Optional[float] = None, hf_one_sided: bool = False, vectorize: bool | str = "auto",
                 compile: bool = False) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"MAML: model must be a torch.nn.Module, e.g. mg.models.MLP([1, 40, 40, 1]); "
                                 f"got {type(model).__name__}")
        check_int("MAML", "inner_steps", inner_steps, 0, InputError)
        if vectorize not in (True, False, "auto"):
            raise InputError(f"MAML: vectorize must be True, False or 'auto', got {vectorize!r}")
        if learner is None:
            if not learn_inner_lr:
                check_positive("MAML", "inner_lr", inner_lr, error=InputError)
            else:   # a learned rate may start anywhere, but at a number
                check_finite("MAML", "inner_lr", inner_lr, InputError)
            learner = SGD(lr=inner_lr, learn_lr=learn_inner_lr)
        elif not isinstance(learner, Learner):
            raise InputTypeError(f"MAML: learner must be an update rule (a metagrad Learner), e.g. "
                                 f"mg.learners.MetaSGD(lr=0.01); got {type(learner).__name__}")
        if grad_clip is not None:
            learner = chain(clip(grad_clip), learner)
        self.model = model
        self.learner = learner
        self.inner_steps = inner_steps
        self.mode = check_mode(mode, "MAML")
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "loss")
        self.loss: Loss = get_loss(loss)
        self.metric_name, self.metric = metric_for(loss)
        alpha = learner.nominal_lr
        self.hf = HessianFree(delta=hf_delta, rho=hf_rho, alpha=alpha if hf_rho is not None else None,
                              one_sided=hf_one_sided)
        self.vectorize = vectorize
        self.compile = compile
        self._compiled: Optional[Callable] = None
        meta = learner.init_meta(self.params())
        self.meta = nn.ParameterDict({_safe(k): nn.Parameter(v.detach().clone()) for k, v in meta.items()})

    # -- parameters as data -------------------------------------------------------------
    def params(self) -> Params:
        """The model's parameters as a ``Params`` dict (the live ``nn.Parameter`` objects)."""
        return dict(self.model.named_parameters())

    @staticmethod
    def split_named(named: "dict[str, Tensor]") -> tuple[Params, Params]:
        """``(params, meta)`` from tensors named as in ``named_parameters()`` (``model.<key>``,
        ``meta.<key>``): the explicit arguments of the pure functions (``vmapped_losses``, ``curves``)."""
        params, meta = {}, {}
        for n, v in named.items():
            if n.startswith("model."):
                params[n[len("model."):]] = v
            elif n.startswith("meta."):
                meta[_unsafe(n[len("meta."):])] = v
        return params, meta

    def meta_params(self) -> Params:
        """The learner's meta-parameters as a ``Params`` dict (the live ``nn.Parameter`` objects)."""
        return {_unsafe(k): v for k, v in self.meta.items()}

    # -- per-task pure functions --------------------------------------------------------
    def _adapt(self, params: Params, meta: Params, x: Tensor, y: Tensor, steps: int, mode: str,
               hvp: Optional[tuple[Tensor, Tensor]] = None,
               on_step: Optional[Callable[[int, Params], None]] = None) -> Params:
        return adapt(self.learner, self.model, self.loss, params, meta, x, y, steps, mode,
                     hvp_data=hvp, hf=self.hf, on_step=on_step)

    def _task_loss(self, params: Params, meta: Params, sx: Tensor, sy: Tensor, qx: Tensor,
                   qy: Tensor, hx: Optional[Tensor] = None, hy: Optional[Tensor] = None) -> Tensor:
        hvp = None if hx is None else (hx, hy)
        fast = self._adapt(params, meta, sx, sy, self.inner_steps, self.mode, hvp)
        return self.loss(exact_call(self.model, fast, (qx,)), qy)

    def vmapped_losses(self, params: Params, meta: Params, sx: Tensor, sy: Tensor, qx: Tensor,
                       qy: Tensor, hx: Optional[Tensor] = None, hy: Optional[Tensor] = None,
                       batched_params: bool = False) -> Tensor:
        """Query loss after adaptation of every task, ``[B]``, for explicit ``params``/``meta`` (a pure
        function of them: ``Population`` vmaps it over members). ``batched_params``: ``params``
        carries one copy per task on dim 0 (so each task's gradient can be clamped on its own)."""
        h = None if hx is None else 0
        return vmap(self._task_loss, in_dims=(0 if batched_params else None, None, 0, 0, 0, 0, h, h),
                    randomness="different")(params, meta, sx, sy, qx, qy, hx, hy)

    def _batched_hf_loss(self, params: Params, meta: Params, sx: Tensor, sy: Tensor, qx: Tensor,
                         qy: Tensor, hx: Optional[Tensor], hy: Optional[Tensor]) -> Tensor:
        # hessian_free runs its gradient op once per step for the whole batch (see adapt_tasks).
        hvp = None if hx is None else (hx, hy)
        fast, frozen = adapt_tasks(self.learner, self.model, self.loss, params, meta, sx, sy,
                                   self.inner_steps, self.mode, hvp_data=hvp, hf=self.hf)

        def query(p: Params, x: Tensor, y: Tensor) -> Tensor:
            return self.loss(exact_call(self.model, {**p, **frozen}, (x,)), y)
        return vmap(query)(fast, qx, qy)

    def check_batch(self, batch: TaskBatch, where: str) -> None:
        """Raise a one-line error naming ``where`` unless ``batch`` is a ``TaskBatch`` of the model's dtype."""
        if not isinstance(batch, TaskBatch):
            raise InputTypeError(f"{where}: expected a TaskBatch, got {type(batch).__name__}")
        p = next(iter(self.model.parameters()), None)
        if p is not None and batch.support_x.is_floating_point() and batch.support_x.dtype != p.dtype:
            raise InputTypeError(f"{where}: batch support_x is {batch.support_x.dtype} but the model's "
                            f"parameters are {p.dtype}; call batch.to({p.dtype})")

    def _use_vmap(self, n_tasks: int) -> bool:
        return n_tasks > 1 if self.vectorize == "auto" else bool(self.vectorize)

    # -- public API -----------------------------------------------------------------------
    def task_losses(self, batch: TaskBatch, hvp_batch: Optional[TaskBatch] = None) -> Tensor:
        """Query loss after adaptation, one value per task ``[B]`` (differentiable)."""
        self.check_batch(batch, "MAML.meta_loss")
        if self.mode == "first_order" and hvp_batch is not None:
            raise InputError("MAML.meta_loss: hvp_batch (D_h) is for mode='hessian_free' or 'second_order'; "
                             "first_order takes no Hessian-vector products")
        hx, hy = (None, None) if hvp_batch is None else (hvp_batch.support_x, hvp_batch.support_y)
        if hvp_batch is not None and hvp_batch.n_tasks != batch.n_tasks:
            raise InputError(f"MAML.meta_loss: hvp_batch has {hvp_batch.n_tasks} tasks but batch has {batch.n_tasks}")
        params, meta = self.params(), self.meta_params()
        args = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        if self._use_vmap(batch.n_tasks):
            fn = self._batched_hf_loss if self.mode == "hessian_free" else self.vmapped_losses
            if self.compile:
                if self._compiled is None:
                    self._compiled = torch.compile(fn)
                fn = self._compiled
            return fn(params, meta, *args, hx, hy)
        return torch.stack([
            self._task_loss(params, meta, *(a[i] for a in args),
                            None if hx is None else hx[i], None if hy is None else hy[i])
            for i in range(batch.n_tasks)])

    def meta_loss(self, batch: TaskBatch, hvp_batch: Optional[TaskBatch] = None) -> Tensor:
        """Mean query loss after inner adaptation over the tasks of ``batch`` (a scalar).

        ``hvp_batch``: 002's separate data ``D_h`` of the same tasks (its support sets are used for
        the Hessian-vector products: finite differences in ``hessian_free``, exact in
        ``second_order``), same number of tasks (e.g. ``task.resample(batch, k, generator)``).
        """
        return self.task_losses(batch, hvp_batch).mean()

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: Optional[int] = None,
              mode: Optional[str] = None) -> Params:
        """Adapt to one task's support set (``[K, ...]``, no task dimension); returns fast weights."""
        if support_x.dim() < 1 or support_x.shape[0] != support_y.shape[0]:
            raise InputError(f"MAML.adapt: support_x has shape {tuple(support_x.shape)} but support_y has "
                             f"shape {tuple(support_y.shape)}; expected the same number of examples")
        steps = self.inner_steps if steps is None else steps
        return self._adapt(self.params(), self.meta_params(), support_x, support_y, steps, mode or self.mode)

    def predict(self, params: Params, x: Tensor) -> Tensor:
        """Run the model on ``x`` with parameters ``params`` (e.g. the output of ``adapt``; a
        parameter ``params`` lacks keeps the model's own value)."""
        unknown = params.keys() - dict(self.model.named_parameters()).keys()
        if unknown:   # functional_call ignores them: the model would run unadapted, silently
            raise InputError(f"MAML.predict: params has {len(unknown)} key(s) the model does not have, e.g. "
                             f"{sorted(unknown)[0]!r}; pass the dict adapt() returns (keys as in "
                             f"model.named_parameters(): {', '.join(list(self.params())[:3])}, ...)")
        return exact_call(self.model, params, (x,))

    @torch.no_grad()
    def adaptation_curve(self, batch: TaskBatch, steps: Optional[int] = None) -> Tensor:
        """Query metric after ``0..steps`` inner steps for every task: ``[B, steps + 1]``.

        ``steps`` may exceed the number used in meta-training (000's extrapolation study).
        The metric is MSE for regression and accuracy for classification.
        """
        self.check_batch(batch, "MAML.adaptation_curve")
        steps = self.inner_steps if steps is None else steps
        params = {k: v.detach() for k, v in self.params().items()}
        meta = {k: v.detach() for k, v in self.meta_params().items()}
        return self.curves(params, meta, batch, steps, self._use_vmap(batch.n_tasks))

    def curves(self, params: Params, meta: Params, batch: TaskBatch, steps: int, vectorize: bool = True) -> Tensor:
        """``adaptation_curve`` for explicit ``params``/``meta`` (a pure function: ``Population`` vmaps it)."""
        def curve(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
            out = [self.metric(exact_call(self.model, params, (qx,)), qy)]
            self._adapt(params, meta, sx, sy, steps, "first_order",
                        on_step=lambda t, p: out.append(self.metric(exact_call(self.model, p, (qx,)), qy)))
            return torch.stack(out)

        args = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        if vectorize:
            return vmap(curve, randomness="different")(*args)
        return torch.stack([curve(*(a[i] for a in args)) for i in range(batch.n_tasks)])

    def extra_repr(self) -> str:
        return f"learner={self.learner}, inner_steps={self.inner_steps}, mode={self.mode!r}, loss={self.loss_name!r}"
