"""Milliseconds per meta-iteration on the conv4 Omniglot 5-way 1-shot workload.

Workload (Finn et al. 2017): conv4 (64 filters, stride 2, batch norm), 28x28 real Omniglot
tasks, 5-way 1-shot with one query image per class, meta-batch 32, one inner SGD step of
0.4, Adam; one meta-iteration = forward, backward and optimiser step.

Contenders, timed in one process with rounds interleaved in shuffled order (the machine's
speed swings by 30% within seconds), medians reported:

* ``metagrad vmap``: ``mg.MAML`` (vmapped over tasks, exact transductive batch norm);
* ``metagrad loop``: the same with ``vectorize=False`` (a Python loop over tasks);
* ``learn2learn``: ``l2l.algorithms.MAML`` (module cloning, a loop over tasks, gradients
  accumulated per task as in its examples) on the same architecture with ``nn.BatchNorm2d``;
* ``metagrad vmap ... nn.BatchNorm2d``: the vmapped contender with torch's ``nn.BatchNorm2d`` in the
  model, which ``metagrad.exact`` runs with the same exact batch norm (whose fused kernel would give
  wrong second-order meta-gradients under vmap in torch 2.13, DESIGN.md section 2): a user's module
  costs what conv4's own norm costs, and the gap between the two rows shows the run's noise.

The allocator setting of DESIGN.md section 2 is applied at start for every contender
(``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` via ctypes: glibc then
keeps freed buffers instead of returning them to the system and faulting them in again).
Peak memory: each contender runs again alone (3 iterations) in a fresh subprocess; its peak
resident set size (``VmHWM``, reset after the data are loaded) and the growth over its resident
size before the first iteration are reported. Last, learn2learn's time over ``metagrad vmap``'s
in each round (the two ran within seconds of each other) and the median of those ratios, per
mode, with the ratio of the peaks.

Run it with learn2learn's interpreter (metagrad is put on ``sys.path``)::

    /opt/l2l-venv/bin/python benchmarks/bench_conv4.py [--rounds 7] [--threads N] [--no-malloc]

With the project's interpreter (no learn2learn) the learn2learn rows are skipped. The Omniglot
data come from ``$METAGRAD_DATA`` when it is set, else ``../shared/data``. ``--profile NAME``
instead runs ``torch.profiler`` over a few meta-iterations of one contender and prints where the
time goes (operators by self CPU time), e.g. ``--profile "metagrad vmap second_order"``.
``--device cuda`` times the same contenders on a GPU (models and batches moved there; each step
ends with ``loss.item()``, so the clock covers the device's work) and reports each one's peak
allocated device memory over one meta-iteration instead of the resident set.

``--flops`` also counts each contender's floating-point operations in one meta-iteration
(``torch.utils.flop_counter``: convolutions and matrix products, forward and backward, counted on
``metagrad loop``'s plain per-task convolutions: every contender of a mode computes the same thing,
and the counter's formula for a grouped convolution's backward, which vmap runs, ignores the groups)
and prints its throughput,
GFLOP/s = count / median time, beside a contender that is nothing but oneDNN's convolutions: the
four layers' forward and both gradients (the first layer's weight gradient only) on
``meta-batch x 5`` images with shared weights, timed in the same rounds. A meta-iteration cannot run
faster than its convolution count at that rate, which bounds what any implementation on this
machine can reach.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from metagrad.experiments.system import tune_malloc  # noqa: E402
from timing import cpu_description, data_root, median_interval  # noqa: E402  (benchmarks/timing.py, beside this script)


def import_l2l():
    try:
        sys.path.insert(0, "/opt/l2l-venv")
        from l2l_stub import import_learn2learn
        return import_learn2learn()
    except Exception:  # noqa: BLE001 - any failure just drops the learn2learn rows
        return None


def make_contenders(l2l, device: str = "cpu") -> dict[str, Callable[[], Callable]]:
    """name -> factory of a ``step(batch)`` closure (built lazily: one model per contender)."""
    import torch
    import torch.nn.functional as F

    import metagrad as mg
    from metagrad.models.conv4 import Conv4

    def ours(mode: str, vectorize: bool, norm: str = "batch") -> Callable[[], Callable]:
        def make() -> Callable:
            torch.manual_seed(0)
            algo = mg.MAML(Conv4(norm=norm), inner_lr=0.4, inner_steps=1, mode=mode,
                           loss="cross_entropy", vectorize=vectorize).to(device)
            opt = torch.optim.Adam(algo.parameters(), 1e-3)

            def step(batch) -> float:
                loss = algo.meta_loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return loss.item()
            return step
        return make

    def learn2learn(first_order: bool) -> Callable[[], Callable]:
        def make() -> Callable:
            torch.manual_seed(0)
            maml = l2l.algorithms.MAML(Conv4(norm="torch").to(device), lr=0.4, first_order=first_order)
            opt = torch.optim.Adam(maml.parameters(), 1e-3)

            def step(batch) -> float:  # learn2learn's maml_omniglot.py loop
                opt.zero_grad(set_to_none=True)
                total = 0.0
                for i in range(batch.n_tasks):
                    learner = maml.clone()
                    learner.adapt(F.cross_entropy(learner(batch.support_x[i]), batch.support_y[i]))
                    loss = F.cross_entropy(learner(batch.query_x[i]), batch.query_y[i])
                    (loss / batch.n_tasks).backward()
                    total += loss.item()
                opt.step()
                return total / batch.n_tasks
            return step
        return make

    c = {"metagrad vmap second_order": ours("second_order", True),
         "metagrad vmap first_order": ours("first_order", True),
         "metagrad loop second_order": ours("second_order", False),
         "metagrad loop first_order": ours("first_order", False)}
    if l2l is not None:
        c["learn2learn second_order"] = learn2learn(False)
        c["learn2learn first_order"] = learn2learn(True)
    c["metagrad vmap second_order, nn.BatchNorm2d"] = ours("second_order", True, "torch")
    return c


def bare_convolutions(meta_batch: int, device: str = "cpu") -> Callable:
    """``step(batch)``: conv4's four convolutions, forward and both gradients (the images' gradient
    skipped), on ``meta_batch x 5`` random images with one set of weights: oneDNN's throughput on
    the workload's shapes, with nothing else (no batch norm, no per-task weights, no copies)."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(0)
    shapes = [(1, 28), (64, 14), (64, 7), (64, 4)]
    xs = [torch.randn(meta_batch * 5, c, s, s, generator=g).to(device).requires_grad_(c > 1) for c, s in shapes]
    ws = [torch.randn(64, c, 3, 3, generator=g).to(device).requires_grad_() for c, _ in shapes]

    def step(batch) -> float:
        total = 0.0
        for x, w in zip(xs, ws):
            y = F.conv2d(x, w, stride=2, padding=1)
            torch.autograd.grad(y, [x, w] if x.requires_grad else [w], torch.ones_like(y))
            total += y[0, 0, 0, 0].item()
        return total
    return step


