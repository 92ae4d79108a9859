"""N-way k-shot episodes over a labelled image collection (Vinyals et al. 2016; Finn et al. 2017).

A task draws ``n_way`` classes without replacement, then ``k_shot + k_query`` distinct images of
each; class ``j`` of the draw gets label ``j``, so labels ``0..N-1`` are assigned to the
classes in a fresh random order every task. Support and query sets are disjoint by
construction. Images are stacked per task::

    support_x [B, N k, C, H, W]  support_y [B, N k] (int64, class-blocked: 0..0 1..1 ...)
    query_x   [B, N q, C, H, W]  query_y   [B, N q]

``task_params [B, N]`` holds the class id behind each label (for analysis; learners never see it).

Options: ``rotations`` turns every stored class into one class per quarter turn (Santoro et
al. 2016's Omniglot augmentation: rotated characters are new classes), and ``groups`` with
``within_group=True`` draws all classes of a task from one group (one Omniglot alphabet), the
group uniformly among those with at least ``N`` classes.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..batch import TaskBatch
from .base import check_n_tasks, check_shots

__all__ = ["EpisodicImages"]


class EpisodicImages:
    """Few-shot classification tasks over ``images`` grouped by class.

    Args:
        images: ``uint8 [n_images, C, H, W]`` (pixel ``v`` stands for ``v / 255``) or floats,
            sorted by class; or a dense ``[n_classes, per_class, C, H, W]`` array.
        counts: images per class (``[n_classes]``) for the flat form; ``None`` for the dense form.
        n_way, k_shot, k_query: ``N``, ``k`` and ``q`` of the episodes.
        rotations: quarter turns that make new classes, e.g. ``(0, 1, 2, 3)`` for 0/90/180/270
            degrees; class ``c * len(rotations) + r`` is base class ``c`` turned ``rotations[r]``.
        groups: a group id per base class (alphabet), used with ``within_group=True``.
        name: shown in errors.

    ``sample(n_tasks, generator)`` reads every random number from ``generator``.
    """

    loss = "cross_entropy"

    def __init__(self, images: Tensor | np.ndarray, counts: Optional[Sequence[int] | Tensor] = None, *,
                 n_way: int = 5, k_shot: int = 1, k_query: int = 15,
                 rotations: Sequence[int] = (0,), groups: Optional[Sequence[int] | Tensor] = None,
                 within_group: bool = False, name: str = "EpisodicImages") -> None:
        check_shots(name, n_way=n_way, k_shot=k_shot, k_query=k_query)
        images = torch.as_tensor(images)
        if counts is None:
            if images.dim() != 5:
                raise InputError(f"{name}: images has shape {tuple(images.shape)}; expected "
                                 f"[classes, per_class, C, H, W] or pass counts with [images, C, H, W]")
            counts = torch.full((images.shape[0],), images.shape[1], dtype=torch.int64)
            images = images.reshape(-1, *images.shape[2:])
        counts = torch.as_tensor(counts, dtype=torch.int64)
        if images.dim() != 4:
            raise InputError(f"{name}: images has shape {tuple(images.shape)}; expected [images, C, H, W]")
        if int(counts.sum()) != images.shape[0] or (counts < 0).any():
            raise InputError(f"{name}: counts sum to {int(counts.sum())} but there are {images.shape[0]} images")
        rotations = tuple(int(r) % 4 for r in rotations)
        if not rotations or len(set(rotations)) != len(rotations):
            raise InputError(f"{name}: rotations must be distinct quarter turns, got {rotations!r}")
        if any(r % 2 for r in rotations) and images.shape[-1] != images.shape[-2]:
            raise InputError(f"{name}: 90-degree rotations need square images, got {tuple(images.shape[-2:])}")
        need = k_shot + k_query
        keep = counts >= need
        if int(keep.sum()) * len(rotations) < n_way:
            raise InputError(f"{name}: only {int(keep.sum())} classes (x{len(rotations)} rotations) have "
                             f"{need} images (k_shot + k_query); need n_way={n_way}; lower k_shot, k_query or n_way "
                             f"(the largest class holds {int(counts.max()) if counts.numel() else 0} images)")
        self.images = images
        self.counts = counts
        self.starts = torch.cumsum(counts, 0) - counts
        self.rotations = rotations
        self.n_way, self.k_shot, self.k_query = n_way, k_shot, k_query
        self.channels, self.image_size = int(images.shape[1]), int(images.shape[-1])
        self.name = name
        # Classes with too few images never enter a task.
        self.base_classes = torch.nonzero(keep).flatten()
        self.within_group = within_group
        self.group_members: list[Tensor] = []
        if groups is not None:
            groups = torch.as_tensor(groups, dtype=torch.int64)
            if groups.shape != counts.shape:
                raise InputError(f"{name}: groups has {groups.numel()} entries but there are {counts.numel()} classes")
            g = groups[self.base_classes]
            members = [self.base_classes[g == u] for u in torch.unique(g)]
            self.group_members = [m for m in members if m.numel() * len(rotations) >= n_way]
        if within_group and not self.group_members:
            raise InputError(f"{name}: within_group=True needs groups with at least n_way={n_way} classes "
                             f"(counting rotations); pass groups or lower n_way")

    # -- sizes the model builder reads ---------------------------------------------------
    @property
    def n_classes(self) -> int:
        """Classes available to tasks (base classes times rotations)."""
        return self.base_classes.numel() * len(self.rotations)

    @property
    def out_features(self) -> int:
        return self.n_way

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def _choose_classes(self, n_tasks: int, g: torch.Generator) -> Tensor:
        """``[n_tasks, N]`` class ids ``base * R + r`` (distinct within a task, random order)."""
        rot = len(self.rotations)
        if not self.within_group:
            pick = torch.rand(n_tasks, self.n_classes, generator=g).argsort(dim=1)[:, :self.n_way]
            return self.base_classes[pick // rot] * rot + pick % rot
        out = []
        which = torch.randint(len(self.group_members), (n_tasks,), generator=g)
        for i in range(n_tasks):
            m = self.group_members[int(which[i])]
            pick = torch.randperm(m.numel() * rot, generator=g)[:self.n_way]
            out.append(m[pick // rot] * rot + pick % rot)
        return torch.stack(out)

    def sample(self, n_tasks: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """Draw ``n_tasks`` episodes (see the module docstring for shapes)."""
        check_n_tasks(f"{self.name}.sample", n_tasks, generator)
        n, k, q = self.n_way, self.k_shot, self.k_query
        cls = self._choose_classes(n_tasks, generator).flatten()           # [B N]
        base, rot = cls // len(self.rotations), cls % len(self.rotations)
        counts = self.counts[base]
        # k + q distinct images per class: the smallest keys of a random vector, where slots
        # past the class's count get key 2 and so are never chosen.
        keys = torch.rand(cls.numel(), int(counts.max()), generator=generator)
        keys[torch.arange(keys.shape[1]).unsqueeze(0) >= counts.unsqueeze(1)] = 2.0
        idx = keys.argsort(dim=1)[:, :k + q] + self.starts[base].unsqueeze(1)  # [B N, k + q]
        x = self.images[idx]                                               # [B N, k+q, C, H, W]
        x = x.to(dtype) / 255.0 if x.dtype == torch.uint8 else x.to(dtype)
        turns = torch.tensor(self.rotations, dtype=torch.int64)[rot]
        for t in (1, 2, 3):
            sel = turns == t
            if bool(sel.any()):
                x[sel] = torch.rot90(x[sel], t, dims=(-2, -1))
        x = x.reshape(n_tasks, n, k + q, *x.shape[2:])
        labels = torch.arange(n).reshape(1, n, 1)
        sy = labels.expand(n_tasks, n, k).reshape(n_tasks, n * k)
        qy = labels.expand(n_tasks, n, q).reshape(n_tasks, n * q)
        return TaskBatch(support_x=x[:, :, :k].reshape(n_tasks, n * k, *x.shape[3:]), support_y=sy.clone(),
                         query_x=x[:, :, k:].reshape(n_tasks, n * q, *x.shape[3:]), query_y=qy.clone(),
                         task_params=cls.reshape(n_tasks, n).to(dtype))

    def resample(self, tasks: TaskBatch | Tensor, k: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> TaskBatch:
        """Not supported: fresh images of the same classes would overlap the episode's own."""
        raise InputError(f"{self.name}.resample: image episodes cannot draw fresh data of the same tasks; "
                         "HF-MAML's separate D_h (outer.hvp_batch) is for sine, polynomial and quadratic tasks")

    def __repr__(self) -> str:
        return (f"{self.name}({self.n_way}-way {self.k_shot}-shot, {self.k_query} query, "
                f"{self.n_classes} classes, {self.channels}x{self.image_size}x{self.image_size})")
