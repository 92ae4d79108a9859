"""Property tests of the N-way k-shot episodic sampler."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metagrad.tasks.episodic import EpisodicImages


def _collection(counts: list[int], size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel holds the image's id, and each id's class."""
    ids = torch.arange(sum(counts), dtype=torch.float64)
    images = ids.reshape(-1, 1, 1, 1).expand(-1, 1, size, size).clone()
    cls = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return images, cls


def _ids(x: torch.Tensor) -> torch.Tensor:
    return x[..., 0, 0, 0].round().long()


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 12), min_size=2, max_size=15), n_way=st.integers(1, 6),
       k=st.integers(1, 3), q=st.integers(1, 4), n_tasks=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_episode_invariants(counts: list[int], n_way: int, k: int, q: int, n_tasks: int, seed: int) -> None:
    if sum(c >= k + q for c in counts) < n_way:
        with pytest.raises(ValueError, match=f"need n_way={n_way}"):
            EpisodicImages(_collection(counts)[0], counts, n_way=n_way, k_shot=k, k_query=q)
        return
    images, cls = _collection(counts)
    tasks = EpisodicImages(images, counts, n_way=n_way, k_shot=k, k_query=q)
    b = tasks.sample(n_tasks, torch.Generator().manual_seed(seed), torch.float64)
    assert b.support_x.shape == (n_tasks, n_way * k, 1, 2, 2) and b.query_x.shape == (n_tasks, n_way * q, 1, 2, 2)
    assert b.support_y.dtype == torch.int64 and b.support_y.shape == (n_tasks, n_way * k)
    for t in range(n_tasks):
        s_ids, q_ids = _ids(b.support_x[t]), _ids(b.query_x[t])
        # No image twice, and none in both support and query.
        all_ids = torch.cat([s_ids, q_ids])
        assert all_ids.unique().numel() == all_ids.numel()
        # Labels cover 0..N-1 with exactly k support and q query examples each.
        assert torch.equal(torch.bincount(b.support_y[t], minlength=n_way), torch.full((n_way,), k))
        assert torch.equal(torch.bincount(b.query_y[t], minlength=n_way), torch.full((n_way,), q))
        # One class per label, N distinct classes, support and query of a label share the class.
        label_class = {}
        for ids, ys in ((s_ids, b.support_y[t]), (q_ids, b.query_y[t])):
            for i, y in zip(ids.tolist(), ys.tolist()):
                assert label_class.setdefault(y, int(cls[i])) == int(cls[i])
        assert len(set(label_class.values())) == n_way
    again = tasks.sample(n_tasks, torch.Generator().manual_seed(seed), torch.float64)
    for name in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(b, name), getattr(again, name))


def test_label_order_is_random_per_task() -> None:
    images, cls = _collection([5] * 10)
    tasks = EpisodicImages(images, [5] * 10, n_way=5, k_shot=1, k_query=1)
    b = tasks.sample(50, torch.Generator().manual_seed(0), torch.float64)
    classes = cls[_ids(b.support_x)]              # [tasks, N], label j at position j
    increasing = (classes[:, 1:] > classes[:, :-1]).all(dim=1)
    assert not increasing.all()                   # labels are not assigned in class order
    first = classes[:, 0].unique().numel()
    assert first >= 5                             # label 0 goes to many different classes


def test_different_seeds_give_different_tasks() -> None:
    images, _ = _collection([4] * 20)
    tasks = EpisodicImages(images, [4] * 20, n_way=5, k_shot=1, k_query=2)
    a = tasks.sample(4, torch.Generator().manual_seed(0))
    b = tasks.sample(4, torch.Generator().manual_seed(1))
    assert not torch.equal(a.support_x, b.support_x)


def test_dense_uint8_input_scales_to_unit_interval() -> None:
    dense = torch.full((6, 4, 1, 3, 3), 255, dtype=torch.uint8)
    b = EpisodicImages(dense, n_way=3, k_shot=1, k_query=1).sample(2, torch.Generator().manual_seed(0))
    assert b.support_x.dtype == torch.float32 and torch.all(b.support_x == 1.0)


def test_rotations_are_new_classes_with_rotated_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, 4, 1, 5, 5, generator=g, dtype=torch.float64)  # 3 classes, asymmetric images
    tasks = EpisodicImages(base, n_way=12, k_shot=2, k_query=2, rotations=(0, 1, 2, 3))
    assert tasks.n_classes == 12
    b = tasks.sample(3, g, torch.float64)
    flat = base.reshape(12, 1, 5, 5)
    for t in range(3):
        seen = set()
        for x, y in zip(torch.cat([b.support_x[t], b.query_x[t]]), torch.cat([b.support_y[t], b.query_y[t]])):
            match = [(i // 4, r) for i in range(12) for r in range(4)
                     if torch.equal(torch.rot90(flat[i], r, dims=(-2, -1)), x)]
            assert len(match) == 1
            seen.add((int(y), match[0]))
        # Each label is one (class, rotation) pair; all 12 pairs appear in a 12-way task.
        assert len({lab for lab, _ in seen}) == 12 and len({cr for _, cr in seen}) == 12


def test_within_group_draws_all_classes_from_one_group() -> None:
    counts = [3] * 12
    groups = [0] * 4 + [1] * 5 + [2] * 3
    images, cls = _collection(counts)
    tasks = EpisodicImages(images, counts, n_way=4, k_shot=1, k_query=1, groups=groups, within_group=True)
    b = tasks.sample(30, torch.Generator().manual_seed(0), torch.float64)
    g = torch.tensor(groups)[cls[_ids(b.support_x)]]
    assert torch.all(g == g[:, :1])
    assert set(g[:, 0].tolist()) == {0, 1}      # group 2 has only 3 classes, too few for 4-way


def test_errors_name_the_bad_value() -> None:
    images, _ = _collection([3] * 4)
    with pytest.raises(ValueError, match="n_way must be an integer >= 1, got 0"):
        EpisodicImages(images, [3] * 4, n_way=0)
    with pytest.raises(ValueError, match="counts sum to 11"):
        EpisodicImages(images, [3, 3, 3, 2], n_way=2, k_shot=1, k_query=1)
    tasks = EpisodicImages(images, [3] * 4, n_way=2, k_shot=1, k_query=1)
    with pytest.raises(TypeError, match="explicit torch.Generator"):
        tasks.sample(2, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="within_group=True needs groups"):
        EpisodicImages(images, [3] * 4, n_way=2, k_shot=1, k_query=1, within_group=True)
