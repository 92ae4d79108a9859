"""002's separate batches: D_h is fresh data of the *same* tasks; D_beta its own tasks of D_beta examples."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from conftest import rel_err
from metagrad.errors import ConfigError, InputError
from metagrad.experiments.config import Config
from metagrad.streams import SampledStream


@pytest.mark.parametrize("task", [mg.tasks.Sinusoid(k_shot=5, k_query=7), mg.tasks.Polynomial(k_shot=5, k_query=7)])
def test_hvp_batch_is_new_data_of_the_same_tasks(task):
    # Fails on the old stream, which drew D_h with task.sample (other amplitudes and phases).
    draw = SampledStream(task, 6, seed=3, hvp=4).next()
    b, h = draw.batch, draw.hvp
    assert torch.equal(h.task_params, b.task_params)
    assert h.support_x.shape == (6, 4, 1)
    # its targets are the same functions at fresh inputs ...
    again = task.resample(b.task_params, 4, torch.Generator().manual_seed(0), torch.float64)
    assert torch.equal(again.task_params, b.task_params.double())
    if isinstance(task, mg.tasks.Sinusoid):
        a, w, p = (b.task_params[:, i].reshape(-1, 1, 1) for i in range(3))
        assert torch.allclose(h.support_y, a * torch.sin(w * h.support_x - p), atol=1e-5)
    # ... independent of D_in and D_o
    assert not torch.isin(h.support_x, b.support_x).any() and not torch.isin(h.support_x, b.query_x).any()


def test_hvp_true_is_k_shot_and_beta_sizes():
    task = mg.tasks.Sinusoid(k_shot=5, k_query=7)
    d = SampledStream(task, 4, seed=0, hvp=True, beta=True, beta_tasks=3, beta_shots=9).next()
    assert d.hvp.support_x.shape == (4, 5, 1)
    assert d.beta.support_x.shape == (3, 9, 1)
    assert not torch.isin(d.beta.task_params[:, 0], d.batch.task_params[:, 0]).any()   # B' is its own batch of tasks
    # without D_h or a D_beta size the stream draws exactly what it always drew
    old = SampledStream(task, 4, seed=0, beta=True).next()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(old.batch.support_x, task.sample(4, g).support_x)
    assert torch.equal(old.beta.support_x, task.sample(4, g).support_x)


def test_resample_refusals():
    task = mg.tasks.Sinusoid()
    with pytest.raises(InputError, match=r"task_params has shape \(2, 2\); expected \[tasks, 3\]"):
        task.resample(torch.zeros(2, 2), 3, torch.Generator())
    with pytest.raises(InputError, match="k must be an integer >= 1, got 0"):
        task.resample(torch.zeros(2, 3), 0, torch.Generator())
    images = mg.tasks.EpisodicImages(torch.zeros(6, 3, 1, 4, 4), n_way=2, k_shot=1, k_query=1)
    with pytest.raises(InputError, match="cannot draw fresh data of the same tasks"):
        images.resample(torch.zeros(2, 2), 3, torch.Generator())
    with pytest.raises(ConfigError, match="no resample"):
        SampledStream(object(), 2, 0, hvp=3)
    with pytest.raises(ConfigError, match="first_order takes no Hessian-vector products"):
        Config.from_dict({"inner": {"mode": "first_order"}, "outer": {"hvp_batch": 5}})


def _setup(mode: str, **kw):
    torch.manual_seed(0)
    model = mg.models.MLP([1, 6, 6, 1], activation="tanh").double()
    algo = mg.MAML(model, inner_lr=0.1, inner_steps=2, mode=mode, vectorize=True, **kw)
    batch = mg.tasks.Sinusoid(k_shot=5, k_query=6).sample(3, torch.Generator().manual_seed(1), torch.float64)
    return algo, batch


def _grads(algo, batch, hvp=None) -> list[torch.Tensor]:
    algo.zero_grad()
    algo.meta_loss(batch, hvp).backward()
    return [p.grad.clone() for p in algo.model.parameters()]


def test_hessian_free_with_dh_equal_din_tends_to_second_order():
    """002 eq. (9)-(11): with D_h = D_in the central difference's error is O(delta^2) (float64)."""
    so, batch = _setup("second_order")
    exact = _grads(so, batch)
    dh = mg.TaskBatch(batch.support_x, batch.support_y, batch.support_x, batch.support_y)
    errs = []
    for delta in (1e-1, 1e-2, 1e-3, 1e-4):
        hf, _ = _setup("hessian_free", hf_delta=delta)
        errs.append(rel_err(_grads(hf, batch, dh), exact))
    assert all(b < a / 30 for a, b in zip(errs[:3], errs[1:3])), errs   # ~100x per decade
    assert errs[-1] < 1e-7, errs


def test_second_order_takes_its_hessian_on_dh():
    """002's Algorithm 1: SO with D_h = D_in is plain SO; with another D_h it equals HF on that D_h."""
    so, batch = _setup("second_order")
    same = mg.TaskBatch(batch.support_x, batch.support_y, batch.support_x, batch.support_y)
    assert rel_err(_grads(so, batch, same), _grads(so, batch)) < 1e-12
    dh = mg.tasks.Sinusoid().resample(batch, 8, torch.Generator().manual_seed(5), torch.float64)
    hf, _ = _setup("hessian_free", hf_delta=1e-5)
    on_dh = _grads(so, batch, dh)
    assert rel_err(on_dh, _grads(hf, batch, dh)) < 1e-7
    assert rel_err(on_dh, _grads(so, batch)) > 1e-3
