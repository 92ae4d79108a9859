"""Shared plumbing of the image benchmarks: where the data lives, integrity checks, caches.

The data root holds one folder per benchmark (``omniglot/``, ``miniimagenet/``, ``cub/``). It
comes from, in order: the config (``task.root``), the ``METAGRAD_DATA`` environment variable,
then ``../shared/data`` relative to the current directory when that exists. Resized arrays are
cached (``.npz``, written atomically) in ``<benchmark folder>/.metagrad_cache`` when that is
writable, else in ``~/.cache/metagrad`` (``METAGRAD_CACHE`` overrides both).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, MissingFileError
from ..io import atomic_write

__all__ = ["data_root", "dataset_dir", "verify_sha256", "cache_dir", "cached_arrays",
           "resize_images", "read_images", "IMAGE_SUFFIXES", "CACHE_VERSION"]

CACHE_VERSION = 1  # bump when the preprocessing changes, so old caches are rebuilt
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def class_images(where: str, folder: Path, classes: Sequence[str], layout: str) -> tuple[list[Path], np.ndarray]:
    """The image files of each class folder ``folder/<class>`` (sorted), flattened class by class, and
    how many each class has; a class folder without images is a one-line error naming it and ``layout``."""
    files = {c: sorted(p for p in (folder / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for c in classes}
    empty = next((c for c in classes if not files[c]), None)
    if empty is not None:
        raise InputError(f"{where}: class folder {folder / empty} holds no .jpg/.jpeg/.png images; expected {layout}")
    return [p for c in classes for p in files[c]], np.array([len(files[c]) for c in classes], dtype=np.int64)


def data_root(root: Optional[str | os.PathLike] = None) -> Path:
    """The data root: ``root``, else ``$METAGRAD_DATA``, else ``./../shared/data`` if it exists."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("METAGRAD_DATA")
    if env:
        return Path(env).expanduser()
    default = Path.cwd().parent / "shared" / "data"
    if default.is_dir():
        return default
    raise MissingFileError("data_root: no data root given; pass task.root=PATH or set METAGRAD_DATA "
                            "to a folder holding omniglot/, miniimagenet/ or cub/")


def dataset_dir(name: str, root: Optional[str | os.PathLike], markers: Sequence[str], layout: str) -> Path:
    """``<root>/<name>`` (or ``root`` itself when it already holds one of ``markers``).

    Raises a one-line ``FileNotFoundError`` naming the paths tried and the expected ``layout``.
    """
    base = data_root(root)
    for cand in (base / name, base):
        if cand.is_dir() and any((cand / m).exists() for m in markers):
            return cand
    raise MissingFileError(f"{name}: no data found at {base / name} (nor in {base}); expected {layout}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(folder: Path, names: Sequence[str]) -> list[str]:
    """Check ``names`` in ``folder`` against ``folder/SHA256SUMS`` (when that file exists).

    Returns the names that were verified; raises ``ValueError`` on a mismatch.
    """
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return []
    expected = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            expected[parts[1].lstrip("*")] = parts[0].lower()
    checked = []
    for name in names:
        if name in expected and (folder / name).is_file():
            got = _sha256(folder / name)
            if got != expected[name]:
                raise InputError(f"verify_sha256: {folder / name} has sha256 {got[:16]}..., SHA256SUMS "
                                 f"says {expected[name][:16]}...; the file is corrupt, fetch it again")
            checked.append(name)
    return checked


def cache_dir(folder: Path) -> Path:
    """A writable cache folder for ``folder``'s data (see the module docstring)."""
    env = os.environ.get("METAGRAD_CACHE")
    if env:
        return Path(env).expanduser()
    local = folder / ".metagrad_cache"
    # The mode bits, not just os.access: root may write anywhere, but a folder published
    # read-only (dr-xr-xr-x, like ../shared/data) is meant to stay untouched.
    if local.is_dir() and os.access(local, os.W_OK):
        return local
    if os.access(folder, os.W_OK) and folder.stat().st_mode & stat.S_IWUSR:
        try:
            local.mkdir(exist_ok=True)
            return local
        except OSError:
            pass
    return Path.home() / ".cache" / "metagrad"


def _fingerprint(sources: Sequence[Path], settings: dict) -> str:
    # Sizes and modification times of the sources, so an edited source invalidates the cache
    # without re-hashing gigabytes on every load.
    info = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sources]
    blob = json.dumps({"v": CACHE_VERSION, "sources": info, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_arrays(folder: Path, tag: str, sources: Sequence[Path], settings: dict,
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load ``tag``'s arrays from the cache, or ``build()`` them and cache them atomically.

    A damaged cache file (truncated, overwritten, not a zip) is rebuilt and replaced, never an error.
    """
    missing = [p for p in sources if not p.exists()]
    if missing:
        raise MissingFileError(f"cached_arrays: source {missing[0]} of {tag} is missing; fetch it again")
    path = cache_dir(folder) / f"{tag}-{_fingerprint(sources, settings)}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
            pass  # a damaged cache is rebuilt below
    arrays = build()

    def write(f) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        f.write(buf.getvalue())
    try:
        atomic_write(path, write, binary=True)
    except OSError:
        pass  # an unwritable cache only costs speed
    return arrays


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> np.ndarray:
    """Resize ``[K, C, H, W]`` floats in ``[0, 1]`` to ``size x size`` (bilinear, antialiased).

    Returns ``uint8`` (value ``round(255 x)``), the form in which every benchmark is kept in memory.
    """
    out = []
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].float()
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append((x.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(out).numpy() if out else np.zeros((0, images.shape[1], size, size), np.uint8)


def read_images(paths: Sequence[Path], size: int) -> np.ndarray:
    """Read image files as RGB and resize each to ``size x size``: ``uint8 [N, 3, size, size]``."""
    from PIL import Image   # only the folder layouts need PIL
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(f"read_images: {p} is not a readable image ({e}); replace or remove it") from None
        out[i] = resize_images(x.permute(2, 0, 1).unsqueeze(0).float() / 255.0, size)[0]
    return out
