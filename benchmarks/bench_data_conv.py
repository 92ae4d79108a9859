"""ms per meta-iteration with and without ``models/data_conv.py`` (the images' convolutions skipping
their unneeded gradient in second order's double backward), conv4 Omniglot, interleaved rounds.

Default workload: 001 Table 3's 20-way cell (five inner steps of 0.1, meta-batch 16, second order).
Both contenders are the same ``mg.MAML``; "torch conv" turns the routing off (``metagrad.exact.routable``
answers False) for its calls. Prints each one's median and the per-round ratio torch / data conv
(median, distribution-free 95% interval, range). Data from ``$METAGRAD_DATA``, else ``../shared/data``.

    OMP_NUM_THREADS=1 python benchmarks/bench_data_conv.py --threads 1 --rounds 10
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from metagrad.experiments.system import tune_malloc  # noqa: E402
from timing import cpu_description, data_root, interleaved, median_interval, meta_step, patched  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ways", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--meta-batch", type=int, default=16)
    ap.add_argument("--mode", default="second_order")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    import metagrad as mg
    import metagrad.exact as exact
    from metagrad.models.conv4 import Conv4
    from metagrad.tasks.omniglot import Omniglot
    tune_malloc()
    torch.set_num_threads(args.threads)
    tasks = Omniglot("train", n_way=args.ways, k_shot=1, k_query=1, root=data_root())
    g = torch.Generator().manual_seed(0)
    batch = tasks.sample(args.meta_batch, g)
    routable = exact.routable

    def contender(route: bool):
        torch.manual_seed(0)
        algo = mg.MAML(Conv4(n_way=args.ways), inner_lr=args.lr, inner_steps=args.steps, mode=args.mode,
                       loss="cross_entropy")
        opt = torch.optim.Adam(algo.parameters(), 1e-3)

        def step() -> float:
            with patched(exact, "routable", routable if route else (lambda *a, **k: False)):
                return meta_step(algo, opt, batch)
        step()   # warm-up
        return step

    steps = {"torch conv": contender(False), "data conv": contender(True)}
    times = {k: [r[0] for r in v] for k, v in interleaved(steps, args.rounds, 1).items()}
    print(f"conv4 Omniglot {args.ways}-way 1-shot, {args.steps} steps, meta-batch {args.meta_batch}, {args.mode}; "
          f"{cpu_description()}, {args.threads} threads; {args.rounds} interleaved rounds")
    for k, v in times.items():
        print(f"| {k} | median {1000 * statistics.median(v):.0f} ms |")
    ratios = [a / b for a, b in zip(times["torch conv"], times["data conv"])]
    lo, hi = median_interval(ratios)
    print(f"torch conv / data conv per round: {statistics.median(ratios):.3f} (95% interval {lo:.3f}-{hi:.3f}; "
          f"range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
