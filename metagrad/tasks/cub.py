"""CUB-200-2011 few-shot tasks from a local folder (Wah et al. 2011; 84x84 RGB).

Layout: ``<root>/cub/CUB_200_2011/images/<class folder>/*.jpg`` as the official archive
``CUB_200_2011.tgz`` unpacks (200 folders such as ``001.Black_footed_Albatross``), or
``<root>/cub/images/...``, or ``task.root`` pointing at the ``CUB_200_2011`` folder itself.

Class splits (``split_by``):

* ``"004"`` (the default; the TURTLE thesis, 004 section 4.2.1: "we randomly create our own splits
  with a 70/15/15 class ratio"): the sorted class folders are shuffled with
  ``torch.randperm(n, Generator().manual_seed(split_seed))`` (``split_seed`` default 0) and the
  first ``round(0.7 n)`` are training, the next ``round(0.15 n)`` validation, the rest test:
  140/30/30 of the 200 classes. The thesis's own draw is not published, so seed 0 is ours.
* ``"chen"`` (Chen et al. 2019, A Closer Look at Few-shot Classification): of the sorted folders,
  index ``i % 2 == 0`` is training (100), ``i % 4 == 1`` validation (50), ``i % 4 == 3`` test (50).
* ``split_file``: JSON ``{"train": [folders], "val": [...], "test": [...]}``, the user's own.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import InputError, MissingFileError
from .datasets import cached_arrays, class_images, dataset_dir, read_images
from .episodic import EpisodicImages

__all__ = ["CUB", "load_cub", "cub_split", "CUB_LAYOUT", "CUB_SPLITS"]

_SPLITS = ("train", "val", "test")
CUB_SPLITS = ("004", "chen")
CUB_LAYOUT = "CUB_200_2011/images/<class folder>/*.jpg (200 class folders, as CUB_200_2011.tgz unpacks)"
RATIOS = (0.70, 0.15, 0.15)   # 004's class ratio


def _images_dir(root: Optional[str | os.PathLike]) -> Path:
    folder = dataset_dir("cub", root, ["CUB_200_2011", "images"], CUB_LAYOUT)
    for cand in (folder / "CUB_200_2011" / "images", folder / "images"):
        if cand.is_dir():
            return cand
    raise MissingFileError(f"load_cub: no images folder under {folder}; expected {CUB_LAYOUT}")


def cub_split(classes: Sequence[str], split_by: str = "004", split_seed: Optional[int] = None,
              split_file: Optional[str | os.PathLike] = None) -> dict[str, list[str]]:
    """Class folders of each split: 004's seeded 70/15/15 draw, Chen et al.'s rule, or a file."""
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
    if split_by not in CUB_SPLITS:
        raise InputError(f"cub_split: unknown split_by {split_by!r}; choose '004' (seeded 70/15/15 classes) or "
                         f"'chen' (Chen et al. 2019's 100/50/50 rule), or give split_file")
    if len(classes) < 3:
        raise InputError(f"cub_split: {len(classes)} class folder(s) cannot make train, val and test; expected "
                         f"{CUB_LAYOUT}")
    if split_by == "chen":
        if split_seed is not None:
            raise InputError(f"cub_split: split_seed={split_seed} does not apply to split_by='chen' (a fixed rule); "
                             f"drop it or use split_by='004'")
        return {"train": [c for i, c in enumerate(classes) if i % 2 == 0],
                "val": [c for i, c in enumerate(classes) if i % 4 == 1],
                "test": [c for i, c in enumerate(classes) if i % 4 == 3]}
    n = len(classes)
    seed = 0 if split_seed is None else split_seed
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_tr, n_va = round(RATIOS[0] * n), max(1, round(RATIOS[1] * n))
    n_tr = min(n_tr, n - n_va - 1)      # tiny collections keep one test class
    return {"train": [classes[i] for i in perm[:n_tr]], "val": [classes[i] for i in perm[n_tr:n_tr + n_va]],
            "test": [classes[i] for i in perm[n_tr + n_va:]]}


def load_cub(split: str, root: Optional[str | os.PathLike] = None, image_size: int = 84,
             split_by: str = "004", split_seed: Optional[int] = None,
             split_file: Optional[str | os.PathLike] = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One CUB split as ``uint8 [N, 3, S, S]`` sorted by class, images per class, class folders."""
    if split not in _SPLITS:
        raise InputError(f"load_cub: unknown split {split!r}; choose 'train', 'val' or 'test'")
    images_dir = _images_dir(root)
    classes = sorted(p.name for p in images_dir.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"load_cub: {images_dir} has no class folders; expected {CUB_LAYOUT}")
    names = sorted(cub_split(classes, split_by, split_seed, split_file)[split])
    paths, counts = class_images("load_cub", images_dir, names, CUB_LAYOUT)

    def build() -> dict[str, np.ndarray]:
        return {"images": read_images(paths, image_size)}
    arrays = cached_arrays(images_dir.parent, f"cub-{split}-{image_size}", paths,
                           {"size": image_size, "classes": names}, build)
    return torch.from_numpy(arrays["images"]), torch.from_numpy(counts), names


class CUB(EpisodicImages):
    """N-way k-shot CUB-200-2011 tasks of one split (004's 70/15/15 classes by default; module doc)."""

    def __init__(self, split: str = "train", n_way: int = 5, k_shot: int = 1, k_query: int = 16, *,
                 root: Optional[str | os.PathLike] = None, image_size: int = 84, split_by: str = "004",
                 split_seed: Optional[int] = None, split_file: Optional[str | os.PathLike] = None) -> None:
        images, counts, self.class_names = load_cub(split, root, image_size, split_by, split_seed, split_file)
        self.split = split
        super().__init__(images, counts, n_way=n_way, k_shot=k_shot, k_query=k_query, name=f"CUB[{split}]")
