"""002's L and rho estimated (metagrad.smoothness) against closed forms (float64)."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from metagrad.errors import InputError
from metagrad.smoothness import estimate_smoothness
from metagrad.tasks.quadratic import Quadratic


def test_quadratic_tasks_give_their_largest_curvature_and_rho_zero():
    # f_i(w) = 1/2 (w - w_i)^T A_i (w - w_i), A_i = diag(l_i): L_i = max_j l_ij, and the Hessian is constant.
    task = Quadratic(dim=10, curvature=(0.5, 2.0))
    algo = mg.MAML(mg.models.LinearModel(10, init=0.3).double(), inner_lr=0.1)
    est = estimate_smoothness(algo, task, 32, k=20000, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)                  # the same tasks and examples
    batch = task.sample(32, g, torch.float64)
    x = task.resample(batch, 20000, g, torch.float64).support_x
    # each task's empirical Hessian, 2/K X^T X, exactly; and its population value A_i: L_i = max_j l_ij
    empirical = torch.linalg.eigvalsh(2 * x.transpose(1, 2) @ x / x.shape[1]).abs().max(1).values
    assert torch.allclose(est.L_tasks, empirical, rtol=1e-4)
    per_task = batch.task_params.max(1).values
    assert torch.allclose(est.L_tasks, per_task, rtol=0.05)
    assert est.L == pytest.approx(float(per_task.max()), rel=0.03)
    assert est.L == pytest.approx(task.curvature[1], rel=0.03)
    assert est.rho < 1e-8 * est.L
    q = estimate_smoothness(algo, task, 32, k=20000, quantile=0.5, generator=torch.Generator().manual_seed(3))
    assert q.L == pytest.approx(float(torch.quantile(q.L_tasks, 0.5)), rel=1e-12) and q.L < est.L


def test_mlp_largest_eigenvalue_matches_the_dense_hessian_and_constants_scale_with_the_loss():
    torch.manual_seed(0)
    model = mg.models.MLP([1, 5, 1], activation="tanh").double()
    task = mg.tasks.Sinusoid(k_shot=5, k_query=5)
    algo = mg.MAML(model, inner_lr=0.01)
    est = estimate_smoothness(algo, task, 3, generator=torch.Generator().manual_seed(1))
    b = task.sample(3, torch.Generator().manual_seed(1), torch.float64)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for _, p in model.named_parameters()])
    for i in range(3):
        x, y = torch.cat([b.support_x[i], b.query_x[i]]), torch.cat([b.support_y[i], b.query_y[i]])

        def f(v: torch.Tensor) -> torch.Tensor:
            p, o = {}, 0
            for n, s in zip(names, shapes):
                p[n] = v[o:o + s.numel()].view(s)
                o += s.numel()
            return ((torch.func.functional_call(model, p, (x,)) - y) ** 2).mean()
        H = torch.autograd.functional.hessian(f, flat)
        assert float(est.L_tasks[i]) == pytest.approx(float(torch.linalg.eigvalsh(H).abs().max()), rel=1e-6)
    assert est.rho > 0
    # L and rho are linear in the loss: three times the loss, three times each
    algo3 = mg.MAML(model, inner_lr=0.01, loss=lambda p, t: 3 * ((p - t) ** 2).mean())
    est3 = estimate_smoothness(algo3, task, 3, generator=torch.Generator().manual_seed(1))
    assert est3.L == pytest.approx(3 * est.L, rel=1e-6) and est3.rho == pytest.approx(3 * est.rho, rel=1e-4)


def test_bad_settings_are_one_line_errors():
    algo = mg.MAML(mg.models.LinearModel(2).double())
    with pytest.raises(InputError, match="quantile must be in \\(0, 1\\], got 0"):
        estimate_smoothness(algo, Quadratic(dim=2), quantile=0)
    with pytest.raises(InputError, match="radius must be a finite positive number, got -1"):
        estimate_smoothness(algo, Quadratic(dim=2), radius=-1)


def test_config_estimates_L_and_rho_and_defaults_c_to_the_theorem_constant(tmp_path):
    import json
    import warnings

    from metagrad.experiments.building import build, optimizer, schedule
    from metagrad.experiments.presets import get_preset
    from metagrad.experiments.runner import train
    from metagrad.errors import ConfigError
    from metagrad.schedules import THEOREM_C

    cfg = get_preset("sine-hfmaml").override(["outer.optimizer=sgd", "outer.adaptive_L=estimate",
                                              "outer.adaptive_rho=2.5", "outer.meta_batch=4", "dtype=float64"])
    algo, task = build(cfg, "train")
    sched = schedule(cfg, algo, task)
    want = estimate_smoothness(algo, task, 4, generator=torch.Generator().manual_seed(cfg.seed))
    assert sched.L == want.L and sched.rho == 2.5 and sched.estimate.rho == want.rho
    b = task.sample(3, torch.Generator().manual_seed(0), torch.float64)
    from metagrad.schedules import adaptive_meta_step_size
    assert adaptive_meta_step_size(algo, b, 1.0, 1.0) == adaptive_meta_step_size(algo, b, 1.0, 1.0, 1 / 25)
    assert THEOREM_C == {"second_order": 1 / 12, "first_order": 1 / 18, "hessian_free": 1 / 25}
    with pytest.raises(ConfigError, match="outer.adaptive_L .*got 'guess'"):
        cfg.override(["outer.adaptive_L=guess"])
    with pytest.warns(UserWarning, match="scales Adam's step"):
        optimizer(cfg.override(["outer.optimizer=adam"]), algo)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer(cfg, algo)
    run = train("sine-maml-quick", tmp_path / "r", progress=False, overrides=[
        "outer.iterations=2", "outer.meta_batch=3", "outer.optimizer=sgd", "outer.adaptive_L=estimate",
        "outer.adaptive_rho=estimate", "eval.tasks=3"])
    est = json.loads((run / "smoothness.json").read_text())
    assert est["L"] > 0 and est["rho"] > 0 and est["L_used"] == est["L"]
