"""Speed and memory of one meta-iteration on the sine workload (meta-batch 25, 5 inner steps).

Contenders, timed side by side in one process with rounds interleaved in shuffled order
(this machine's speed drifts by tens of percent within seconds), medians reported:

* metagrad vmapped (``vectorize=True``) in the three modes (SO, FO, HF side by side: issue 37 asks
  HF <= 1.5x FO), and compiled (``compile=True``: second order and Hessian-free);
* metagrad's own per-task loop (``vectorize=False``);
* learn2learn 0.2.0's ``MAML`` (second and first order), when importable.

Peak memory is measured per contender in a fresh subprocess: the peak live heap (glibc's
``mallinfo2``) above its level at the start of three warm meta-iterations.

    python benchmarks/bench_sine.py                      # metagrad only
    python benchmarks/bench_sine.py --modes --no-memory  # just SO / FO / HF vmapped (and compiled HF)
    /opt/l2l-venv/bin/python benchmarks/bench_sine.py    # with learn2learn (see benchmarks/README.md)
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

import metagrad as mg  # noqa: E402
from timing import interleaved  # noqa: E402  (benchmarks/timing.py, beside this script)

STEPS, META_BATCH, K = 5, 25, 10


def _learn2learn():
    try:
        sys.path.insert(0, str(Path(__file__).parent))
        from l2l_stub import import_learn2learn  # type: ignore
        return import_learn2learn()
    except Exception:
        return None


def make(name: str, meta_batch: int = META_BATCH) -> Callable[[], float]:
    """A closure running one meta-iteration of contender ``name``; returns the loss."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    task = mg.tasks.Sinusoid(k_shot=K, k_query=K)
    model = mg.models.MLP([1, 40, 40, 1])
    if name.startswith("l2l"):
        l2l = _learn2learn()
        maml = l2l.algorithms.MAML(model, lr=0.01, first_order=name.endswith("first_order"))
        opt = torch.optim.Adam(maml.parameters(), 1e-3)

        def step() -> float:
            b = task.sample(meta_batch, g)
            opt.zero_grad()
            total = 0.0
            for i in range(meta_batch):
                learner = maml.clone()
                for _ in range(STEPS):
                    learner.adapt(((learner(b.support_x[i]) - b.support_y[i]) ** 2).mean())
                q = ((learner(b.query_x[i]) - b.query_y[i]) ** 2).mean() / meta_batch
                q.backward()
                total += q.item()
            opt.step()
            return total
        return step
    impl, mode = name.split(":")
    mode, _, variant = mode.partition("+")   # "hessian_free+one_sided": the opt-in forward difference
    algo = mg.MAML(model, inner_lr=0.01, inner_steps=STEPS, mode=mode, vectorize=impl != "loop",
                   compile=impl == "compiled", hf_delta=1e-3, hf_one_sided=variant == "one_sided")
    opt = torch.optim.Adam(algo.parameters(), 1e-3)

    def step() -> float:
        loss = algo.meta_loss(task.sample(meta_batch, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def contenders(with_compile: bool, modes_only: bool = False, one_sided: bool = False) -> list[str]:
    names = [f"{impl}:{mode}" for impl in (("vmap",) if modes_only else ("vmap", "loop")) for mode in mg.MODES]
    if one_sided:
        names.append("vmap:hessian_free+one_sided")
    if with_compile:
        names += ["compiled:second_order", "compiled:hessian_free"]
    if modes_only:
        return names
    if _learn2learn() is not None:
        names += ["l2l:second_order", "l2l:first_order"]
    return names


def peak_memory(name: str, meta_batch: int) -> float:
    """MiB of peak live heap above the starting level during three meta-iterations (after two
    warm-up iterations), sampled every 0.1 ms by a thread, in a fresh process (see
    ``bench_memory.py`` for why live heap rather than RSS)."""
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import bench_sine as b, json; b.STEPS={STEPS}; s=b.make({name!r}, {meta_batch}); "
            "print(json.dumps(b.sampled_peak(s)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def sampled_peak(step: Callable[[], float]) -> float:
    import gc
    from bench_memory import PeakSampler
    for _ in range(2):
        step()
    gc.collect()
    with PeakSampler() as sampler:
        for _ in range(3):
            step()
    return sampler.peak


def main() -> None:
    global STEPS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per contender per round")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-batch", type=int, default=META_BATCH, help="meta-batch of the memory runs")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads for every contender")
    ap.add_argument("--modes", action="store_true", help="only the three modes vmapped (and compiled, unless "
                                                         "--no-compile): SO, FO, HF side by side")
    ap.add_argument("--one-sided", action="store_true", help="also HF with the opt-in one-sided difference "
                                                             "(hf_one_sided=True; not 002's eq. (9))")
    ap.add_argument("--steps", type=int, default=STEPS, help="inner steps (002's algorithms take one)")
    args = ap.parse_args()
    STEPS = args.steps
    if args.threads:
        torch.set_num_threads(args.threads)
    names = contenders(not args.no_compile, args.modes, args.one_sided)
    steps: dict[str, Callable[[], float]] = {}
    compile_s: dict[str, float] = {}
    for n in names:
        t = time.perf_counter()
        steps[n] = make(n)
        for _ in range(3):  # warm-up (and compilation)
            steps[n]()
        if n.startswith("compiled"):
            compile_s[n] = time.perf_counter() - t
    rounds = interleaved({n: steps[n] for n in names}, args.rounds, args.iters)
    med = {n: 1000 * statistics.median(t for r in v for t in r) for n, v in rounds.items()}
    mem = {} if args.no_memory else {n: peak_memory(n, args.memory_batch) for n in names if not n.startswith("compiled")}
    ref = {m: med.get(f"l2l:{m}") for m in ("second_order", "first_order")}
    print(f"sine, meta-batch {META_BATCH}, {STEPS} inner steps, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.rounds}x{args.iters} interleaved iterations")
    print(f"{'contender':28s} {'ms/iter':>9s} {'vs l2l (same order)':>20s} {'peak MiB':>9s}"
          + (f"  (peak: meta-batch {args.memory_batch})" if not args.no_memory else ""))
    for n in names:
        mode = n.split(":")[1].partition("+")[0]
        base = ref.get(mode) or ref.get("second_order")
        speed = f"{base / med[n]:.1f}x" if base and not n.startswith("l2l") else ("1.0x" if n.startswith("l2l") else "-")
        print(f"{n:28s} {med[n]:9.2f} {speed:>20s} {mem.get(n, float('nan')):9.2f}")
    for n, s in compile_s.items():
        print(f"{n}: {s:.1f} s of one-time compilation (incl. 3 warm-up iterations)")
    hf, fo, so = med["vmap:hessian_free"], med["vmap:first_order"], med["vmap:second_order"]
    ratios = {"hf_over_fo": hf / fo, "hf_over_so": hf / so, "so_over_fo": so / fo}
    if "vmap:hessian_free+one_sided" in med:
        ratios["hf_one_sided_over_fo"] = med["vmap:hessian_free+one_sided"] / fo
        print(f"HF one-sided (opt-in, not 002's eq. (9)): {med['vmap:hessian_free+one_sided']:.2f} ms, "
              f"{ratios['hf_one_sided_over_fo']:.2f}x FO")
    print(f"vmap, ms per meta-iteration: SO {so:.2f}, FO {fo:.2f}, HF {hf:.2f}; HF/FO {hf / fo:.2f} "
          f"(issue 37's target <= 1.5), HF/SO {hf / so:.2f}, SO/FO {so / fo:.2f}")
    # The count behind HF/FO: with K inner steps FO evaluates K + 1 gradients (K inner, one outer); HF
    # adds one finite-difference Hessian-vector product per step, in reverse order (each needs the
    # vector the step after it produced), one vmapped call of the gradient at w + d u and w - d u.
    k = STEPS
    per_grad, per_hvp = fo / (k + 1), (hf - fo) / k
    ratios.update({"ms_per_fo_gradient": per_grad, "ms_per_hf_hvp": per_hvp, "hf_over_fo_by_count": (2 * k + 1) / (k + 1)})
    print(f"by count ({k} inner steps): FO {k + 1} gradient evaluations, HF {k + 1} + {k} sequential Hessian-vector "
          f"products; {per_grad:.2f} ms per FO gradient, {per_hvp:.2f} ms per HVP ({per_hvp / per_grad:.2f} gradients): "
          f"HF/FO = {(2 * k + 1) / (k + 1):.2f} if an HVP costs one gradient")
    if args.json:
        Path(args.json).write_text(json.dumps({"ms": med, "peak_mib": mem, "compile_s": compile_s, "ratios": ratios},
                                              indent=2))


if __name__ == "__main__":
    main()
