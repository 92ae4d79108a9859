"""Classify your own handwritten characters with the meta-trained Omniglot MAML of 001 Table 3.

The record ``reproductions/omniglot-table3`` keeps its 5-way 1-shot MAML (second order, 60,000
iterations; 99.03% on 600 held-out Omniglot tasks). ``mg.load_run`` gives it back; one inner step
on one drawing per character adapts it to characters it has never seen::

    python examples/omniglot_pretrained.py FOLDER

``FOLDER`` holds one sub-folder per character (five, as the model was meta-trained 5-way) with image
files of drawings of it (any size; dark ink on light paper, as Omniglot's). The first drawing of each
character (by file name) is its one example; every other drawing is classified, and the accuracy
printed. The drawings are prepared as the record's were: ink 1.0 and paper 0.0, resized to 28x28
(bilinear, antialiased). The Omniglot data must be where metagrad finds them (``$METAGRAD_DATA``):
the run rebuilds its task distribution from them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import metagrad as mg
from metagrad.tasks.datasets import resize_images

RUN = Path(__file__).resolve().parents[1] / "reproductions" / "omniglot-table3" / "cells" / "MAML_5way_s0.run.pt"
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def read_drawing(path: Path) -> torch.Tensor:
    """One drawing as the model's input ``[1, 28, 28]``: ink 1.0, paper 0.0, resized as Omniglot's were."""
    with Image.open(path) as im:
        grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    ink = torch.from_numpy(1.0 - grey)[None, None]   # dark strokes on light paper -> ink = 1
    return torch.from_numpy(resize_images(ink, 28)).float().div(255.0)[0]


def main(folder: Path) -> float:
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(classes) != 5:
        raise SystemExit(f"{folder}: expected 5 character folders (the model is 5-way), found {len(classes)}")
    drawings = [sorted(p for p in c.iterdir() if p.suffix.lower() in SUFFIXES) for c in classes]
    if any(len(d) < 2 for d in drawings):
        raise SystemExit(f"{folder}: every character needs two drawings or more (one to adapt, one to classify)")
    run = mg.load_run(RUN)
    support_x = torch.stack([read_drawing(d[0]) for d in drawings])   # [5, 1, 28, 28]: one example each
    support_y = torch.arange(5)
    fast = run.algo.adapt(support_x, support_y)                        # one step of 0.4, as meta-trained
    # one batch of every character's other drawings: batch norm normalises with the batch's statistics
    # (transductive, as in meta-training, whose query sets hold every class), so no batch of one class
    queries = [(label, d) for label, ds in enumerate(drawings) for d in ds[1:]]
    with torch.no_grad():
        guess = run.algo.predict(fast, torch.stack([read_drawing(d) for _, d in queries])).argmax(-1).tolist()
    for (label, d), g in zip(queries, guess):
        print(f"{classes[label].name}/{d.name}: {classes[g].name}")
    right = sum(int(g == label) for (label, _), g in zip(queries, guess))
    print(f"accuracy {right / len(queries):.3f} ({right} of {len(queries)} drawings), one example per character")
    return right / len(queries)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
