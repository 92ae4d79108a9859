"""miniImageNet and CUB loaders on small generated fixtures in every accepted on-disk layout
(tests/image_fixtures.py), their one-line errors, and the presets run end to end from the CLI."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from image_fixtures import MINI_CLASSES, colour, cub, mini_csv, mini_folders, mini_pickle
from metagrad.cli import main as cli_main
from metagrad.errors import InputError, MissingFileError
from metagrad.tasks import images as im

LAYOUTS = {"csv": mini_csv, "pickle": mini_pickle, "folders": mini_folders}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("METAGRAD_DATA", raising=False)


def _mean_colour(x: torch.Tensor) -> torch.Tensor:
    return x.float().mean(dim=(-1, -2))                 # [..., 3] mean colour per image


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_miniimagenet_layout_loads_every_split_grouped_by_class(tmp_path: Path, layout: str) -> None:
    LAYOUTS[layout](tmp_path)
    for split, names in MINI_CLASSES.items():
        images, counts, got = im.load_miniimagenet(split, root=tmp_path)
        assert got == names and counts.tolist() == [4] * len(names)
        assert images.shape == (4 * len(names), 3, 84, 84) and images.dtype == torch.uint8
        cols = _mean_colour(images).reshape(len(names), 4, 3)
        for j, name in enumerate(names):                # every image in its class's block, class order
            want = torch.tensor(colour(int(name[1:]) - 1), dtype=torch.float32)
            assert torch.allclose(cols[j], want.expand(4, 3), atol=6.0), (layout, split, name)
    # root may also be the miniimagenet folder itself
    assert im.load_miniimagenet("val", root=tmp_path / "miniimagenet")[2] == MINI_CLASSES["val"]
    tasks = im.MiniImageNet("test", n_way=5, k_shot=1, k_query=3, root=tmp_path, image_size=20)
    b = tasks.sample(3, torch.Generator().manual_seed(0))
    assert b.support_x.shape == (3, 5, 3, 20, 20) and b.query_x.shape == (3, 15, 3, 20, 20)
    s, q = _mean_colour(b.support_x), _mean_colour(b.query_x).reshape(3, 5, 3, 3)
    assert torch.allclose(q, s.unsqueeze(2).expand_as(q), atol=0.03)   # a label's images share a colour


def test_the_layouts_agree(tmp_path: Path) -> None:
    got = {}
    for layout, write in LAYOUTS.items():
        write(tmp_path / layout)
        images, counts, names = im.load_miniimagenet("train", root=tmp_path / layout, image_size=12)
        got[layout] = (_mean_colour(images), counts.tolist(), names)
    ref = got["pickle"]
    for layout in ("csv", "folders"):
        assert got[layout][1:] == ref[1:]
        assert torch.allclose(got[layout][0], ref[0], atol=6.0)


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg
    return msg


def test_missing_or_malformed_miniimagenet_names_the_layouts(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=f"no data found at {tmp_path / 'miniimagenet'}.*train.csv.*"
                                               r"mini-imagenet-cache.*proc_images") as e:
        im.load_miniimagenet("train", root=tmp_path)
    _one_line(e.value)
    folder = mini_folders(tmp_path / "a")
    for c in (folder / "val").iterdir():             # val/ with loose files instead of class folders
        for f in c.iterdir():
            f.rename(folder / "val" / f.name)
        c.rmdir()
    with pytest.raises(InputError, match=r"val has no class folders; expected .*proc_images") as e:
        im.load_miniimagenet("val", root=tmp_path / "a")
    _one_line(e.value)
    for f in (folder / "train" / "n01").iterdir():
        f.unlink()
    with pytest.raises(InputError, match="class folder .*n01 holds no .jpg"):
        im.load_miniimagenet("train", root=tmp_path / "a")
    with pytest.raises(MissingFileError, match="has no test.csv, mini-imagenet-cache-test.pkl or test/ folder"):
        (tmp_path / "b" / "miniimagenet").mkdir(parents=True)
        (tmp_path / "b" / "miniimagenet" / "train.csv").write_text("filename,label\n")
        im.load_miniimagenet("test", root=tmp_path / "b")
    with pytest.raises(InputError, match="train.csv needs a header 'filename,label' and rows"):
        im.load_miniimagenet("train", root=tmp_path / "b")
    folder = mini_csv(tmp_path / "c")
    (folder / "images" / "n0100000000.jpg").unlink()
    with pytest.raises(MissingFileError, match="n0100000000.jpg"):
        im.load_miniimagenet("train", root=tmp_path / "c")
    (tmp_path / "d" / "miniimagenet").mkdir(parents=True)
    with open(tmp_path / "d" / "miniimagenet" / "mini-imagenet-cache-train.pkl", "wb") as f:
        pickle.dump({"data": [1, 2]}, f)
    with pytest.raises(InputError, match="must hold a dict with keys image_data and class_dict"):
        im.load_miniimagenet("train", root=tmp_path / "d")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        im.load_miniimagenet("dev", root=tmp_path / "c")


def test_cub_004_split_is_seeded_70_15_15(tmp_path: Path) -> None:
    names = cub(tmp_path)
    s = im.cub_split(names)
    assert [len(s[k]) for k in ("train", "val", "test")] == [14, 3, 3]
    assert sorted(s["train"] + s["val"] + s["test"]) == names
    assert im.cub_split(names) == s == im.cub_split(names, "004", 0)
    assert im.cub_split(names, split_seed=1) != s
    full = [f"{i:03d}.X" for i in range(1, 201)]
    assert [len(v) for v in im.cub_split(full).values()] == [140, 30, 30]      # the 200 CUB classes
    chen = im.cub_split(names, "chen")
    assert chen["train"] == names[0::2] and chen["val"] == names[1::4] and chen["test"] == names[3::4]
    with pytest.raises(InputError, match="split_seed=3 does not apply to split_by='chen'"):
        im.cub_split(names, "chen", 3)
    with pytest.raises(InputError, match="unknown split_by 'ravi'"):
        im.cub_split(names, "ravi")
    images, counts, got = im.load_cub("test", root=tmp_path)
    assert got == sorted(s["test"]) and images.shape == (int(counts.sum()), 3, 84, 84)
    for j, name in enumerate(got):                     # each class's images carry its colour
        start = int(counts[:j].sum())
        want = torch.tensor(colour(names.index(name)), dtype=torch.float32)
        assert torch.allclose(_mean_colour(images[start:start + int(counts[j])]), want.expand(int(counts[j]), 3), atol=6.0)
    # the layout variants: cub/images/..., and task.root pointing at CUB_200_2011 itself
    cub(tmp_path / "flat", nested=False)
    assert im.load_cub("val", root=tmp_path / "flat")[2] == sorted(s["val"])
    assert im.load_cub("val", root=tmp_path / "cub" / "CUB_200_2011")[2] == sorted(s["val"])
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": names[:4], "val": names[4:6], "test": names[6:]}))
    tasks = im.CUB("train", n_way=3, k_shot=1, k_query=1, root=tmp_path, split_file=split_file)
    assert tasks.class_names == names[:4]
    b = tasks.sample(2, torch.Generator().manual_seed(0))
    assert torch.allclose(_mean_colour(b.support_x), _mean_colour(b.query_x), atol=0.03)
    split_file.write_text(json.dumps({"train": ["999.Dodo"], "val": [], "test": []}))
    with pytest.raises(ValueError, match="class '999.Dodo'"):
        im.load_cub("train", root=tmp_path, split_file=split_file)


def test_missing_or_malformed_cub_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"CUB_200_2011/images/<class folder>/\*\.jpg") as e:
        im.load_cub("train", root=tmp_path)
    _one_line(e.value)
    (tmp_path / "cub" / "CUB_200_2011" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match=r"has no class folders; expected CUB_200_2011/images/<class folder>") as e:
        im.load_cub("train", root=tmp_path)
    _one_line(e.value)
    names = cub(tmp_path)
    for f in (tmp_path / "cub" / "CUB_200_2011" / "images" / names[0]).iterdir():
        f.unlink()
    split = "train" if names[0] in im.cub_split(names)["train"] else "val" if names[0] in im.cub_split(names)["val"] else "test"
    with pytest.raises(InputError, match=f"{names[0]} holds no .jpg"):
        im.load_cub(split, root=tmp_path)


TINY = ["--set", "outer.iterations=2", "--set", "task.k_query=2", "--set", "task.image_size=16",
        "--set", "model.hidden=4", "--set", "eval.tasks=4", "--set", "eval.every=1", "--set", "eval.val_tasks=2",
        "--set", "eval.steps=2", "--set", "inner.steps=1", "--no-progress"]


@pytest.mark.parametrize("preset,write", [("miniimagenet-5w1s-maml", mini_folders), ("miniimagenet-5w5s-fomaml", mini_pickle),
                                          ("cub-5w1s-maml", lambda p: cub(p, 34))])   # 24/5/5 classes
def test_presets_run_end_to_end_on_a_fixture_folder(tmp_path: Path, preset: str, write) -> None:
    write(tmp_path / "data")
    extra = ["--set", "task.k_shot=1"] if "5w5s" in preset else []   # 4 images a class: 1 + 2 fit, 5 + 2 do not
    out = tmp_path / "run"
    code = cli_main(["train", preset, "--set", f"task.root={tmp_path / 'data'}", "--out", str(out), *TINY, *extra])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["metric"] == "accuracy" and result["n_tasks"] == 4 and result["steps"] == 2
    assert 0.0 <= result["mean"] <= 1.0
    assert (out / "checkpoint.pt").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= 2


def test_cli_error_for_a_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli_main(["train", "miniimagenet-5w1s-maml", "--set", f"task.root={tmp_path}", "--out", str(tmp_path / "r"),
                     "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("metagrad: error: ")
    assert "train.csv/val.csv/test.csv" in err and "proc_images.py" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
