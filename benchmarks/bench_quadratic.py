"""Cost of one meta-gradient of MAML, FO-MAML and HF-MAML against the dimension ``d`` (002's claim (c)).

002 (Fallah et al. 2020, Table 1): FO-MAML and HF-MAML cost O(d) per iteration, MAML O(d^2) when it
forms Hessians. Here: quadratic tasks (``metagrad.tasks.Quadratic``) and a linear model with ``d``
parameters, one inner step, meta-batch ``B`` tasks with ``D_in = D_o = D_h = D`` examples, batches
drawn once beforehand (so data generation is not timed, unlike ``metagrad reproduce
maml-convergence``'s time rows). Time: ``meta_loss(batch, D_h) + backward``, rounds interleaved in
shuffled order, medians. Peak memory: the live heap above its level at the start of three warm
iterations, in a fresh process per contender (``bench_memory.PeakSampler``).

    python benchmarks/bench_quadratic.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

import metagrad as mg  # noqa: E402
from timing import interleaved  # noqa: E402  (benchmarks/timing.py, beside this script)

MODES = {"second_order": "MAML", "first_order": "FO-MAML", "hessian_free": "HF-MAML"}


def make(mode: str, dim: int, batch: int) -> Callable[[], float]:
    """One meta-gradient of ``mode`` at dimension ``dim`` (a closure over pre-drawn batches)."""
    task = mg.tasks.Quadratic(dim=dim, k_shot=batch, k_query=batch, noise=0.5)
    g = torch.Generator().manual_seed(0)
    b = task.sample(batch, g)
    h = task.resample(b, batch, g) if mode != "first_order" else None
    algo = mg.MAML(mg.models.LinearModel(dim), inner_lr=0.1, inner_steps=1, mode=mode, hf_delta=1e-3)

    def step() -> float:
        algo.zero_grad(set_to_none=True)
        loss = algo.meta_loss(b, h)
        loss.backward()
        return loss.item()
    return step


def sampled_peak(mode: str, dim: int, batch: int) -> float:
    from bench_memory import PeakSampler
    import gc
    step = make(mode, dim, batch)
    for _ in range(2):
        step()
    gc.collect()
    with PeakSampler() as s:
        for _ in range(3):
            step()
    return s.peak


def peak_memory(mode: str, dim: int, batch: int) -> float:
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import bench_quadratic as b, torch; torch.set_num_threads(1); "
            f"print(b.sampled_peak({mode!r}, {dim}, {batch}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--batch", type=int, default=25, help="B = D (tasks, and examples per D_in, D_o, D_h)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [(m, d) for d in args.dims for m in MODES]
    steps = {n: make(n[0], n[1], args.batch) for n in names}
    for s in steps.values():
        s()
    rounds = interleaved({n: steps[n] for n in names}, args.rounds, args.iters)
    med = {n: 1000 * statistics.median(t for r in v for t in r) for n, v in rounds.items()}
    mem = {} if args.no_memory else {n: peak_memory(n[0], n[1], args.batch) for n in names}
    print(f"quadratic tasks, linear model, one inner step, B = D = {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.rounds}x{args.iters} interleaved iterations")
    print("| d | " + " | ".join(f"{v} ms" for v in MODES.values()) + " | HF/FO | "
          + " | ".join(f"{v} peak MiB" for v in MODES.values()) + " |")
    print("| --- " * (2 * len(MODES) + 2) + "|")
    for d in args.dims:
        ms = [med[m, d] for m in MODES]
        mib = [mem.get((m, d), float("nan")) for m in MODES]
        print(f"| {d} | " + " | ".join(f"{v:.2f}" for v in ms) + f" | {med['hessian_free', d] / med['first_order', d]:.2f} | "
              + " | ".join(f"{v:.1f}" for v in mib) + " |")
    if len(args.dims) > 1:
        lo, hi = args.dims[0], args.dims[-1]
        import math
        slopes = {MODES[m]: math.log(med[m, hi] / med[m, lo]) / math.log(hi / lo) for m in MODES}
        print(f"log-log slope of time from d={lo} to d={hi}: " + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"ms": {f"{m}:{d}": v for (m, d), v in med.items()},
                                               "peak_mib": {f"{m}:{d}": v for (m, d), v in mem.items()}}, indent=2))


if __name__ == "__main__":
    main()
