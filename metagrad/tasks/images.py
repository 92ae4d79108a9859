"""miniImageNet and CUB-200-2011 few-shot tasks from local folders (84x84 RGB).

* miniImageNet (Vinyals et al. 2016, split of Ravi & Larochelle 2017: 64/16/20 classes of 600
  images), in ``<root>/miniimagenet/`` as either the split CSVs ``train.csv``, ``val.csv``,
  ``test.csv`` (header ``filename,label``) beside an ``images/`` folder, or the widely used
  pickled caches ``mini-imagenet-cache-{train,val,test}.pkl`` (a dict with ``image_data``
  ``uint8 [N, 84, 84, 3]`` and ``class_dict`` ``{label: [indices]}``; unpickling runs code,
  so only load files you trust).
* CUB-200-2011 (Wah et al. 2011) in ``<root>/cub/CUB_200_2011/images/<class folder>/*.jpg``
  (or ``<root>/cub/images/...``). Split of Chen et al. 2019 (A Closer Look at Few-shot
  Classification): of the 200 class folders in sorted order, index ``i % 2 == 0`` is training
  (100), ``i % 4 == 1`` validation (50), ``i % 4 == 3`` test (50). ``split_seed`` draws a random
  100/50/50 split instead, and ``split_file`` (JSON ``{"train": [folders], "val": [...],
  "test": [...]}``) takes the user's.

Images are resized to ``image_size`` (bilinear, antialiased), kept as ``uint8`` and cached
(``metagrad.tasks.datasets``). Tasks are 5-way with 16 query images per class by default
(DESIGN.md section 4).
"""
from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, MissingFileError
from .datasets import cached_arrays, dataset_dir, resize_images
from .episodic import EpisodicImages

__all__ = ["MiniImageNet", "CUB", "load_miniimagenet", "load_cub", "cub_split", "read_images"]

_SPLITS = ("train", "val", "test")
_MINI_LAYOUT = ("train.csv/val.csv/test.csv (filename,label) with an images/ folder, or "
                "mini-imagenet-cache-{train,val,test}.pkl")
_CUB_LAYOUT = "CUB_200_2011/images/<class folder>/*.jpg"


def read_images(paths: Sequence[Path], size: int) -> np.ndarray:
    """Read image files as RGB and resize each to ``size x size``: ``uint8 [N, 3, size, size]``."""
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(f"read_images: {p} is not a readable image ({e}); replace or remove it") from None
        out[i] = resize_images(x.permute(2, 0, 1).unsqueeze(0).float() / 255.0, size)[0]
    return out


def _check_split(where: str, split: str) -> None:
    if split not in _SPLITS:
        raise InputError(f"{where}: unknown split {split!r}; choose 'train', 'val' or 'test'")


def _group_by_class(labels: Sequence[str], order: Optional[Sequence[str]] = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A stable sort of examples by class: (permutation, class names, counts)."""
    names = list(order) if order is not None else sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    ids = np.array([index[l] for l in labels], dtype=np.int64)
    perm = np.argsort(ids, kind="stable")
    return perm, names, np.bincount(ids, minlength=len(names))


def load_miniimagenet(split: str, root: Optional[str | os.PathLike] = None,
                      image_size: int = 84) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One split as ``uint8 [N, 3, S, S]`` sorted by class, images per class, class names."""
    _check_split("load_miniimagenet", split)
    markers = [f"{s}.csv" for s in _SPLITS] + [f"mini-imagenet-cache-{s}.pkl" for s in _SPLITS]
    folder = dataset_dir("miniimagenet", root, markers, _MINI_LAYOUT)
    pkl, csv_path = folder / f"mini-imagenet-cache-{split}.pkl", folder / f"{split}.csv"
    if csv_path.is_file():
        try:
            with open(csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
        except (csv.Error, UnicodeDecodeError) as e:
            raise InputError(f"load_miniimagenet: {csv_path} is not a readable CSV ({e})") from None
        if not rows or not {"filename", "label"} <= set(rows[0]) or any(
                not isinstance(r.get("filename"), str) or not isinstance(r.get("label"), str) for r in rows):
            raise InputError(f"load_miniimagenet: {csv_path} needs a header 'filename,label' and rows")
        paths = [folder / "images" / r["filename"] for r in rows]
        missing = next((p for p in paths if not p.is_file()), None)
        if missing is not None:
            raise MissingFileError(f"load_miniimagenet: {missing} (listed in {csv_path}) is missing; "
                                    f"expected {_MINI_LAYOUT}")
        perm, names, counts = _group_by_class([r["label"] for r in rows])

        def build() -> dict[str, np.ndarray]:
            return {"images": read_images([paths[i] for i in perm], image_size), "counts": counts}
        sources = [csv_path, folder / "images"]
    elif pkl.is_file():
        def build() -> dict[str, np.ndarray]:
            try:
                with open(pkl, "rb") as f:
                    data = pickle.load(f)
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                    IndexError, KeyError) as e:
                raise InputError(f"load_miniimagenet: {pkl} is damaged or not a miniImageNet cache "
                                 f"({type(e).__name__}: {e}); fetch it again") from None
            if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
                raise InputError(f"load_miniimagenet: {pkl} must hold a dict with keys image_data and class_dict")
            order = sorted(data["class_dict"])
            idx = np.concatenate([np.asarray(data["class_dict"][c], dtype=np.int64) for c in order])
            x = torch.from_numpy(np.ascontiguousarray(np.asarray(data["image_data"])[idx]))
            return {"images": resize_images(x.permute(0, 3, 1, 2).float() / 255.0, image_size),
                    "counts": np.array([len(data["class_dict"][c]) for c in order]),
                    "names": np.array(order, dtype=str)}
        names = None
        sources = [pkl]
    else:
        raise MissingFileError(f"load_miniimagenet: {folder} has neither {split}.csv nor "
                                f"mini-imagenet-cache-{split}.pkl; expected {_MINI_LAYOUT}")
    arrays = cached_arrays(folder, f"miniimagenet-{split}-{image_size}", sources, {"size": image_size}, build)
    if names is None:
        names = [str(n) for n in arrays["names"]]
    return torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["counts"]), names


