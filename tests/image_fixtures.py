"""Tiny miniImageNet and CUB folders in each on-disk layout the loaders accept (PIL-written images).

Class ``c`` (a global index over every split) is a solid colour ``colour(c)``, so a test can check
that each image landed in its class. Images are small and of varying sizes (the loaders resize).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["colour", "MINI_CLASSES", "mini_csv", "mini_pickle", "mini_folders", "cub"]

# 6 training, 5 validation and 5 test classes: enough for the presets' 5-way tasks.
MINI_CLASSES = {"train": [f"n{i:02d}" for i in range(1, 7)], "val": [f"n{i:02d}" for i in range(7, 12)],
                "test": [f"n{i:02d}" for i in range(12, 17)]}


def colour(c: int) -> tuple[int, int, int]:
    """A distinct, saturated colour per class index (well apart after JPEG compression)."""
    return (40 + 70 * (c % 4), 40 + 70 * ((c // 4) % 4), 40 + 100 * ((c // 16) % 3))


def _cid(name: str) -> int:
    return int(name[1:]) - 1


def _jpeg(path: Path, rgb: tuple[int, int, int], size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, quality=95)


def mini_csv(root: Path, per_class: int = 4) -> Path:
    """Ravi & Larochelle's layout: ``root/miniimagenet/{split}.csv`` (filename,label) + ``images/``."""
    folder = root / "miniimagenet"
    for split, names in MINI_CLASSES.items():
        rows = []
        for i in range(per_class):            # interleaved rows: the loader must group by class
            for name in names:
                fname = f"{name}{i:08d}.jpg"
                _jpeg(folder / "images" / fname, colour(_cid(name)), (30 + i, 26))
                rows.append(f"{fname},{name}")
        (folder / f"{split}.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")
    return folder


def mini_pickle(root: Path, per_class: int = 4) -> Path:
    """The pickled caches ``mini-imagenet-cache-{split}.pkl`` (image_data [N, 84, 84, 3], class_dict)."""
    folder = root / "miniimagenet"
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in MINI_CLASSES.items():
        n = per_class * len(names)
        data = np.zeros((n, 84, 84, 3), np.uint8)
        class_dict: dict[str, list[int]] = {name: [] for name in names}
        for i in range(n):
            name = names[i % len(names)]
            data[i] = colour(_cid(name))
            class_dict[name].append(i)
        with open(folder / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": data, "class_dict": class_dict}, f)
    return folder


def mini_folders(root: Path, per_class: int = 4) -> Path:
    """MAML's ``proc_images.py`` output: ``root/miniimagenet/{train,val,test}/<class>/*.jpg`` (84x84)."""
    folder = root / "miniimagenet"
    for split, names in MINI_CLASSES.items():
        for name in names:
            for i in range(per_class):
                _jpeg(folder / split / name / f"{name}{i:08d}.jpg", colour(_cid(name)), (84, 84))
    return folder


def cub(root: Path, n_classes: int = 20, nested: bool = True) -> list[str]:
    """``root/cub/CUB_200_2011/images/<NNN.Name>/*.jpg`` (or ``root/cub/images/...``), 3-5 images a class."""
    names = [f"{i:03d}.Bird_{i}" for i in range(1, n_classes + 1)]
    base = root / "cub" / ("CUB_200_2011" if nested else "") / "images"
    for c, name in enumerate(names):
        for j in range(3 + c % 3):
            _jpeg(base / name / f"img_{j}.jpg", colour(c), (40 + 7 * j, 33))
    return names
