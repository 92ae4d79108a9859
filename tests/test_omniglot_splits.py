"""Omniglot splits from config: the seeded shuffle ("random") and the official background/evaluation
split, plus within-alphabet test tasks, on the real shared archives."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metagrad.experiments.config import Config
from metagrad.experiments.presets import get_preset
from metagrad.experiments.building import build
from metagrad.tasks import omniglot as om

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "omniglot").is_dir(), reason="no ../shared/data/omniglot")


@pytest.fixture(autouse=True)
def _shared_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAGRAD_DATA", str(SHARED))


def test_official_split_counts_and_disjointness() -> None:
    s = om.omniglot_split(split_by="official")
    train, val, test = (set(s[k].tolist()) for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (864, 100, 659)
    assert train | val == set(range(964)) and test == set(range(964, 1623))      # background / evaluation
    assert not (train & val) and not (train & test) and not (val & test)
    assert torch.equal(om.omniglot_split(split_by="official")["val"], s["val"])   # seeded, fixed
    assert not torch.equal(om.omniglot_split(split_by="official", seed=1)["val"], s["val"])
    # The random split is today's: 1100 + 100 + 423 over all 1623 characters.
    r = om.omniglot_split()
    assert [len(r[k]) for k in ("train", "val", "test")] == [1100, 100, 423]
    assert set(r["test"].tolist()) & set(range(964)), "the random split mixes background characters into the test"


def test_part_array_matches_the_archives() -> None:
    _, _, part = om.load_omniglot(parts=True)
    assert int((part == 0).sum()) == 964 and int((part == 1).sum()) == 659
    assert torch.equal(part, part.sort().values)         # background characters first


def test_no_evaluation_character_reaches_training_or_validation() -> None:
    images, _, part = om.load_omniglot(parts=True)
    train, val, test = (om.Omniglot(s, split_by="official") for s in ("train", "val", "test"))
    assert (train.n_classes, val.n_classes, test.n_classes) == (4 * 864, 100, 659)
    assert bool((part[train.class_ids] == 0).all() and (part[val.class_ids] == 0).all())
    assert bool((part[test.class_ids] == 1).all())
    # By content, not only by index: no training drawing equals any evaluation drawing.
    def keys(x: torch.Tensor) -> set[bytes]:
        return {bytes(a) for a in x.reshape(x.shape[0], -1).numpy()}
    evaluation = keys(images[part == 1].reshape(-1, 28 * 28))
    assert not keys(train.images.reshape(-1, 28 * 28)) & evaluation
    assert keys(test.images.reshape(-1, 28 * 28)) <= evaluation
    # Sampled training tasks only use background characters (class id // 4 is the base class).
    b = train.sample(64, torch.Generator().manual_seed(0))
    base = train.class_ids[b.task_params.long() // 4]
    assert int(base.max()) < 964


def test_within_alphabet_tasks_come_from_one_alphabet() -> None:
    _, groups = om.load_omniglot()
    test = om.Omniglot("test", n_way=20, split_by="official", within_alphabet=True)
    b = test.sample(50, torch.Generator().manual_seed(0))
    alpha = groups[test.class_ids[b.task_params.long()]]              # [50, 20]
    assert bool((alpha == alpha[:, :1]).all())
    assert set(alpha[:, 0].tolist()) <= set(range(30, 50))             # evaluation alphabets
    assert len(set(alpha[:, 0].tolist())) > 3                          # many alphabets over the draw
    # True restricts test and validation tasks; training tasks stay across alphabets unless "all".
    train = om.Omniglot("train", n_way=5, split_by="official", within_alphabet=True)
    tb = train.sample(20, torch.Generator().manual_seed(0))
    a = groups[train.class_ids[tb.task_params.long() // 4]]
    assert not bool((a == a[:, :1]).all())
    train_all = om.Omniglot("train", n_way=5, split_by="official", within_alphabet="all")
    a = groups[train_all.class_ids[train_all.sample(20, torch.Generator().manual_seed(0)).task_params.long() // 4]]
    assert bool((a == a[:, :1]).all())
    # Without it a 5-way test task almost never stays in one alphabet.
    plain = om.Omniglot("test", n_way=5, split_by="official")
    a = groups[plain.class_ids[plain.sample(20, torch.Generator().manual_seed(0)).task_params.long()]]
    assert not bool((a == a[:, :1]).all())


def test_splits_from_config_keys() -> None:
    cfg = get_preset("omniglot-5w1s-fomaml").override(["task.split_by=official", "task.within_alphabet=true"])
    _, test = build(cfg, "test")
    assert test.split_by == "official" and test.within_group and int(test.class_ids.min()) == 964
    _, train = build(cfg, "train")
    assert not train.within_group and int(train.class_ids.max()) < 964
    with pytest.raises(ValueError, match="unknown split_by 'lake'.*'official'"):
        build(get_preset("omniglot-5w1s-fomaml").override(["task.split_by=lake"]), "test")
    with pytest.raises(ValueError, match="n_train=1000 does not apply to split_by='official'"):
        build(get_preset("omniglot-5w1s-fomaml").override(["task.split_by=official", "task.n_train=1000"]), "test")
    with pytest.raises(ValueError, match="within_alphabet must be false, true"):
        build(get_preset("omniglot-5w1s-fomaml").override(["task.within_alphabet=yes"]), "test")
    assert isinstance(Config.from_dict(cfg.to_dict()), Config)