def _cub_images_dir(root: Optional[str | os.PathLike]) -> Path:
    folder = dataset_dir("cub", root, ["CUB_200_2011", "images"], _CUB_LAYOUT)
    images = folder / "CUB_200_2011" / "images"
    images = images if images.is_dir() else folder / "images"
    if not images.is_dir():
        raise MissingFileError(f"load_cub: no images folder under {folder}; expected {_CUB_LAYOUT}")
    return images


def cub_split(classes: Sequence[str], split_seed: Optional[int] = None,
              split_file: Optional[str | os.PathLike] = None) -> dict[str, list[str]]:
    """Class folders of each split: Chen et al. 2019's rule, a seeded 100/50/50 draw, or a file."""
    classes = sorted(classes)
    if split_file is not None:
        try:
            spec = json.loads(Path(split_file).read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"cub_split: {split_file} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(spec, dict) or not set(_SPLITS) <= set(spec):
            raise InputError(f"cub_split: {split_file} must be JSON with keys train, val, test (lists of class folders)")
        unknown = next((c for s in _SPLITS for c in spec[s] if c not in classes), None)
        if unknown is not None:
            raise InputError(f"cub_split: class {unknown!r} in {split_file} is not a folder of the images directory")
        return {s: list(spec[s]) for s in _SPLITS}
    if split_seed is None:
        return {"train": [c for i, c in enumerate(classes) if i % 2 == 0],
                "val": [c for i, c in enumerate(classes) if i % 4 == 1],
                "test": [c for i, c in enumerate(classes) if i % 4 == 3]}
    perm = torch.randperm(len(classes), generator=torch.Generator().manual_seed(split_seed)).tolist()
    n_tr, n_va = len(classes) // 2, len(classes) // 4
    return {"train": [classes[i] for i in perm[:n_tr]], "val": [classes[i] for i in perm[n_tr:n_tr + n_va]],
            "test": [classes[i] for i in perm[n_tr + n_va:]]}


def load_cub(split: str, root: Optional[str | os.PathLike] = None, image_size: int = 84,
             split_seed: Optional[int] = None, split_file: Optional[str | os.PathLike] = None
             ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One CUB split as ``uint8 [N, 3, S, S]`` sorted by class, images per class, class folders."""
    _check_split("load_cub", split)
    images_dir = _cub_images_dir(root)
    classes = sorted(p.name for p in images_dir.iterdir() if p.is_dir())
    names = sorted(cub_split(classes, split_seed, split_file)[split])
    files = {c: sorted(p for p in (images_dir / c).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
             for c in names}
    paths = [p for c in names for p in files[c]]
    counts = np.array([len(files[c]) for c in names], dtype=np.int64)

    def build() -> dict[str, np.ndarray]:
        return {"images": read_images(paths, image_size)}
    arrays = cached_arrays(images_dir.parent, f"cub-{split}-{image_size}", paths,
                           {"size": image_size, "classes": names}, build)
    return torch.from_numpy(arrays["images"]), torch.from_numpy(counts), names


class MiniImageNet(EpisodicImages):
    """N-way k-shot miniImageNet tasks of one split (Ravi & Larochelle's classes; see module doc)."""

    def __init__(self, split: str = "train", n_way: int = 5, k_shot: int = 1, k_query: int = 16, *,
                 root: Optional[str | os.PathLike] = None, image_size: int = 84) -> None:
        images, counts, self.class_names = load_miniimagenet(split, root, image_size)
        self.split = split
        super().__init__(images, counts, n_way=n_way, k_shot=k_shot, k_query=k_query,
                         name=f"MiniImageNet[{split}]")


class CUB(EpisodicImages):
    """N-way k-shot CUB-200-2011 tasks of one split (Chen et al. 2019's classes; see module doc)."""

    def __init__(self, split: str = "train", n_way: int = 5, k_shot: int = 1, k_query: int = 16, *,
                 root: Optional[str | os.PathLike] = None, image_size: int = 84,
                 split_seed: Optional[int] = None, split_file: Optional[str | os.PathLike] = None) -> None:
        images, counts, self.class_names = load_cub(split, root, image_size, split_seed, split_file)
        self.split = split
        super().__init__(images, counts, n_way=n_way, k_shot=k_shot, k_query=k_query, name=f"CUB[{split}]")
