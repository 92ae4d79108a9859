"""miniImageNet few-shot tasks from a local folder (84x84 RGB); CUB lives in ``cub.py``.

miniImageNet (Vinyals et al. 2016; the split of Ravi & Larochelle 2017: 64/16/20 classes of 600
images) in ``<root>/miniimagenet/`` (or ``task.root`` pointing at that folder), in any of three
layouts, looked for per split in this order:

* Ravi & Larochelle's CSVs: ``train.csv``, ``val.csv``, ``test.csv`` (header ``filename,label``)
  beside an ``images/`` folder holding every listed file;
* the pickled caches ``mini-imagenet-cache-{train,val,test}.pkl`` (learn2learn's and many
  repositories'): a dict with ``image_data`` ``uint8 [N, 84, 84, 3]`` and ``class_dict``
  ``{label: [indices]}``; unpickling runs code, so only load files you trust;
* folders of class folders, as MAML's ``proc_images.py`` writes them: ``train/<class>/*.jpg``,
  ``val/<class>/*.jpg``, ``test/<class>/*.jpg``.

Images are resized to ``image_size`` (bilinear, antialiased), kept as ``uint8`` and cached
(``metagrad.tasks.datasets``). Tasks are 5-way with 16 query images per class by default
(DESIGN.md section 4). A missing or malformed folder is a one-line error naming the layouts.
"""
from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError, MissingFileError
from .cub import CUB, cub_split, load_cub
from .datasets import cached_arrays, class_images, dataset_dir, read_images, resize_images
from .episodic import EpisodicImages

__all__ = ["MiniImageNet", "CUB", "load_miniimagenet", "load_cub", "cub_split", "read_images", "MINI_LAYOUT"]

_SPLITS = ("train", "val", "test")
MINI_LAYOUT = ("train.csv/val.csv/test.csv (filename,label) beside images/, or "
               "mini-imagenet-cache-{train,val,test}.pkl, or train/ val/ test/ folders of class folders "
               "(MAML's proc_images.py)")
_PKL_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
               IndexError, KeyError, OSError)


def _check_split(where: str, split: str) -> None:
    if split not in _SPLITS:
        raise InputError(f"{where}: unknown split {split!r}; choose 'train', 'val' or 'test'")


