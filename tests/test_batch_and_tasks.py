"""TaskBatch validation and the regression task families."""
from __future__ import annotations

import math

import pytest
import torch

import metagrad as mg


def _t(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


def test_taskbatch_rejects_disagreeing_task_counts():
    with pytest.raises(ValueError, match="support_x has 3.*support_y has 4"):
        mg.TaskBatch(_t(3, 5, 1), _t(4, 5, 1), _t(3, 5, 1), _t(3, 5, 1))


def test_taskbatch_rejects_dtype_mismatch():
    with pytest.raises(TypeError, match="support_x is torch.float32 but query_x is torch.float64"):
        mg.TaskBatch(_t(2, 5, 1), _t(2, 5, 1), _t(2, 5, 1, dtype=torch.float64), _t(2, 5, 1))


def test_taskbatch_rejects_example_count_mismatch_and_non_tensors():
    with pytest.raises(ValueError, match="support_x has 5 examples per task but support_y has 4"):
        mg.TaskBatch(_t(2, 5, 1), _t(2, 4, 1), _t(2, 5, 1), _t(2, 5, 1))
    with pytest.raises(TypeError, match="query_y must be a torch.Tensor, got list"):
        mg.TaskBatch(_t(2, 5, 1), _t(2, 5, 1), _t(2, 5, 1), [[0.0]])


def test_taskbatch_indexing_and_cast():
    b = mg.tasks.Sinusoid().sample(4, torch.Generator().manual_seed(0))
    assert b[1].n_tasks == 1 and torch.equal(b[1].support_x[0], b.support_x[1])
    assert b[1:3].n_tasks == 2
    assert b.to(torch.float64).query_y.dtype == torch.float64
    assert mg.TaskBatch.cat([b[0], b[1:]]).support_x.equal(b.support_x)


def test_sinusoid_follows_its_formula_and_ranges():
    task = mg.tasks.Sinusoid(k_shot=7, k_query=3, frequency=(0.8, 1.2), phase=(-math.pi, 0))
    b = task.sample(50, torch.Generator().manual_seed(0), torch.float64)
    assert b.support_x.shape == (50, 7, 1) and b.query_y.shape == (50, 3, 1)
    a, w, p = b.task_params.unbind(-1)
    assert ((a >= 0.1) & (a <= 5)).all() and ((w >= 0.8) & (w <= 1.2)).all() and ((p >= -math.pi) & (p <= 0)).all()
    want = a[:, None, None] * torch.sin(w[:, None, None] * b.support_x - p[:, None, None])
    assert torch.allclose(b.support_y, want)
    assert (b.support_x.abs() <= 5).all()


def test_sampling_is_reproducible_and_dtype_independent():
    task = mg.tasks.Sinusoid()
    b1 = task.sample(5, torch.Generator().manual_seed(3))
    b2 = task.sample(5, torch.Generator().manual_seed(3), torch.float64)
    assert torch.allclose(b1.support_y.double(), b2.support_y, atol=1e-6)
    assert not torch.equal(b1.support_x, task.sample(5, torch.Generator().manual_seed(4)).support_x)


def test_polynomial_follows_its_formula():
    task = mg.tasks.Polynomial(k_shot=4, k_query=40, degree=3)
    b = task.sample(10, torch.Generator().manual_seed(0), torch.float64)
    c = b.task_params
    x = b.query_x[..., 0]
    want = c[:, :1] + c[:, 1:2] * x + c[:, 2:3] * x ** 2 + c[:, 3:4] * x ** 3
    assert torch.allclose(b.query_y[..., 0], want)
    assert ((c >= -1) & (c <= 1)).all() and (x.abs() <= 3).all()


@pytest.mark.parametrize("kwargs, msg", [
    ({"k_shot": 0}, "k_shot must be an integer >= 1, got 0"),
    ({"amplitude": (5, 1)}, "amplitude must satisfy lo <= hi"),
    ({"phase": "x"}, "phase must be a pair"),
])
def test_sinusoid_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        mg.tasks.Sinusoid(**kwargs)


def test_sample_needs_explicit_generator():
    with pytest.raises(TypeError, match="explicit torch.Generator"):
        mg.tasks.Sinusoid().sample(3, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_tasks must be an integer >= 1, got 0"):
        mg.tasks.Polynomial().sample(0, torch.Generator())


def test_maml_bad_arguments():
    model = mg.models.MLP([1, 4, 1])
    with pytest.raises(ValueError, match="inner_steps must be an integer >= 0, got -1"):
        mg.MAML(model, inner_steps=-1)
    with pytest.raises(ValueError, match="unknown mode 'third_order'"):
        mg.MAML(model, mode="third_order")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        mg.MAML(model, loss="hinge")
    b = mg.tasks.Sinusoid().sample(2, torch.Generator().manual_seed(0), torch.float64)
    with pytest.raises(TypeError, match="float64 but the model's parameters are torch.float32"):
        mg.MAML(model).meta_loss(b)
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -2"):
        mg.MAML(model).adapt(torch.zeros(3, 1), torch.zeros(3, 1), steps=-2)


def test_high_level_api_example_runs_and_learns():
    # The README example: the training loop is the same for every mode, and the loss falls.
    g = torch.Generator().manual_seed(0)
    task = mg.tasks.Sinusoid(k_shot=10, k_query=10)
    for mode in mg.MODES:
        torch.manual_seed(0)
        model = mg.models.MLP([1, 40, 40, 1])
        algo = mg.MAML(model, inner_lr=0.01, inner_steps=2, mode=mode)
        opt = torch.optim.Adam(algo.parameters(), lr=3e-3)
        fixed = task.sample(50, torch.Generator().manual_seed(99))
        before = algo.meta_loss(fixed).item()
        for _ in range(100):
            loss = algo.meta_loss(task.sample(5, g))
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = algo.meta_loss(fixed).item()
        assert after < 0.8 * before, (mode, before, after)
    fast = algo.adapt(fixed.support_x[0], fixed.support_y[0], steps=10)
    assert algo.predict(fast, fixed.query_x[0]).shape == (10, 1)
