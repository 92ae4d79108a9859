"""Conv4 with transductive batch norm: exact second-order meta-gradients under vmap, task isolation."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from conftest import directional_fd_errors
from metagrad.models.conv4 import BatchNormStats, Conv4, batch_norm

N, K, B, SIZE = 3, 2, 2, 16


def _batch(seed: int = 1, tasks: int = B, size: int = SIZE, channels: int = 1) -> mg.TaskBatch:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(tasks, N * K, channels, size, size, generator=g, dtype=torch.float64)
    qx = torch.rand(tasks, N * K, channels, size, size, generator=g, dtype=torch.float64)
    y = torch.arange(N).repeat_interleave(K).expand(tasks, -1).clone()
    return mg.TaskBatch(sx, y, qx, y.clone())


def _algo(norm: str = "batch", pooling: str = "stride", vectorize: bool = True, size: int = SIZE,
          mode: str = "second_order", steps: int = 1) -> mg.MAML:
    torch.manual_seed(0)
    model = Conv4(n_way=N, channels=1, image_size=size, hidden=4, pooling=pooling, norm=norm).double()
    return mg.MAML(model, inner_lr=0.4, inner_steps=steps, mode=mode, loss="cross_entropy", vectorize=vectorize)


def _fd_errors(algo: mg.MAML, batch: mg.TaskBatch, directions: int = 3, eps: float = 1e-7) -> list[float]:
    """Relative errors of the autograd meta-gradient against central finite differences of the
    meta-loss along random directions. eps = 1e-7: batch norm on tiny batches is so curved (and
    max-pooling so kinked) that eps = 1e-4 has errors of ~10%, while float64 round-off stays ~1e-9."""
    return directional_fd_errors(lambda: algo.meta_loss(batch), list(algo.parameters()), directions, eps, seed=7)


@pytest.mark.parametrize("pooling,steps", [("stride", 1), ("max", 1), ("stride", 2)])
def test_second_order_metagrad_matches_finite_differences_under_vmap(pooling: str, steps: int) -> None:
    algo = _algo(pooling=pooling, steps=steps)
    assert algo._use_vmap(B)  # the library's vmapped path, not the loop
    errs = _fd_errors(algo, _batch())
    assert max(errs) < 1e-6, errs


def test_naive_batchnorm2d_under_plain_functional_call_fails_the_same_check(monkeypatch) -> None:
    # The trap of DESIGN.md section 2 (pytorch/functorch issue 534): affine nn.BatchNorm2d under
    # vmap gives wrong second-order gradients in torch 2.13 when run through the plain
    # functional_call (metagrad.exact bypassed) ...
    import metagrad.algorithm
    import metagrad.inner
    from torch.func import functional_call
    for mod in (metagrad.algorithm, metagrad.inner):
        monkeypatch.setattr(mod, "exact_call", functional_call)
    naive = _fd_errors(_algo(norm="torch"), _batch())
    assert min(naive) > 1e-4, naive
    # ... while the same module looped over tasks is right, so the error is vmap's.
    assert max(_fd_errors(_algo(norm="torch", vectorize=False), _batch())) < 1e-6


def test_user_batchnorm2d_gives_conv4s_metagradients_through_metagrad_exact() -> None:
    # metagrad.exact runs any nn.BatchNorm2d with the elementary batch norm of conv4.
    grads = []
    for norm in ("batch", "torch"):
        algo = _algo(norm=norm, steps=2)
        grads.append(torch.autograd.grad(algo.meta_loss(_batch()), list(algo.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    assert max(_fd_errors(_algo(norm="torch"), _batch())) < 1e-6


def test_conv_bias_before_batch_norm_gets_exactly_zero_metagradient() -> None:
    # Batch norm subtracts the batch mean, so the conv bias cannot change any output.
    # (A user's nn.BatchNorm2d too: metagrad.exact runs it with the same elementary batch norm.)
    for norm in ("batch", "torch"):
        algo = _algo(norm=norm)
        algo.meta_loss(_batch()).backward()
        bias_grad = algo.model.features[0].bias.grad.abs().max().item()
        assert bias_grad < 1e-12, (norm, bias_grad)


def test_first_order_metagrad_matches_loop() -> None:
    batch = _batch()
    grads = []
    for vec in (True, False):
        algo = _algo(mode="first_order", vectorize=vec)
        grads.append(torch.autograd.grad(algo.meta_loss(batch), list(algo.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_batch_norm_of_one_task_ignores_the_other_tasks() -> None:
    algo = _algo()
    batch = _batch(tasks=3)
    other = _batch(seed=99, tasks=3)
    # Replace tasks 1 and 2 entirely (support and query); task 0 must not notice.
    mixed = mg.TaskBatch(torch.cat([batch.support_x[:1], other.support_x[1:]]), batch.support_y,
                         torch.cat([batch.query_x[:1], other.query_x[1:]]), batch.query_y)
    a, b = algo.task_losses(batch), algo.task_losses(mixed)
    assert a[0].item() == pytest.approx(b[0].item(), rel=1e-12, abs=1e-14)
    assert abs(a[1].item() - b[1].item()) > 1e-6  # the replaced tasks did change
    # The meta-gradient of task 0 alone is the same too.
    ps = list(algo.parameters())
    ga = torch.autograd.grad(algo.task_losses(batch)[0], ps)
    gb = torch.autograd.grad(algo.task_losses(mixed)[0], ps)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_query_predictions_depend_on_other_queries_only_through_batch_statistics() -> None:
    # Mode: transductive. A query prediction is f(image, mean and variance of the query batch).
    algo = _algo()
    batch = _batch()
    fast = algo.adapt(batch.support_x[0], batch.support_y[0])
    norms = algo.model.norms()
    for m in norms:
        m.record = True
    logits = algo.predict(fast, batch.query_x[0])
    stats = [m.last for m in norms]
    try:
        for m, s in zip(norms, stats):
            m.record, m.frozen = False, s
        alone = torch.cat([algo.predict(fast, batch.query_x[0][i:i + 1]) for i in range(N * K)])
    finally:
        for m in norms:
            m.record, m.frozen = False, None
    torch.testing.assert_close(alone, logits, rtol=1e-10, atol=1e-12)
    # Permuting the query set permutes the predictions (no dependence on position).
    perm = torch.randperm(N * K, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(algo.predict(fast, batch.query_x[0][perm]), logits[perm], rtol=1e-10, atol=1e-12)
    # And the statistics do matter: changing another query image changes prediction 0.
    qx = batch.query_x[0].clone()
    qx[1:] = torch.rand(qx[1:].shape, generator=torch.Generator().manual_seed(5), dtype=qx.dtype)
    assert (algo.predict(fast, qx)[0] - logits[0]).abs().max() > 1e-6


def test_support_adaptation_never_sees_the_query_set() -> None:
    # Support predictions in the inner loop come from calls on the support set alone: the
    # vmapped task loss equals "adapt on the support set by itself, then predict the query".
    algo = _algo()
    batch, other = _batch(), _batch(seed=42)
    swapped = mg.TaskBatch(batch.support_x, batch.support_y, other.query_x, other.query_y)
    for b in (batch, swapped):
        losses = algo.task_losses(b)
        for i in range(B):
            fast = algo.adapt(b.support_x[i], b.support_y[i])
            ref = torch.nn.functional.cross_entropy(algo.predict(fast, b.query_x[i]), b.query_y[i])
            assert losses[i].item() == pytest.approx(ref.item(), rel=1e-10)


def test_batch_norm_matches_torch_forward() -> None:
    x = torch.randn(6, 5, 4, 4, dtype=torch.float64)
    w, b = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    ref = torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    torch.testing.assert_close(batch_norm(x, w, b, 1e-5), ref, rtol=1e-10, atol=1e-12)


def test_shapes_and_feature_sizes() -> None:
    omni = Conv4(n_way=5, channels=1, image_size=28)
    assert omni(torch.rand(7, 1, 28, 28)).shape == (7, 5)
    assert omni.feature_dim == 64 * 2 * 2
    mini = Conv4(n_way=5, channels=3, image_size=84, hidden=32, pooling="max")
    assert mini.feature_dim == 32 * 5 * 5
    assert mini(torch.rand(2, 3, 84, 84)).shape == (2, 5)
    assert len(omni.norms()) == 4 and all(isinstance(m, BatchNormStats) for m in omni.norms())
    # No running statistics anywhere: nothing but parameters in the state dict.
    assert set(omni.state_dict()) == {n for n, _ in omni.named_parameters()}


def test_bad_arguments_raise_naming_the_value() -> None:
    with pytest.raises(ValueError, match="pooling 'avg'"):
        Conv4(pooling="avg")
    with pytest.raises(ValueError, match="image_size 8 is too small"):
        Conv4(image_size=8, pooling="max")
    with pytest.raises(ValueError, match=r"expected \[K, 1, H, W\]"):
        Conv4()(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="n_way must be an integer >= 1, got 0"):
        Conv4(n_way=0)