def count_gflop(step: Callable, batch) -> float:
    """GFLOP of one call of ``step`` (convolutions and matrix products, by ``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        step(batch)
    return fc.get_total_flops() / 1e9


def batches(n: int, meta_batch: int, device: str = "cpu"):
    import torch

    from metagrad.tasks.omniglot import Omniglot
    tasks = Omniglot("train", n_way=5, k_shot=1, k_query=1, root=data_root())
    g = torch.Generator().manual_seed(0)
    return [tasks.sample(meta_batch, g).to(device) for _ in range(n)]


def memory_child(name: str, meta_batch: int, threads: int, malloc: bool) -> dict:
    """Run in a fresh process: peak RSS of 3 iterations of one contender."""
    import torch
    if malloc:
        tune_malloc()
    torch.set_num_threads(threads)
    l2l = import_l2l() if name.startswith("learn2learn") else None
    data = batches(3, meta_batch)
    step = make_contenders(l2l)[name]()
    before = _rss_mib("VmRSS")
    _reset_peak()  # so that loading the data does not count as the contender's peak
    for b in data:
        step(b)
    peak = _rss_mib("VmHWM")
    return {"peak_mib": peak, "growth_mib": peak - before}


def _rss_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    try:  # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def profile(name: str, meta_batch: int, iterations: int = 3, rows: int = 25) -> None:
    """Print the operators of ``iterations`` meta-iterations of contender ``name`` by self CPU time
    (after one untimed warm-up iteration), and the total per iteration."""
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile
    contenders = make_contenders(import_l2l() if name.startswith("learn2learn") else None)
    if name not in contenders:
        raise SystemExit(f"bench_conv4: unknown contender {name!r}; choose one of {', '.join(contenders)}")
    step = contenders[name]()
    data = batches(iterations + 1, meta_batch)
    step(data[0])
    t = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for b in data[1:]:
            step(b)
    ms = 1000 * (time.perf_counter() - t) / iterations
    print(f"{name}: {ms:.0f} ms per meta-iteration under the profiler ({iterations} iterations, "
          f"{torch.get_num_threads()} threads)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--meta-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (off the CPU: peak device memory "
                    "of one meta-iteration per contender instead of the resident-set subprocesses)")
    ap.add_argument("--no-malloc", action="store_true", help="leave glibc's allocator settings alone")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-contender memory subprocesses")
    ap.add_argument("--no-timing", action="store_true", help="only the memory subprocesses")
    ap.add_argument("--only", default="", help="comma-separated substrings selecting contenders")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--profile", metavar="NAME", help="profile one contender's meta-iterations instead of timing")
    ap.add_argument("--flops", action="store_true", help="also count each contender's GFLOP per meta-iteration and "
                    "print GFLOP/s, beside oneDNN's bare convolutions on the same shapes")
    ap.add_argument("--_memory-child", dest="child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch
    threads = args.threads or torch.get_num_threads()
    if args.child:
        print(json.dumps(memory_child(args.child, args.meta_batch, threads, not args.no_malloc)))
        return
    malloc = tune_malloc() if not args.no_malloc else False
    torch.set_num_threads(threads)
    if args.profile:
        profile(args.profile, args.meta_batch)
        return
    import metagrad as mg
    try:
        device = str(mg.resolve_device(args.device))
    except mg.errors.DeviceError as e:
        raise SystemExit(f"bench_conv4: {e}") from None
    on_cpu = device == "cpu"
    l2l = import_l2l()
    contenders = make_contenders(l2l, device)
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        contenders = {n: f for n, f in contenders.items() if any(k in n for k in keys)}
    steps = {n: make() for n, make in contenders.items()}
    if args.flops:
        steps["bare convolutions"] = bare_convolutions(args.meta_batch, device)
    data = [] if args.no_timing else batches(args.warmup + args.rounds, args.meta_batch, device)
    times: dict[str, list[float]] = {n: [] for n in steps}
    gflop = {m: count_gflop(make_contenders(None, device)[f"metagrad loop {m}"](), data[-1])
             for m in ("second_order", "first_order")} if args.flops and data else {}
    rng = random.Random(0)
    for r, batch in enumerate(data):
        order = list(steps)
        rng.shuffle(order)
        for n in order:
            t = time.perf_counter()
            steps[n](batch)
            if r >= args.warmup:
                times[n].append(time.perf_counter() - t)
        print(f"round {r + 1}/{len(data)} done", file=sys.stderr, flush=True)
    rows = []
    for n in steps:
        row = {"contender": n}
        if times[n]:
            row.update({"median_ms": 1000 * statistics.median(times[n]), "min_ms": 1000 * min(times[n]),
                        "max_ms": 1000 * max(times[n])})
        if args.flops and data:
            mode = next((m for m in ("second_order", "first_order") if m in n), None)
            row["gflop"] = gflop[mode] if mode else count_gflop(steps[n], data[-1])
            if times[n]:
                row["gflop_per_s"] = row["gflop"] / statistics.median(times[n])
        if n == "bare convolutions":
            rows.append(row)
            continue
        if not args.no_memory and device.startswith("cuda") and data:   # one more meta-iteration: its device peak
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            steps[n](data[-1])
            row.update({"peak_mib": torch.cuda.max_memory_allocated(device) / 2 ** 20,
                        "growth_mib": (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20})
        elif not args.no_memory and on_cpu:
            cmd = [sys.executable, __file__, "--_memory-child", n, "--meta-batch", str(args.meta_batch),
                   "--threads", str(threads)] + (["--no-malloc"] if args.no_malloc else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row.update(json.loads(out.strip().splitlines()[-1]))
        rows.append(row)
    where = f"{cpu_description()}, {threads} threads, malloc tuned: {malloc}" if on_cpu else f"{device}" + \
        (f" ({torch.cuda.get_device_name(device)}), memory: the device's allocated bytes" if device.startswith("cuda") else "")
    print(f"\nconv4 Omniglot 5-way 1-shot, meta-batch {args.meta_batch}, 1 inner step; torch {torch.__version__}, "
          f"{where}; {args.rounds} interleaved rounds, medians")
    mem_cols = "peak RSS MiB | growth MiB" if on_cpu else "peak device MiB | growth MiB"
    print(f"| contender | median ms | min ms | max ms | {mem_cols} |\n|---|---|---|---|---|---|")
    for row in rows:
        mem = (f"{row['peak_mib']:.0f} | {row['growth_mib']:.0f}" if "peak_mib" in row else "- | -")
        ms = " | ".join(f"{row[k]:.0f}" if k in row else "-" for k in ("median_ms", "min_ms", "max_ms"))
        print(f"| {row['contender']} | {ms} | {mem} |")
    if args.flops:
        print("\nGFLOP per meta-iteration (convolutions and matrix products) and throughput, GFLOP / median time")
        print("| contender | GFLOP | GFLOP/s |\n|---|---|---|")
        for row in rows:
            if "gflop" in row:
                rate = f"{row['gflop_per_s']:.1f}" if "gflop_per_s" in row else "-"
                print(f"| {row['contender']} | {row['gflop']:.2f} | {rate} |")
    ratios = round_ratios(times)
    if ratios:
        print("\nlearn2learn / metagrad vmap, same mode, per round (above 1: metagrad is faster): "
              "median of the rounds' ratios, a distribution-free 95% interval of that median (order "
              "statistics), their range; peak memory metagrad / learn2learn")
        peaks = {row["contender"]: row.get("peak_mib") for row in rows}
        for mode, rr in ratios.items():
            mem = peaks.get(f"metagrad vmap {mode}"), peaks.get(f"learn2learn {mode}")
            mem_s = f"; memory {mem[0] / mem[1]:.2f}x" if None not in mem else ""
            lo, hi = median_interval(rr)
            print(f"  {mode}: {statistics.median(rr):.2f}x (95% interval {lo:.2f}-{hi:.2f}; range "
                  f"{min(rr):.2f}-{max(rr):.2f}){mem_s}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": threads, "malloc": malloc, "device": device, "cpu": cpu_description(), "rows": rows,
                                               "round_ratios": ratios}, indent=2))


def round_ratios(times: dict[str, list[float]]) -> dict[str, list[float]]:
    """mode -> learn2learn's time over metagrad vmap's in each interleaved round: the two ran within
    seconds of each other, so the ratio is steadier than the ratio of medians on a loaded machine."""
    out = {}
    for mode in ("second_order", "first_order"):
        ours, theirs = times.get(f"metagrad vmap {mode}"), times.get(f"learn2learn {mode}")
        if ours and theirs:
            out[mode] = [t / o for o, t in zip(ours, theirs)]
    return out


if __name__ == "__main__":
    main()
