"""Transfer baselines of 004 (section 2.2, appendix A.1 test protocol)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import metagrad as mg
from metagrad.baselines import (CentroidFinetuning, Finetuning, TrainFromScratch, fit_on_support,
                                merge_tasks, split_head)
from metagrad.losses import mse

D = torch.float64


def _sine(n: int, k: int = 10, seed: int = 0, q: int = 20) -> mg.TaskBatch:
    return mg.tasks.Sinusoid(k_shot=k, k_query=q).sample(n, torch.Generator().manual_seed(seed), dtype=D)


def test_vectorised_protocol_equals_torch_adam_loop() -> None:
    """One task: the vmapped functional Adam + best-of-checkpoints equals torch.optim.Adam by hand."""
    torch.manual_seed(0)
    model = mg.models.MLP([1, 8, 1]).to(D)
    batch = _sine(1, k=6)
    fwd = lambda p, f, x: functional_call(model, p, (x,))  # noqa: E731
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    best = fit_on_support(fwd, start, {}, batch.support_x, batch.support_y, mse,
                          torch.Generator().manual_seed(5), steps=20, batch_size=4, eval_every=5)
    # reference loop replaying the same mini-batch draws
    gen = torch.Generator().manual_seed(5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best_loss, ref = float("inf"), None
    for s in range(1, 21):
        idx = torch.randint(0, 6, (1, 4), generator=gen)[0]
        loss = mse(model(batch.support_x[0, idx]), batch.support_y[0, idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s % 5 == 0:
            with torch.no_grad():
                cur = float(mse(model(batch.support_x[0]), batch.support_y[0]))
            if cur < best_loss:
                best_loss, ref = cur, {k: v.detach().clone() for k, v in model.named_parameters()}
    for k in ref:
        torch.testing.assert_close(best[k][0], ref[k], rtol=1e-10, atol=1e-12)


def test_train_from_scratch_support_loss_falls() -> None:
    torch.manual_seed(1)
    model = mg.models.MLP([1, 20, 1]).to(D)
    batch = _sine(8)
    with torch.no_grad():
        before = torch.stack([mse(model(batch.support_x[i]), batch.support_y[i]) for i in range(8)])
    tfs = TrainFromScratch(model)   # the 004 protocol: 100 Adam steps of 1e-3, batches of 4
    best = tfs.adapt(batch.support_x, batch.support_y, torch.Generator().manual_seed(0))
    with torch.no_grad():
        after = torch.stack([mse(functional_call(model, {k: v[i] for k, v in best.items()}, (batch.support_x[i],)),
                                 batch.support_y[i]) for i in range(8)])
    assert (after < before).all()
    query = tfs.evaluate(batch, torch.Generator().manual_seed(0))
    assert query.shape == (8,) and torch.isfinite(query).all()


def test_finetuning_pretraining_loss_falls_and_head_retraining_helps() -> None:
    torch.manual_seed(2)
    ft = Finetuning.from_model(mg.models.MLP([1, 20, 20, 1]).to(D))
    x, y = merge_tasks(_sine(200, seed=1))
    assert x.shape == (200 * 30, 1)
    losses = ft.pretrain(x, y, 300, torch.Generator().manual_seed(0), lr=3e-3)
    assert sum(losses[-50:]) / 50 < 0.9 * sum(losses[:50]) / 50
    test = _sine(16, seed=2)
    with torch.no_grad():
        frozen = torch.stack([mse(ft(test.query_x[i]), test.query_y[i]) for i in range(16)])
    tuned = Finetuning(ft.body, ft.head, lr=1e-2).evaluate(test, torch.Generator().manual_seed(0))
    assert tuned.median() < 0.7 * frozen.median()    # means are dominated by a few extrapolating tasks
    # only the output layer moves: the body is untouched by evaluation
    assert ft.head.weight.shape == (1, 20)


def _blobs(n_tasks: int, n_way: int, shots: int, seed: int) -> mg.TaskBatch:
    """Classification tasks whose classes are Gaussian blobs in 2-D (labels 0..n_way-1 per task)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_tasks, n_way, 1, 2, generator=g, dtype=D) * 3
    def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = centers + 0.3 * torch.randn(n_tasks, n_way, k, 2, generator=g, dtype=D)
        y = torch.arange(n_way).repeat_interleave(k).expand(n_tasks, -1)
        return x.reshape(n_tasks, n_way * k, 2), y.contiguous()
    (sx, sy), (qx, qy) = draw(shots), draw(5)
    return mg.TaskBatch(sx, sy, qx, qy)


def test_centroid_finetuning_learns_new_classes() -> None:
    torch.manual_seed(3)
    body = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16)).to(D)
    cft = CentroidFinetuning(body, 16, n_train_classes=10, scale=5.0, lr=5e-2).to(D)
    g = torch.Generator().manual_seed(0)
    cx = torch.randn(10, 2, generator=g, dtype=D) * 3
    y = torch.randint(0, 10, (2000,), generator=g)
    x = cx[y] + 0.3 * torch.randn(2000, 2, generator=g, dtype=D)
    losses = cft.pretrain(x, y, 150, g, lr=1e-2)
    assert sum(losses[-50:]) / 50 < 0.8 * sum(losses[:50]) / 50
    acc = cft.evaluate(_blobs(8, 3, 5, seed=1), g)
    assert acc.shape == (8,) and acc.mean() > 0.6     # chance is 1/3


def test_finetuning_new_head_for_classification() -> None:
    torch.manual_seed(4)
    body = nn.Sequential(nn.Linear(2, 16), nn.ReLU()).to(D)
    ft = Finetuning(body, nn.Linear(16, 10).to(D), "cross_entropy", new_head=3, lr=5e-2)
    acc = ft.evaluate(_blobs(8, 3, 5, seed=2), torch.Generator().manual_seed(0))
    assert acc.shape == (8,) and acc.mean() > 0.5


def test_bad_input_raises() -> None:
    fwd = lambda p, f, x: x * p["w"]  # noqa: E731
    sx = torch.ones(2, 4, 1)
    with pytest.raises(ValueError, match="eval_every=50 exceeds steps=10"):
        fit_on_support(fwd, {"w": torch.ones(1)}, {}, sx, sx, mse, torch.Generator(), steps=10, eval_every=50)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        fit_on_support(fwd, {"w": torch.ones(1)}, {}, sx, sx, mse, torch.Generator(), batch_size=0)
    with pytest.raises(ValueError, match="support_x has 2 tasks but support_y has 3"):
        fit_on_support(fwd, {"w": torch.ones(1)}, {}, sx, torch.ones(3, 4, 1), mse, torch.Generator())
    with pytest.raises(TypeError, match="split_head: .*Conv1d"):
        split_head(nn.Conv1d(1, 1, 1))
    with pytest.raises(ValueError, match="new_head must be None or an integer >= 1, got 0"):
        Finetuning(nn.Identity(), nn.Linear(2, 1), new_head=0)
    cft = CentroidFinetuning(nn.Identity(), 1, 2)
    with pytest.raises(TypeError, match="classification"):
        cft.evaluate(_sine(2), torch.Generator())
    with pytest.raises(TypeError, match="TaskBatch"):
        TrainFromScratch(nn.Linear(1, 1)).evaluate(sx, torch.Generator())