def _group_by_class(labels: Sequence[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A stable sort of examples by class: (permutation, class names, counts)."""
    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    ids = np.array([index[l] for l in labels], dtype=np.int64)
    return np.argsort(ids, kind="stable"), names, np.bincount(ids, minlength=len(names))


def _from_csv(folder: Path, csv_path: Path, image_size: int) -> tuple[Any, list[Path], Optional[list[str]]]:
    try:
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"load_miniimagenet: {csv_path} is not a readable CSV ({e}); expected {MINI_LAYOUT}") from None
    if not rows or not {"filename", "label"} <= set(rows[0]) or any(
            not isinstance(r.get("filename"), str) or not isinstance(r.get("label"), str) for r in rows):
        raise InputError(f"load_miniimagenet: {csv_path} needs a header 'filename,label' and rows; "
                         f"expected {MINI_LAYOUT}")
    paths = [folder / "images" / r["filename"] for r in rows]
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise MissingFileError(f"load_miniimagenet: {missing} (listed in {csv_path}) is missing; "
                                f"expected {MINI_LAYOUT}")
    perm, names, counts = _group_by_class([r["label"] for r in rows])

    def build() -> dict[str, np.ndarray]:
        return {"images": read_images([paths[i] for i in perm], image_size), "counts": counts}
    return build, [csv_path, folder / "images"], names


def _from_pickle(pkl: Path, image_size: int) -> tuple[Any, list[Path], Optional[list[str]]]:
    def build() -> dict[str, np.ndarray]:
        try:
            with open(pkl, "rb") as f:
                data = pickle.load(f)
        except _PKL_ERRORS as e:
            raise InputError(f"load_miniimagenet: {pkl} is damaged or not a miniImageNet cache "
                             f"({type(e).__name__}: {e}); fetch it again") from None
        if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
            raise InputError(f"load_miniimagenet: {pkl} must hold a dict with keys image_data and class_dict; "
                             f"expected {MINI_LAYOUT}")
        x = np.asarray(data["image_data"])
        if x.ndim != 4 or x.shape[-1] != 3 or not isinstance(data["class_dict"], dict):
            raise InputError(f"load_miniimagenet: {pkl} holds image_data of shape {x.shape}; expected uint8 "
                             f"[N, H, W, 3] and class_dict {{label: [indices]}}")
        order = sorted(data["class_dict"])
        try:
            idx = np.concatenate([np.asarray(data["class_dict"][c], dtype=np.int64) for c in order])
            x = x[idx]
        except (IndexError, ValueError, TypeError) as e:
            raise InputError(f"load_miniimagenet: {pkl}'s class_dict indices do not fit image_data "
                             f"({len(x)} images): {e}") from None
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8))
        return {"images": resize_images(t.permute(0, 3, 1, 2).float() / 255.0, image_size),
                "counts": np.array([len(data["class_dict"][c]) for c in order]),
                "names": np.array(order, dtype=str)}
    return build, [pkl], None


def _from_folders(split_dir: Path, image_size: int) -> tuple[Any, list[Path], Optional[list[str]]]:
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not names:
        raise InputError(f"load_miniimagenet: {split_dir} has no class folders; expected {MINI_LAYOUT}")
    paths, counts = class_images("load_miniimagenet", split_dir, names, MINI_LAYOUT)

    def build() -> dict[str, np.ndarray]:
        return {"images": read_images(paths, image_size), "counts": counts}
    return build, paths, names


def load_miniimagenet(split: str, root: Optional[str | os.PathLike] = None,
                      image_size: int = 84) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One split as ``uint8 [N, 3, S, S]`` sorted by class, images per class, class names."""
    _check_split("load_miniimagenet", split)
    markers = [f"{s}.csv" for s in _SPLITS] + [f"mini-imagenet-cache-{s}.pkl" for s in _SPLITS] + list(_SPLITS)
    folder = dataset_dir("miniimagenet", root, markers, MINI_LAYOUT)
    csv_path, pkl, split_dir = folder / f"{split}.csv", folder / f"mini-imagenet-cache-{split}.pkl", folder / split
    if csv_path.is_file():
        build, sources, names = _from_csv(folder, csv_path, image_size)
        layout = "csv"
    elif pkl.is_file():
        build, sources, names = _from_pickle(pkl, image_size)
        layout = "pkl"
    elif split_dir.is_dir():
        build, sources, names = _from_folders(split_dir, image_size)
        layout = "dirs"
    else:
        raise MissingFileError(f"load_miniimagenet: {folder} has no {split}.csv, mini-imagenet-cache-{split}.pkl "
                                f"or {split}/ folder; expected {MINI_LAYOUT}")
    arrays = cached_arrays(folder, f"miniimagenet-{split}-{layout}-{image_size}", sources,
                           {"size": image_size, "classes": names}, build)
    if names is None:
        names = [str(n) for n in arrays["names"]]
    return torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["counts"]), names


class MiniImageNet(EpisodicImages):
    """N-way k-shot miniImageNet tasks of one split (Ravi & Larochelle's classes; see module doc)."""

    def __init__(self, split: str = "train", n_way: int = 5, k_shot: int = 1, k_query: int = 16, *,
                 root: Optional[str | os.PathLike] = None, image_size: int = 84) -> None:
        images, counts, self.class_names = load_miniimagenet(split, root, image_size)
        self.split = split
        super().__init__(images, counts, n_way=n_way, k_shot=k_shot, k_query=k_query,
                         name=f"MiniImageNet[{split}]")
