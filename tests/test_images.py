"""miniImageNet and CUB loaders on small generated fixtures in the real on-disk layouts."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metagrad.cli import main as cli_main
from metagrad.tasks import images as im

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
           (128, 128, 128), (255, 128, 0)]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("METAGRAD_DATA", raising=False)


def _jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def _mini_csv(root: Path, per_class: int = 4) -> None:
    """``root/miniimagenet/{train,val,test}.csv`` + ``images/``; class c is solid colour c."""
    folder = root / "miniimagenet"
    classes = {"train": ["n01", "n02", "n03", "n04"], "val": ["n05", "n06"], "test": ["n07", "n08"]}
    for split, names in classes.items():
        rows = []
        for i in range(per_class):            # interleaved rows: the loader must group by class
            for name in names:
                fname = f"{name}{i:08d}.jpg"
                _jpeg(folder / "images" / fname, COLOURS[int(name[1:]) - 1], (30 + i, 26))
                rows.append(f"{fname},{name}")
        (folder / f"{split}.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")


def _mini_pickle(root: Path) -> None:
    folder = root / "miniimagenet"
    folder.mkdir(parents=True)
    for split, names in {"train": ["a", "b", "c"], "val": ["d", "e"], "test": ["f", "g"]}.items():
        n = 3 * len(names)
        data = np.zeros((n, 84, 84, 3), np.uint8)
        class_dict = {name: [] for name in names}
        for i in range(n):
            c = i % len(names)
            data[i] = COLOURS[c]
            class_dict[names[c]].append(i)
        with open(folder / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": data, "class_dict": class_dict}, f)


def _cub(root: Path) -> list[str]:
    names = [f"{i:03d}.Bird_{chr(65 + i)}" for i in range(1, 9)]
    for c, name in enumerate(names):
        for j in range(3 + c % 3):
            _jpeg(root / "cub" / "CUB_200_2011" / "images" / name / f"img_{j}.jpg", COLOURS[c], (40 + 7 * j, 33))
    return names


def _class_colours(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(-1, -2))                     # [..., 3] mean colour per image


def test_miniimagenet_csv_layout(tmp_path: Path) -> None:
    _mini_csv(tmp_path)
    images, counts, names = im.load_miniimagenet("train", root=tmp_path)
    assert images.shape == (16, 3, 84, 84) and images.dtype == torch.uint8
    assert counts.tolist() == [4, 4, 4, 4] and names == ["n01", "n02", "n03", "n04"]
    colours = _class_colours(images.float() / 255).reshape(4, 4, 3)
    for c in range(4):                              # grouped by class, in class order
        expected = torch.tensor(COLOURS[c], dtype=torch.float32) / 255
        assert torch.allclose(colours[c], expected.expand(4, 3), atol=0.03)
    tasks = im.MiniImageNet("test", n_way=2, k_shot=1, k_query=3, root=tmp_path)
    b = tasks.sample(3, torch.Generator().manual_seed(0))
    assert b.support_x.shape == (3, 2, 3, 84, 84) and b.query_x.shape == (3, 6, 3, 84, 84)
    # Support and query images of one label share their class colour.
    s, q = _class_colours(b.support_x), _class_colours(b.query_x).reshape(3, 2, 3, 3)
    assert torch.allclose(q, s.unsqueeze(2).expand_as(q), atol=0.03)


def test_miniimagenet_pickle_layout(tmp_path: Path) -> None:
    _mini_pickle(tmp_path)
    images, counts, names = im.load_miniimagenet("train", root=tmp_path / "miniimagenet")
    assert images.shape == (9, 3, 84, 84) and counts.tolist() == [3, 3, 3] and names == ["a", "b", "c"]
    colours = _class_colours(images.float() / 255).reshape(3, 3, 3)
    for c in range(3):
        assert torch.allclose(colours[c], (torch.tensor(COLOURS[c]) / 255.0).float().expand(3, 3), atol=1e-3)
    assert im.MiniImageNet("val", n_way=2, k_shot=1, k_query=2, root=tmp_path).n_classes == 2


def test_miniimagenet_errors_name_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no data found at {tmp_path / 'miniimagenet'}.*train.csv"):
        im.load_miniimagenet("train", root=tmp_path)
    _mini_csv(tmp_path)
    (tmp_path / "miniimagenet" / "images" / "n0100000000.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="n0100000000.jpg"):
        im.load_miniimagenet("train", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        im.load_miniimagenet("dev", root=tmp_path)


def test_cub_chen_split_and_alternatives(tmp_path: Path) -> None:
    names = _cub(tmp_path)
    s = im.cub_split(names)
    assert s["train"] == names[0::2] and s["val"] == names[1::4] and s["test"] == names[3::4]
    seeded = im.cub_split(names, split_seed=3)
    assert sorted(sum(seeded.values(), [])) == names and [len(seeded[k]) for k in ("train", "val", "test")] == [4, 2, 2]
    assert im.cub_split(names, split_seed=3) == seeded
    images, counts, got = im.load_cub("test", root=tmp_path)
    assert got == [names[3], names[7]] and counts.tolist() == [3 + 3 % 3, 3 + 7 % 3]
    assert images.shape == (int(counts.sum()), 3, 84, 84)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": names[:4], "val": names[4:6], "test": names[6:]}))
    tasks = im.CUB("train", n_way=3, k_shot=1, k_query=1, root=tmp_path, split_file=split_file)
    assert tasks.class_names == names[:4]
    b = tasks.sample(2, torch.Generator().manual_seed(0))
    s_col, q_col = _class_colours(b.support_x), _class_colours(b.query_x)
    assert torch.allclose(s_col, q_col, atol=0.03)
    split_file.write_text(json.dumps({"train": ["999.Dodo"], "val": [], "test": []}))
    with pytest.raises(ValueError, match="class '999.Dodo'"):
        im.load_cub("train", root=tmp_path, split_file=split_file)


def test_cub_missing_folder_says_what_layout_is_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CUB_200_2011/images/<class folder>/\*\.jpg"):
        im.load_cub("train", root=tmp_path)


def test_metagrad_train_runs_end_to_end_on_a_fixture_folder(tmp_path: Path) -> None:
    _mini_csv(tmp_path)
    out = tmp_path / "run"
    config = {"name": "mini-fixture",
              "task": {"name": "miniimagenet", "n_way": 2, "k_shot": 1, "k_query": 1, "root": str(tmp_path),
                       "image_size": 20},
              "model": {"name": "conv4", "hidden": 4},
              "inner": {"learner": "sgd", "lr": 0.4, "steps": 1, "mode": "second_order"},
              "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 2, "iterations": 3},
              "eval": {"tasks": 4}, "log_every": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = cli_main(["train", str(tmp_path / "config.json"), "--out", str(out), "--no-progress",
                     "--set", "outer.iterations=2"])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["metric"] == "accuracy" and result["n_tasks"] == 4 and 0.0 <= result["mean"] <= 1.0
    assert (out / "checkpoint.pt").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) == 2
