"""One ``turtle-table6`` job on 1 thread against the same job on 2 threads (``--threads``).

Trains ``--tasks`` meta-training tasks of a cell (004 appendix A.1 settings, ``specs.turtle.config``,
all seeds as one ``Population``, through ``fit``, no validation, eager) with ``torch.set_num_threads(n)`` for each ``n`` in turn;
rounds are interleaved and medians reported, with the speed-up of 2 threads over 1. Meant for a
machine with nothing else running (another job on the second core makes 2 threads pointless).

    python benchmarks/bench_threads.py --model so-TURTLE --steps 10 --shots 20 --rounds 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from metagrad.experiments.building import make_module, optimizer  # noqa: E402
from metagrad.experiments.config import Config  # noqa: E402
from metagrad.experiments.specs.turtle import config  # noqa: E402  (004's settings, as data)
from metagrad.training import fit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="so-TURTLE")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--shots", type=int, default=20)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tasks", type=int, default=160)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    cfg = Config.from_dict(config(a.model, a.steps, a.shots))
    iterations = max(1, a.tasks // cfg.outer["meta_batch"])
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(a.rounds):
        for n in times:
            torch.set_num_threads(n)
            module, stream, _, _ = make_module(cfg, list(range(a.seeds)))
            res = fit(module, stream, optimizer(cfg, module), iterations, clip_value=cfg.outer["clip_value"]
                      if cfg.outer["clip_scope"] != "init_per_task" else None,
                      clip_keys=None if cfg.outer["clip_scope"] == "all" else (lambda k: k.startswith("model.")),
                      clip_norm=cfg.outer["clip_norm"], nonfinite="skip", explode=None)
            times[n].append(res.ms_per_iteration)
    med = {n: statistics.median(v) for n, v in times.items()}
    for n, v in times.items():
        print(f"{a.model} T={a.steps} k={a.shots}, {a.seeds} seeds, {n} thread(s): median {med[n]:.1f} ms/it "
              f"(rounds: {', '.join(f'{x:.1f}' for x in v)})")
    print(f"speed-up of 2 threads over 1: {med[1] / med[2]:.2f}x")


if __name__ == "__main__":
    main()
