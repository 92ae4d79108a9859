"""Gradient checks shared by the Meta-SGD, T-net/MT-net and bias-transformation tests."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.func import functional_call

import metagrad as mg
from metagrad.inner import split_params
from conftest import fd_grad, rel_err


def sine_batch(n_tasks: int = 3, k_shot: int = 5, k_query: int = 4, seed: int = 0) -> mg.TaskBatch:
    task = mg.tasks.Sinusoid(k_shot=k_shot, k_query=k_query, frequency=(0.8, 1.2), phase=(-math.pi, 0.0))
    return task.sample(n_tasks, torch.Generator().manual_seed(seed), dtype=torch.float64)


def all_params(algo: mg.MAML) -> list[torch.Tensor]:
    """Model parameters then meta-parameters (the outer loop's variables)."""
    return list(algo.params().values()) + list(algo.meta_params().values())


def autograd_grads(algo: mg.MAML, batch: mg.TaskBatch) -> list[torch.Tensor]:
    loss = algo.meta_loss(batch)
    return list(torch.autograd.grad(loss, all_params(algo), allow_unused=True))


def check_second_order_fd(algo: mg.MAML, batch: mg.TaskBatch, tol: float = 1e-6) -> float:
    """Second-order meta-gradient vs central finite differences of the meta-loss (float64)."""
    assert algo.mode == "second_order"
    analytic = autograd_grads(algo, batch)
    with torch.no_grad():
        numeric = fd_grad(lambda: algo.meta_loss(batch), all_params(algo))
    analytic = [torch.zeros_like(n) if a is None else a for a, n in zip(analytic, numeric)]
    err = rel_err(analytic, numeric)
    assert err < tol, f"second-order meta-gradient relative error {err:.2e} >= {tol}"
    return err


def first_order_reference(algo: mg.MAML, batch: mg.TaskBatch) -> list[torch.Tensor]:
    """FO meta-gradient of one inner step: query loss at the adapted params, the inner gradient a constant.

    Built independently of ``metagrads``: the support gradient is computed and detached, then
    the learner's step and the query loss are differentiated by ordinary autograd.
    """
    assert algo.inner_steps == 1
    params, meta = algo.params(), algo.meta_params()
    model, learner, loss = algo.model, algo.learner, algo.loss
    total = 0.0
    for i in range(batch.n_tasks):
        adapted, frozen = split_params(learner, params)
        sx, sy = batch.support_x[i], batch.support_y[i]
        val = loss(functional_call(model, {**adapted, **frozen}, (sx,)), sy)
        g = torch.autograd.grad(val, list(adapted.values()))
        g = {k: v.detach() for k, v in zip(adapted, g)}
        state = learner.init(adapted, meta)
        new, _ = learner.step(g, adapted, state, meta, 0, val.detach())
        total = total + loss(functional_call(model, {**new, **frozen}, (batch.query_x[i],)), batch.query_y[i])
    out = torch.autograd.grad(total / batch.n_tasks, all_params(algo), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(out, all_params(algo))]


def check_modes(make: Callable[[str, dict], mg.MAML], batch: mg.TaskBatch) -> dict[str, float]:
    """second_order vs FD; first_order vs the reference; hessian_free vs second_order (1e-4)."""
    errs = {"second_order": check_second_order_fd(make("second_order", {}), batch)}
    fo = make("first_order", {})
    got = [torch.zeros_like(p) if g is None else g for g, p in zip(autograd_grads(fo, batch), all_params(fo))]
    errs["first_order"] = rel_err(got, first_order_reference(fo, batch))
    assert errs["first_order"] < 1e-10, errs
    exact = autograd_grads(make("second_order", {}), batch)
    hf = autograd_grads(make("hessian_free", {"hf_delta": 1e-6}), batch)
    exact = [torch.zeros_like(h) if e is None else e for e, h in zip(exact, hf)]
    errs["hessian_free"] = rel_err(hf, exact)
    assert errs["hessian_free"] < 1e-4, errs
    # the opt-in one-sided difference (its frozen-parameter path evaluates grad L(w) beside grad L(w + d u))
    errs["hessian_free_one_sided"] = rel_err(autograd_grads(make("hessian_free", {"hf_delta": 1e-7, "hf_one_sided": True}), batch), exact)
    assert errs["hessian_free_one_sided"] < 1e-4, errs
    # The first-order gradient must differ from the exact one (else the check above proves nothing).
    assert rel_err(got, exact) > 1e-6, errs
    return errs


def check_vmap_equals_loop(make: Callable[[bool], mg.MAML], batch: mg.TaskBatch) -> None:
    """Meta-loss and meta-gradients of the vmapped path equal those of the per-task loop."""
    a, b = make(True), make(False)
    la, lb = a.meta_loss(batch), b.meta_loss(batch)
    assert torch.allclose(la, lb, rtol=1e-12, atol=1e-14), (la, lb)
    ga = torch.autograd.grad(la, all_params(a), allow_unused=True)
    gb = torch.autograd.grad(lb, all_params(b), allow_unused=True)
    for x, y in zip(ga, gb):
        assert (x is None) == (y is None)
        if x is not None:
            assert torch.allclose(x, y, rtol=1e-10, atol=1e-13)
