"""Peak live memory of one meta-iteration per meta-gradient mode (sine, 5 inner steps).

RSS is a poor measure of a graph's memory: freed blocks stay in the process until glibc
trims them, so RSS mostly shows the allocator's history. This script reads glibc's own count
of bytes in use (``mallinfo2``: ``uordblks + hblkhd``), sampled every 0.1 ms by a thread
while three meta-iterations run after a warm-up, in a fresh process per contender, and
reports

* ``held``: bytes the autograd graph holds at the end of the forward pass;
* ``peak``: the highest live bytes during forward and backward, above the starting level.

    python benchmarks/bench_memory.py --batches 25 500 2000
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import threading
import time

STEPS, K = 5, 10


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def live_mib() -> float:
    """MiB that glibc's malloc has handed out and not had back (small blocks plus mmapped ones)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return (m.uordblks + m.hblkhd) / 2 ** 20


class PeakSampler:
    """Context manager: samples ``live_mib()`` every 0.1 ms in a thread; ``peak`` is the
    highest level above the one at entry."""

    def __enter__(self) -> "PeakSampler":
        self.base, self._max, self._done = live_mib(), 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self._max = max(self._max, live_mib())
            time.sleep(0.0001)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._max = max(self._max, live_mib())

    @property
    def peak(self) -> float:
        return max(self._max - self.base, 0.0)


def measure(mode: str, meta_batch: int) -> dict[str, float]:
    """``held`` and ``peak`` MiB for one contender (run in a fresh process by ``main``)."""
    import torch
    import metagrad as mg
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch = mg.tasks.Sinusoid(k_shot=K, k_query=K).sample(meta_batch, torch.Generator().manual_seed(0))
    algo = mg.MAML(mg.models.MLP([1, 40, 40, 1]), inner_lr=0.01, inner_steps=STEPS, mode=mode,
                   vectorize=True, hf_delta=1e-3)
    for _ in range(2):
        algo.meta_loss(batch).backward()
    gc.collect()
    held = []
    with PeakSampler() as sampler:
        for _ in range(3):
            loss = algo.meta_loss(batch)
            held.append(live_mib() - sampler.base)
            loss.backward()
    return {"held": max(held), "peak": sampler.peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", nargs="+", type=int, default=[25, 500, 2000])
    ap.add_argument("--modes", nargs="+", default=["second_order", "first_order", "hessian_free"])
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: MODE BATCH in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    print(f"sine, {STEPS} inner steps, MLP 1-40-40-1, float32; live heap MiB above the start of the iteration")
    print("| meta-batch | mode | held after forward | peak |\n|---|---|---|---|")
    for b in args.batches:
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, "--one", mode, str(b)], capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {b} | {mode} | {r['held']:.2f} | {r['peak']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
