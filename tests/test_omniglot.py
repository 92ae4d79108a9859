"""Omniglot on the real shared archives (cached after the first load), plus the PNG release layout."""
from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import metagrad as mg
from metagrad.experiments.registry import MODELS, TASKS, build
from metagrad.models.conv4 import Conv4
from metagrad.tasks import omniglot as om
from metagrad.tasks.datasets import data_root

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "omniglot").is_dir(), reason="no ../shared/data/omniglot")


@pytest.fixture(autouse=True)
def _shared_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAGRAD_DATA", str(SHARED))


def test_all_1623_characters_load_as_28x28_ink_images() -> None:
    images, groups = om.load_omniglot()
    assert images.shape == (1623, 20, 1, 28, 28) and images.dtype == torch.uint8
    ink = images.float().mean().item() / 255
    assert 0.03 < ink < 0.2          # ink is 1.0 (about 8% of the 105x105 pixels), paper 0.0
    assert images[:, :, :, 0, :].float().mean() < 0.01 * 255   # the border is paper
    assert groups.unique().numel() == 50 and int(groups.min()) == 0
    assert int((groups == 0).sum()) == 26                      # Arcadian: characters 1..26


def test_second_load_comes_from_the_cache_quickly() -> None:
    om.load_omniglot()
    om._load.cache_clear()           # forget the in-process copy; the file cache remains
    t = time.perf_counter()
    images, _ = om.load_omniglot()
    assert time.perf_counter() - t < 5.0
    assert images.shape[0] == 1623


def test_standard_split_is_disjoint_and_fixed() -> None:
    s = om.omniglot_split()
    assert [len(s[k]) for k in ("train", "val", "test")] == [1100, 100, 423]
    union = torch.cat([s["train"], s["val"], s["test"]])
    assert union.unique().numel() == 1623
    assert torch.equal(om.omniglot_split()["test"], s["test"])
    assert not torch.equal(om.omniglot_split(seed=1)["test"], s["test"])
    with pytest.raises(ValueError, match="n_val=1200"):
        om.omniglot_split(n_val=1200)


def test_rotations_create_classes_only_on_the_training_side() -> None:
    train, val, test = (om.Omniglot(s, n_way=5, k_shot=1, k_query=1) for s in ("train", "val", "test"))
    assert train.n_classes == 4 * 1100 and train.rotations == (0, 1, 2, 3)
    assert val.n_classes == 100 and test.n_classes == 423 and test.rotations == (0,)
    assert set(train.class_ids.tolist()).isdisjoint(test.class_ids.tolist())
    assert set(val.class_ids.tolist()).isdisjoint(test.class_ids.tolist() + train.class_ids.tolist())
    # Every test-task image is an unrotated drawing of a test character.
    images, _ = om.load_omniglot()
    b = test.sample(4, torch.Generator().manual_seed(0))
    ids = b.task_params.long()
    for t in range(4):
        for j in range(5):
            drawings = images[test.class_ids[ids[t, j]]].float() / 255
            x = b.support_x[t, j]
            assert any(torch.equal(x, d) for d in drawings)
    # Training tasks do contain rotated characters (class id % 4 is the quarter turn).
    tb = train.sample(32, torch.Generator().manual_seed(0))
    assert set((tb.task_params.long() % 4).flatten().tolist()) == {0, 1, 2, 3}


def test_registry_builds_omniglot_and_conv4() -> None:
    task = build("task", TASKS, "omniglot", {"n_way": 20, "k_shot": 1, "k_query": 1}, split="test")
    model = build("model", MODELS, "conv4", {}, task)
    assert isinstance(model, Conv4) and model.pooling == "stride" and model.head.out_features == 20
    assert task.loss == "cross_entropy" and (task.channels, task.image_size) == (1, 28)
    with pytest.raises(ValueError, match="unknown key task.ways"):
        build("task", TASKS, "omniglot", {"ways": 5}, split="test")


def test_missing_root_names_the_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no data found at {tmp_path / 'omniglot'}.*images_background.npz"):
        om.load_omniglot(root=tmp_path)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        om.Omniglot("dev")


def test_data_root_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert data_root(tmp_path) == tmp_path
    monkeypatch.setenv("METAGRAD_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("METAGRAD_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="set METAGRAD_DATA"):
        data_root()


