"""ms per meta-iteration of 001 Table 3's Omniglot cells at their reproduction's settings, interleaved rounds.

Each contender is one cell of ``metagrad reproduce omniglot-table3`` built as the reproduction builds it
(``specs.images.omniglot_config`` -> ``building.build`` / ``optimizer``: conv4, the cell's learner, inner
steps and meta-batch, second order) and stepped on one fixed batch of tasks; prints each one's median
and what 60,000 iterations take at that speed. ``--compare-compose`` adds, beside each MT-net cell, the
same cell with every T-net convolution as two convolutions (``TConv2d._compose`` answering False: the
layer's 3x3 convolution, then ``T`` as a 1x1 one) and the per-round ratio two / composed (median,
distribution-free 95% interval, range). ``--ops`` instead times one meta-iteration of each cell by aten
operator and shape (``op_times.py``): where the time goes, per layer. Data from ``$METAGRAD_DATA``, else
``../shared/data``.

    OMP_NUM_THREADS=1 python benchmarks/bench_table3.py --threads 1 --rounds 5
    OMP_NUM_THREADS=1 python benchmarks/bench_table3.py --cells MT-net_5way,MT-net_20way --compare-compose
    OMP_NUM_THREADS=1 python benchmarks/bench_table3.py --cells MAML_20way --ops
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from metagrad.experiments.system import tune_malloc  # noqa: E402
from timing import cpu_description, data_root, interleaved, median_interval, meta_step, patched  # noqa: E402

CELLS = ("MAML_5way", "Meta-SGD_5way", "MT-net_5way", "MAML_20way", "Meta-SGD_20way", "MT-net_20way")
TWO_CONVS = " (T as a 1x1 convolution)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", default=",".join(CELLS), help="comma-separated, of " + ", ".join(CELLS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare-compose", action="store_true", help="also each MT-net cell with two convolutions")
    ap.add_argument("--ops", action="store_true", help="time one meta-iteration of each cell by aten operator and shape")
    ap.add_argument("--top", type=int, default=25, help="with --ops: how many rows")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override every cell's config (smaller settings for a smoke run)")
    args = ap.parse_args()
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad:
        ap.error(f"--cells: unknown cell {bad[0]!r}; expected some of {', '.join(CELLS)}")
    import torch

    from metagrad.experiments.building import build, optimizer
    from metagrad.experiments.runner import resolve_config
    from metagrad.experiments.specs.images import omniglot_config
    from metagrad.models.tnet import TConv2d
    tune_malloc()
    torch.set_num_threads(args.threads)
    root = [f"task.root={r}"] if (r := data_root()) else []
    header = (f"001 Table 3 Omniglot cells (second order); {cpu_description()}, {args.threads} threads"
              + (f"; overrides {' '.join(args.set)}" if args.set else ""))
    composed = TConv2d._compose

    def contender(cell: str, compose: bool) -> Callable[[], float]:
        kind, ways = cell.rsplit("_", 1)
        cfg = resolve_config(omniglot_config(kind, int(ways.removesuffix("way"))), [*root, *args.set])
        torch.manual_seed(0)
        algo, tasks = build(cfg)
        opt = optimizer(cfg, algo)
        batch = tasks.sample(cfg.outer["meta_batch"], torch.Generator().manual_seed(0))

        def step() -> float:
            with patched(TConv2d, "_compose", composed if compose else (lambda self, x: False)):
                return meta_step(algo, opt, batch)
        step()   # warm-up
        return step

    if args.ops:
        from op_times import format_op_times, op_times
        print(header)
        for cell in cells:
            print(format_op_times(cell, *op_times(contender(cell, True)), top=args.top))
        return
    steps = {}
    for cell in cells:
        steps[cell] = contender(cell, True)
        if args.compare_compose and cell.startswith("MT-net"):
            steps[cell + TWO_CONVS] = contender(cell, False)
    times = {k: [r[0] for r in v] for k, v in interleaved(steps, args.rounds, 1).items()}
    print(f"{header}; {args.rounds} interleaved rounds")
    print("| cell | ms per meta-iteration (median) | 60,000 iterations, hours |\n| --- | ---: | ---: |")
    for k, v in times.items():
        print(f"| {k} | {1000 * statistics.median(v):.0f} | {60000 * statistics.median(v) / 3600:.1f} |")
    for k in times:
        if k.endswith(TWO_CONVS):
            ratios = [a / b for a, b in zip(times[k], times[k.removesuffix(TWO_CONVS)])]
            lo, hi = median_interval(ratios)
            print(f"{k.removesuffix(TWO_CONVS)}: two convolutions / composed per round {statistics.median(ratios):.3f} "
                  f"(95% interval {lo:.3f}-{hi:.3f}; range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
