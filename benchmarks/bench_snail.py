"""Speed of SNAIL's causal convolution: one matrix product per tap against ``F.conv1d``.

``metagrad.models.CausalConv1d`` computes ``y_t = b + sum_j W_j x_{t - (k - 1 - j) d}`` as one matrix
product per tap on the channels-last sequence. The textbook way is ``F.conv1d`` on the left-padded,
channels-first sequence (the same parameters, ``conv.weight [out, C, k]``), which oneDNN runs slowly
for dilated convolutions over short sequences. Both run one training meta-iteration (sample a
meta-batch, forward, backward, Adam step) of the ``sine-snail`` and ``omniglot-snail`` presets (000
appendix G's sine SNAIL; SNAIL on the conv4 embedding, 5-way 1-shot, meta-batch 32), each from the
same initial weights, rounds interleaved in shuffled order (``timing.interleaved``); medians reported,
with the per-round ratio conv1d / taps. The first meta-iteration's losses must agree (else it stops). Omniglot comes from ``$METAGRAD_DATA``, else ``../shared/data``
(skipped, with a line saying so, where it is missing).

    OMP_NUM_THREADS=1 python benchmarks/bench_snail.py --threads 1 --rounds 7
"""
from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from metagrad.errors import MetagradError  # noqa: E402
from metagrad.experiments.building import build, optimizer  # noqa: E402
from metagrad.experiments.presets import get_preset  # noqa: E402
from metagrad.models.snail import CausalConv1d  # noqa: E402
from timing import data_root, interleaved  # noqa: E402  (benchmarks/timing.py, beside this script)

_TAPS = CausalConv1d.forward


def _conv1d(self: CausalConv1d, x: torch.Tensor) -> torch.Tensor:
    """The reference: ``nn.Conv1d`` on the left-padded sequence, channels first and back."""
    pad = (self.kernel - 1) * self.dilation
    return self.conv(F.pad(x.transpose(1, 2), (pad, 0))).transpose(1, 2)


@contextmanager
def _forward(fn: Callable) -> Iterator[None]:
    CausalConv1d.forward = fn
    try:
        yield
    finally:
        CausalConv1d.forward = _TAPS


def contender(preset: str, conv: Callable, meta_batch: int) -> Callable[[], float]:
    """One meta-iteration of ``preset`` with ``conv`` as the causal convolution; returns the loss."""
    cfg = get_preset(preset).override([f"outer.meta_batch={meta_batch}"] if meta_batch else [])
    if cfg.task["name"] == "omniglot" and (root := data_root()):
        cfg = cfg.override([f"task.root={root}"])
    algo, task = build(cfg)
    opt, g = optimizer(cfg, algo), torch.Generator().manual_seed(0)

    def step() -> float:
        with _forward(conv):
            loss = algo.meta_loss(task.sample(cfg.outer["meta_batch"], g))
            opt.zero_grad()
            loss.backward()
        opt.step()
        return loss.item()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["sine-snail", "omniglot-snail"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=3, help="meta-iterations per contender per round")
    ap.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted")
    ap.add_argument("--meta-batch", type=int, default=0, help="override the preset's (0: keep it)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {a.rounds} rounds of {a.iters} "
          f"meta-iterations after {a.warmup} warm-up round(s); medians")
    print("| preset | taps (metagrad) ms | F.conv1d ms | conv1d / taps: ratio of medians; median of per-round ratios (range) |")
    print("| --- | ---: | ---: | --- |")
    for preset in a.presets:
        try:
            steps = {name: contender(preset, fn, a.meta_batch) for name, fn in (("taps", _TAPS), ("conv1d", _conv1d))}
        except MetagradError as e:   # Omniglot not here: the other presets still run
            print(f"| {preset} | skipped: {e} | | |")
            continue
        first = {k: f() for k, f in steps.items()}   # same weights, same batch: the same loss
        if abs(first["taps"] - first["conv1d"]) > 1e-4 * max(1.0, abs(first["conv1d"])):
            raise SystemExit(f"{preset}: the two convolutions disagree: loss {first['taps']} vs {first['conv1d']}")
        if a.warmup:
            interleaved(steps, a.warmup, 1)
        t = interleaved(steps, a.rounds, a.iters, seed=1)
        per_round = {k: [1e3 * statistics.median(r) for r in v] for k, v in t.items()}
        med = {k: statistics.median(v) for k, v in per_round.items()}
        ratios = [c / s for s, c in zip(per_round["taps"], per_round["conv1d"])]
        print(f"| {preset} | {med['taps']:.1f} | {med['conv1d']:.1f} | {med['conv1d'] / med['taps']:.2f}x; "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
