"""Omniglot few-shot classification (Lake et al. 2015; protocol of Santoro et al. 2016 and Finn et al. 2017).

Two splits of the characters into meta-training, validation and meta-test (``split_by``):

* ``"random"`` (the default; Santoro et al. 2016, Finn et al. 2017, 001): all 1623 characters
  are pooled and shuffled with a fixed seed (``split_seed``); the first 1200 (``n_train``) are
  the meta-training side, the other 423 the meta-test classes, and ``n_val`` (default 100) of the
  1200 are carved out for validation, so 1100 + 100 + 423.
* ``"official"`` (Lake et al. 2015; the background/evaluation protocol): meta-training on the
  background set's 964 characters (30 alphabets), ``n_val`` of them (drawn with ``split_seed``)
  held out for validation; meta-test on the evaluation set's 659 characters (20 alphabets), which
  no training or validation task ever sees. ``n_train`` does not apply.

Training characters are also rotated by 90, 180 and 270 degrees as new classes (``rotate``).
``within_alphabet``: ``True`` draws every class of a *test and validation* task from one alphabet
(Lake et al.'s within-alphabet evaluation, the harder one: similar characters), training tasks
stay across alphabets; ``"all"`` restricts training tasks too.
Images are resized from 105x105 to 28x28 (bilinear, antialiased); ink is 1.0 and paper 0.0.

Out-of-distribution variants (Finn & Levine 2018, seed 000, Figure 3): ``shear`` (an angle in
radians, ``x' = x + tan(shear) y``) and ``scale`` (a zoom factor about the centre) are applied
to the 105x105 originals before resizing.

Sources, in ``<root>/omniglot/`` (``root``: config ``task.root``, ``$METAGRAD_DATA`` or
``../shared/data``): the NumPy archives ``images_background.npz`` / ``images_evaluation.npz``
(bool ``[classes, 20, 105, 105]``, True = paper), else the official release
``images_background.zip`` / ``images_evaluation.zip`` of PNGs or those folders unzipped
(``<split>/<Alphabet>/characterNN/NNNN_DD.png``). ``SHA256SUMS`` is checked when present.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError, MissingFileError, check_int
from .datasets import cached_arrays, dataset_dir, resize_images, verify_sha256
from .episodic import EpisodicImages

__all__ = ["Omniglot", "load_omniglot", "omniglot_split", "affine_originals", "N_CHARACTERS", "N_BACKGROUND",
           "SPLIT_BY"]

N_CHARACTERS = 1623
N_BACKGROUND = 964          # characters 1..964 are the background set, 965..1623 the evaluation set
SPLIT_BY = ("random", "official")
_PARTS = ("images_background", "images_evaluation")
_LAYOUT = ("images_background.npz + images_evaluation.npz (bool [classes, 20, 105, 105]), or "
           "images_background.zip + images_evaluation.zip of PNGs, or those folders unzipped")
_PNG = re.compile(r"(\d{4})_(\d{2})\.png$")


def affine_originals(ink: torch.Tensor, shear: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """Shear by angle ``shear`` (radians) and zoom by ``scale`` images ``ink [K, 1, H, W]``.

    The forward map is ``p' = scale * [[1, tan(shear)], [0, 1]] p`` about the centre; the image is
    resampled bilinearly through its inverse, with paper (0) outside the original.
    """
    if not scale > 0:
        raise InputError(f"affine_originals: scale must be positive, got {scale}")
    if not abs(shear) < math.pi / 2:
        raise InputError(f"affine_originals: shear must be an angle in (-pi/2, pi/2) radians, got {shear}")
    if shear == 0.0 and scale == 1.0:
        return ink
    t = math.tan(shear)
    inv = torch.tensor([[1.0, -t, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float32) / scale
    grid = F.affine_grid(inv.expand(ink.shape[0], 2, 3), list(ink.shape), align_corners=False)
    return F.grid_sample(ink.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# What reading a damaged archive raises (a truncated or overwritten file, a wrong member).
_DAMAGED = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _read_npz(folder: Path) -> tuple[np.ndarray, list[str]]:
    parts = []
    for p in _PARTS:
        path = folder / f"{p}.npz"
        try:
            with np.load(path) as z:
                images = z["images"]
        except _DAMAGED as e:
            raise InputError(f"load_omniglot: {path} is damaged or not an Omniglot archive "
                             f"({type(e).__name__}: {e}); fetch it again (expected key 'images', "
                             f"bool [classes, 20, 105, 105])") from None
        if images.ndim != 4 or (parts and images.shape[1:] != parts[0].shape[1:]):
            raise InputError(f"load_omniglot: {path} holds images of shape {images.shape}; expected "
                             f"bool [classes, 20, 105, 105] like {_PARTS[0]}.npz")
        parts.append(images.astype(bool, copy=False))
    return np.concatenate(parts), [], [len(p) for p in parts]


def _check_parts(folder: Path) -> bool:
    """Whether the sources are the ``.npz`` archives (else the zips or folders); one-line errors
    name the part that is missing, or say that ``.npz`` and PNG sources cannot be mixed."""
    kinds = {}
    for p in _PARTS:
        kinds[p] = ("npz" if (folder / f"{p}.npz").is_file() else "zip" if (folder / f"{p}.zip").is_file()
                    else "dir" if (folder / p).is_dir() else None)
    missing = [p for p in _PARTS if kinds[p] is None]
    if missing:
        m = missing[0]
        have = ", ".join(f"{p}.{k}" if k != "dir" else f"{p}/" for p, k in kinds.items() if k) or "neither part"
        raise MissingFileError(f"load_omniglot: {folder} has no {m}.npz, {m}.zip or {m}/ (found {have}); "
                                f"expected {_LAYOUT}")
    npz = [p for p in _PARTS if kinds[p] == "npz"]
    if npz and len(npz) != len(_PARTS):
        other = next(p for p in _PARTS if p not in npz)
        raise MissingFileError(f"load_omniglot: {folder} has {npz[0]}.npz but no {other}.npz (only PNGs "
                                f"of {other}); add {other}.npz or use the PNG form of both parts")
    return bool(npz)


def _read_pngs(folder: Path) -> tuple[np.ndarray, list[str], list[int]]:
    """Characters from the official zips or unzipped folders: ``[1623, 20, 105, 105]`` bool, alphabets,
    characters per part (background, evaluation)."""
    found: dict[int, dict[int, np.ndarray]] = {}
    alphabet_of: dict[int, str] = {}
    part_of: dict[int, int] = {}

    def add(name: str, data: bytes | Path, where: Path, part: int) -> None:
        m = _PNG.search(name)
        if m is None:
            return
        char, drawer = int(m.group(1)), int(m.group(2))
        src = data if isinstance(data, Path) else io.BytesIO(data)
        try:
            with Image.open(src) as im:
                found.setdefault(char, {})[drawer] = np.asarray(im.convert("1"), dtype=bool)
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(f"load_omniglot: {name} in {where} is not a readable PNG ({e}); "
                             f"fetch {where.name} again") from None
        if len(Path(name).parts) < 3:
            raise InputError(f"load_omniglot: {name} in {where} is not under <Alphabet>/characterNN/; "
                             f"expected {_LAYOUT}")
        alphabet_of[char] = Path(name).parts[-3]
        part_of[char] = part

    for part, p in enumerate(_PARTS):
        if (folder / p).is_dir():
            for f in sorted((folder / p).rglob("*.png")):
                add(str(f.relative_to(folder)), f, folder / p, part)
        elif (folder / f"{p}.zip").is_file():
            path = folder / f"{p}.zip"
            try:
                with zipfile.ZipFile(path) as z:
                    members = {n: z.read(n) for n in sorted(z.namelist()) if n.endswith(".png")}
            except _DAMAGED as e:
                raise InputError(f"load_omniglot: {path} is damaged or not a zip archive "
                                 f"({type(e).__name__}: {e}); fetch it again") from None
            for n, data in members.items():
                add(n, data, path, part)
        else:
            raise MissingFileError(f"load_omniglot: {folder} has no {p}.npz, {p}.zip or {p}/; expected {_LAYOUT}")
    chars = sorted(found)
    if chars != list(range(1, len(chars) + 1)) or any(len(found[c]) != 20 for c in chars):
        bad = next((c for c in chars if len(found[c]) != 20), None)
        raise InputError(f"load_omniglot: {folder} holds {len(chars)} characters (character {bad} "
                         f"incomplete or numbering broken); expected {_LAYOUT} with 20 drawings each")
    images = np.stack([np.stack([found[c][d] for d in sorted(found[c])]) for c in chars])
    sizes = [sum(1 for c in chars if part_of[c] == i) for i in range(len(_PARTS))]
    if [part_of[c] for c in chars] != sorted(part_of[c] for c in chars):
        raise InputError(f"load_omniglot: {folder} numbers some evaluation character before a background one; "
                         f"expected the release's numbering (background 1..N, evaluation after)")
    return images, [alphabet_of[c] for c in chars], sizes


def _groups(folder: Path, n: int, alphabets: list[str]) -> np.ndarray:
    """Alphabet id per character, from ``alphabets.csv`` or from the PNG folder names."""
    groups = np.full(n, -1, dtype=np.int64)
    path = folder / "alphabets.csv"
    if path.is_file():
        try:
            with open(path, newline="") as f:
                for gid, row in enumerate(csv.DictReader(f)):
                    groups[int(row["first_character"]) - 1:int(row["last_character"])] = gid
        except (KeyError, ValueError, TypeError, csv.Error) as e:
            raise InputError(f"load_omniglot: {path} is damaged ({type(e).__name__}: {e}); expected the "
                             f"columns first_character,last_character (fetch it again or delete it)") from None
    elif alphabets:
        names = {a: i for i, a in enumerate(dict.fromkeys(alphabets))}
        groups[:] = [names[a] for a in alphabets]
    return groups


@lru_cache(maxsize=4)
def _load(folder: str, image_size: int, shear: float, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder_p = Path(folder)
    npz = _check_parts(folder_p)
    names = [f"{p}.npz" for p in _PARTS] if npz else [f"{p}.zip" for p in _PARTS]
    sources = [folder_p / n for n in names if (folder_p / n).is_file()]
    sources += [folder_p / p for p in _PARTS if (folder_p / p).is_dir() and not npz]

    def build() -> dict[str, np.ndarray]:
        verify_sha256(folder_p, names)
        # Both readers keep the release's convention: True = paper, False = ink.
        raw, alphabets, sizes = _read_npz(folder_p) if npz else _read_pngs(folder_p)
        c, d = raw.shape[:2]
        out = np.empty((c * d, 1, image_size, image_size), np.uint8)
        for i in range(0, c * d, 2000):  # chunks bound the float32 copy of the originals
            ink = torch.from_numpy(~raw.reshape(c * d, 1, *raw.shape[2:])[i:i + 2000]).float()
            out[i:i + 2000] = resize_images(affine_originals(ink, shear, scale), image_size)
        return {"images": out.reshape(c, d, 1, image_size, image_size),
                "groups": _groups(folder_p, c, alphabets),
                # 0: background set, 1: evaluation set (the official split), per character
                "part": np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)}

    # "parts" in the settings: caches written before the part array existed are rebuilt once
    arrays = cached_arrays(folder_p, f"omniglot-{image_size}-sh{shear:g}-sc{scale:g}", sources,
                           {"size": image_size, "shear": shear, "scale": scale, "parts": 2}, build)
    return arrays["images"], arrays["groups"], arrays["part"]


def load_omniglot(root: Optional[str | os.PathLike] = None, image_size: int = 28, shear: float = 0.0,
                  scale: float = 1.0, parts: bool = False) -> tuple[torch.Tensor, ...]:
    """All characters as ``uint8 [1623, 20, 1, S, S]`` (255 = ink) and alphabet ids ``[1623]``;
    with ``parts=True`` also the part of each character ``[1623]`` (0 background, 1 evaluation).

    Cached after the first call (see ``metagrad.tasks.datasets``); ``root`` as in the module doc.
    """
    check_int("load_omniglot", "image_size", image_size, 1, InputError)
    folder = dataset_dir("omniglot", root, [f"{p}{e}" for p in _PARTS for e in (".npz", ".zip", "")], _LAYOUT)
    images, groups, part = _load(str(folder.resolve()), image_size, float(shear), float(scale))
    out = (torch.from_numpy(images), torch.from_numpy(groups))
    return (*out, torch.from_numpy(part)) if parts else out


def omniglot_split(n_classes: int = N_CHARACTERS, n_train: Optional[int] = None, n_val: int = 100,
                   seed: int = 0, *, split_by: str = "random",
                   n_background: int = N_BACKGROUND) -> dict[str, torch.Tensor]:
    """Character indices of ``train``, ``val`` and ``test`` (disjoint).

    ``split_by="random"``: ``perm = randperm(n_classes, seed)``, ``val = perm[:n_val]``,
    ``train = perm[n_val:n_train]``, ``test = perm[n_train:]`` (``n_train`` default 1200).
    ``split_by="official"``: characters ``0..n_background-1`` are the background set and the rest
    the evaluation set; ``val`` is ``n_val`` background characters drawn with ``seed``, ``train`` the
    other background characters (ascending), ``test`` the evaluation set (``n_train`` must be None).
    """
    if split_by not in SPLIT_BY:
        raise InputError(f"omniglot_split: unknown split_by {split_by!r}; choose 'random' (a seeded shuffle "
                         f"of all characters) or 'official' (background set to train, evaluation set to test)")
    if split_by == "official":
        if n_train is not None:
            raise InputError(f"omniglot_split: n_train={n_train} does not apply to split_by='official' (training "
                             f"is the whole background set less n_val); drop n_train or use split_by='random'")
        if not 0 <= n_val < n_background < n_classes:
            raise InputError(f"omniglot_split: need 0 <= n_val < {n_background} background characters < "
                             f"{n_classes}, got n_val={n_val}")
        perm = torch.randperm(n_background, generator=torch.Generator().manual_seed(seed))
        return {"train": perm[n_val:].sort().values, "val": perm[:n_val],
                "test": torch.arange(n_background, n_classes)}
    n_train = 1200 if n_train is None else n_train
    if not 0 <= n_val < n_train < n_classes:
        raise InputError(f"omniglot_split: need 0 <= n_val < n_train < {n_classes}, got n_val={n_val}, n_train={n_train}")
    perm = torch.randperm(n_classes, generator=torch.Generator().manual_seed(seed))
    return {"train": perm[n_val:n_train], "val": perm[:n_val], "test": perm[n_train:]}


class Omniglot(EpisodicImages):
    """N-way k-shot Omniglot tasks of one split (see the module docstring for the protocol).

    ``split``: ``train`` (rotations as new classes unless ``rotate=False``), ``val`` or ``test``.
    ``split_by``: ``"random"`` (1100 + 100 + 423 characters) or ``"official"`` (background /
    evaluation sets). ``within_alphabet``: ``True``: all classes of a test or validation task from
    one alphabet (``alphabets.csv``); ``"all"``: training tasks too; ``False``: across alphabets.

    Example::

        tasks = Omniglot("train", n_way=5, k_shot=1, k_query=1)
        batch = tasks.sample(32, torch.Generator().manual_seed(0))   # support_x [32, 5, 1, 28, 28]
        test = Omniglot("test", split_by="official", within_alphabet=True)   # Lake et al.'s protocol
    """

    def __init__(self, split: str = "train", n_way: int = 5, k_shot: int = 1, k_query: int = 1, *,
                 root: Optional[str | os.PathLike] = None, image_size: int = 28, split_by: str = "random",
                 n_train: Optional[int] = None, n_val: int = 100, split_seed: int = 0, rotate: bool = True,
                 within_alphabet: bool | str = False, shear: float = 0.0, scale: float = 1.0) -> None:
        if split not in ("train", "val", "test"):
            raise InputError(f"Omniglot: unknown split {split!r}; choose 'train', 'val' or 'test'")
        if split == "val" and n_val == 0:
            raise InputError("Omniglot: split='val' needs n_val > 0 validation characters; set n_val")
        if within_alphabet not in (False, True, "all"):
            raise InputError(f"Omniglot: within_alphabet must be false, true (test and validation tasks) or "
                             f"\"all\" (training tasks too), got {within_alphabet!r}")
        images, groups, part = load_omniglot(root, image_size, shear, scale, parts=True)
        n_background = int((part == 0).sum())
        idx = omniglot_split(images.shape[0], n_train, n_val, split_seed, split_by=split_by,
                             n_background=n_background)[split]
        self.split, self.split_by, self.class_ids = split, split_by, idx
        self.shear, self.scale = shear, scale
        # Within-alphabet is a test protocol (Lake et al.): training tasks stay across alphabets
        # unless asked, so one meta-trained model serves both evaluations.
        within = within_alphabet == "all" or (within_alphabet is True and split != "train")
        super().__init__(images[idx], n_way=n_way, k_shot=k_shot, k_query=k_query,
                         rotations=(0, 1, 2, 3) if split == "train" and rotate else (0,),
                         groups=groups[idx], within_group=within, name=f"Omniglot[{split}]")
