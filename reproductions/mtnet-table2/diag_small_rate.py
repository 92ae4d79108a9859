"""Why MAML still adapts at an inner rate of 0.0001 here (001 Table 2 reports 2.54, about no adaptation).

Not a timing and no training: loads the kept runs of MAML at a = 0.01 and a = 0.0001 (``cells/*.run.pt``,
written when the cells were trained; not in git) and prints, on 200 test tasks, the MSE before and after
the one inner step, and on 20 of them the median norm of the support-loss gradient at the meta-learned
initialisation, the norm of the initialisation, and a times the gradient norm (the length of the step).

    python reproductions/mtnet-table2/diag_small_rate.py
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from metagrad.experiments.building import build
from metagrad.experiments.config import Config
from metagrad.experiments.train_runs import Trained

CELLS = Path(__file__).resolve().parent / "cells"


def main() -> None:
    torch.set_num_threads(1)
    for lr in ("0.01", "0.0001"):
        kept = CELLS / f"MAML-lr{lr}_s0.run.pt"
        if not kept.exists():
            sys.exit(f"diag_small_rate: {kept} is missing: the kept runs are written by training the cells "
                     "(metagrad reproduce mtnet-table2 --out reproductions/mtnet-table2 --only model=MAML)")
        cfg = Config.from_dict(json.loads((CELLS / f"MAML-lr{lr}_s0.json").read_text())["config"])
        algo, task = build(cfg, "test")
        algo.load_state_dict(Trained.load(kept).state)
        batch = task.sample(200, torch.Generator().manual_seed(5))
        curve = algo.adaptation_curve(batch, 1)
        theta = algo.params()
        norms = []
        for i in range(20):
            loss = ((algo.predict(theta, batch.support_x[i]) - batch.support_y[i]) ** 2).mean()
            grads = torch.autograd.grad(loss, list(theta.values()))
            norms.append(float(torch.sqrt(sum((g ** 2).sum() for g in grads))))
        with torch.no_grad():
            size = float(torch.sqrt(sum((v ** 2).sum() for v in theta.values())))
        g = statistics.median(norms)
        print(f"a = {lr}: MSE before the step {curve[:, 0].mean():.3f}, after it {curve[:, 1].mean():.3f}; "
              f"median |grad| {g:.1f}, |theta| {size:.1f}, a |grad| {float(lr) * g:.3f}")


if __name__ == "__main__":
    main()