def _release(folder: Path, zipped: bool) -> None:
    """A miniature official release: 3 characters (2 background, 1 evaluation) x 20 drawings."""
    g = np.random.default_rng(0)
    layout = {"images_background": [("Alpha", 1), ("Alpha", 2)], "images_evaluation": [("Beta", 3)]}
    for part, chars in layout.items():
        files = {}
        for alpha, c in chars:
            for d in range(1, 21):
                ink = np.zeros((21, 21), bool)
                ink[g.integers(6, 10):g.integers(11, 15), g.integers(6, 10):g.integers(11, 15)] = True
                im = Image.fromarray(~ink).convert("1")   # paper is white (True), ink black
                files[f"{part}/{alpha}/character{c:02d}/{c:04d}_{d:02d}.png"] = im
        if zipped:
            with zipfile.ZipFile(folder / f"{part}.zip", "w") as z:
                for name, im in files.items():
                    p = folder / "tmp.png"
                    im.save(p)
                    z.write(p, name)
                    p.unlink()
        else:
            for name, im in files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                im.save(folder / name)


def test_official_png_layout_zipped_and_unzipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    out = []
    for zipped in (True, False):
        root = tmp_path / ("zip" if zipped else "dir")
        (root / "omniglot").mkdir(parents=True)
        _release(root / "omniglot", zipped)
        images, groups = om.load_omniglot(root=root, image_size=7)
        assert images.shape == (3, 20, 1, 7, 7) and groups.tolist() == [0, 0, 1]
        assert om.load_omniglot(root=root, image_size=7, parts=True)[2].tolist() == [0, 0, 1]   # background, evaluation
        assert images.max() == 255 and images[:, :, :, 0, :].max() == 0   # ink 1.0 inside, paper at the border
        out.append(images)
    assert torch.equal(out[0], out[1])
    assert list((tmp_path / "cache").glob("omniglot-7-*.npz"))


def test_sha256_mismatch_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "omniglot"
    folder.mkdir()
    _release(folder, zipped=True)
    good = hashlib.sha256((folder / "images_evaluation.zip").read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  images_background.zip\n{good}  images_evaluation.zip\n")
    with pytest.raises(ValueError, match="images_background.zip has sha256"):
        om.load_omniglot(root=tmp_path, image_size=7)


def test_shear_and_scale_transform_the_originals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dot = torch.zeros(1, 1, 81, 81)
    dot[..., 30:51, 30:51] = 1.0
    # Plain floats for approx: pytest >= 9.2 iterates the expected value when rel is given, and a
    # 0-d tensor cannot be iterated.
    mass = float(dot.sum())
    assert float(om.affine_originals(dot, scale=2.0).sum()) == pytest.approx(4 * mass, rel=0.05)
    assert float(om.affine_originals(dot, scale=0.5).sum()) == pytest.approx(mass / 4, rel=0.15)
    sheared = om.affine_originals(dot, shear=0.5)
    assert float(sheared.sum()) == pytest.approx(mass, rel=0.05) and not torch.allclose(sheared, dot)
    with pytest.raises(ValueError, match="scale must be positive, got -1"):
        om.affine_originals(dot, scale=-1)
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "omniglot").mkdir()
    _release(tmp_path / "omniglot", zipped=True)
    plain = om.load_omniglot(root=tmp_path, image_size=7)[0].float()
    small = om.load_omniglot(root=tmp_path, image_size=7, scale=0.5)[0].float()
    assert small.sum() < 0.5 * plain.sum()


def test_meta_loss_falls_on_real_omniglot_tasks() -> None:
    # A few first-order meta-steps on a fixed batch of real training tasks (the full
    # accuracy claim is the job of the presets, not of a unit test).
    torch.manual_seed(0)
    batch = om.Omniglot("train", k_query=2).sample(8, torch.Generator().manual_seed(0))
    algo = mg.MAML(Conv4(hidden=8), inner_lr=0.4, mode="first_order", loss="cross_entropy")
    opt = torch.optim.Adam(algo.parameters(), 1e-2)
    losses = []
    for _ in range(20):
        loss = algo.meta_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("fast,base,overrides", [
    ("omniglot-5w1s-fomaml-90min", "omniglot-5w1s-fomaml", ["outer.iterations=30000", "outer.schedule=cosine"]),
    ("omniglot-20w1s-fomaml-90min", "omniglot-20w1s-fomaml",
     ["outer.iterations=10000", "outer.schedule=cosine", "inner.steps=2", "inner.lr=0.2"]),
])
def test_90min_presets_are_the_measured_overrides(fast: str, base: str, overrides: list[str]) -> None:
    from metagrad.experiments.presets import get_preset
    a = get_preset(fast).to_dict()
    b = get_preset(base).override(overrides).to_dict()
    assert a.pop("name") == fast and b.pop("name") == base
    assert a == b
