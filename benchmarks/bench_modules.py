"""ms per meta-iteration per module class: the vmapped path against the per-task loop (issue 39).

Every call metagrad makes to a model runs inside ``metagrad.exact``'s mode, which replaces the
norm, attention and recurrent kernels by elementary ops so that second-order meta-gradients are
exact under ``vmap``. The default path (``vectorize="auto"``) is vmap for every module class;
this script measures whether that is the faster choice, class by class.

For each module class of the module-zoo contract test (``tests/test_module_zoo.py``) a small
float32 model, on sine-like regression tasks of a realistic size (meta-batch 16, 2 inner steps
of 0.01, 10 support and 10 query examples each): forward and backward of ``MAML.meta_loss``,
second order, on the vmapped path (``vectorize=True``) and on the per-task loop
(``vectorize=False``). All contenders are timed side by side in one process, rounds
interleaved in shuffled order, medians reported; ``loop / vmap`` is the ratio of the medians
(above 1: vmap is faster), with the range of the per-round ratios beside it.

The models are built here rather than imported from the test: the zoo's are float64 and tiny
(hidden width 6, sequences of 3) so that the contract test runs in seconds, while these are the
same architectures at a width (32) and length (8) worth timing.

    OMP_NUM_THREADS=1 python benchmarks/bench_modules.py --out modules.json
    python benchmarks/bench_modules.py --quick           # tiny settings (the smoke test)
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import metagrad as mg  # noqa: E402
from timing import interleaved  # noqa: E402  (benchmarks/timing.py, beside this script)

H, T, SIDE, CH, VOCAB = 32, 8, 8, 8, 20  # hidden width, sequence length, image side, conv channels, vocabulary
META_BATCH, STEPS, K, LR = 16, 2, 10, 0.01


class LastStep(nn.Module):
    """``Linear(1, H) -> core -> last time step -> Linear(H, 1)`` on ``[K, T, 1]`` sequences."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.embed, self.core, self.head = nn.Linear(1, H), core, nn.Linear(H, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.core(self.embed(x))
        h = h[0] if isinstance(h, tuple) else h  # recurrent: (output, hidden)
        return self.head(torch.tanh(h[:, -1]))


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` as self-attention, ``need_weights=False``."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(H, 4, batch_first=True)

    def forward(self, h: Tensor) -> Tensor:
        return self.mha(h, h, h, need_weights=False)[0]


class Sdpa(nn.Module):
    """A user's module: one head of causal attention with ``F.scaled_dot_product_attention``."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(H, 3 * H)

    def forward(self, h: Tensor) -> Tensor:
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _mlp(layer: nn.Module) -> nn.Module:
    """``Linear(1, H) -> layer -> Tanh -> Linear(H, H) -> Tanh -> Linear(H, 1)``."""
    return nn.Sequential(nn.Linear(1, H), layer, nn.Tanh(), nn.Linear(H, H), nn.Tanh(), nn.Linear(H, 1))


def _conv(dim: int, norm: Callable[[int], nn.Module] | None = None) -> nn.Module:
    """``Conv{dim}d(1, CH, 3) -> [norm] -> Tanh -> Linear(CH * side^dim, H) -> Tanh -> Linear(H, 1)``."""
    side = (4 * SIDE, SIDE)[dim - 1]
    conv = (nn.Conv1d, nn.Conv2d)[dim - 1](1, CH, 3, padding=1)
    return nn.Sequential(conv, *([norm(CH)] if norm else []), nn.Tanh(), nn.Flatten(),
                         nn.Linear(CH * side ** dim, H), nn.Tanh(), nn.Linear(H, 1))


# name -> (model builder, input kind); the classes of tests/test_module_zoo.py's ZOO
MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "MLP (no norm)": (lambda: _mlp(nn.Identity()), "vec"),
    "LayerNorm": (lambda: _mlp(nn.LayerNorm(H)), "vec"),
    "BatchNorm1d (batch stats)": (lambda: _mlp(nn.BatchNorm1d(H, track_running_stats=False)), "vec"),
    "BatchNorm1d (running stats, train)": (lambda: _mlp(nn.BatchNorm1d(H)), "vec"),
    "BatchNorm1d (running stats, eval)": (lambda: _mlp(nn.BatchNorm1d(H)).eval(), "vec"),
    "InstanceNorm1d": (lambda: _conv(1, lambda c: nn.InstanceNorm1d(c, affine=True)), "img1"),
    "GroupNorm": (lambda: _mlp(nn.Sequential(nn.Unflatten(1, (H, 1)), nn.GroupNorm(4, H), nn.Flatten())), "vec"),
    "RMSNorm": (lambda: _mlp(nn.RMSNorm(H)), "vec"),
    "Conv1d": (lambda: _conv(1), "img1"),
    "Conv2d": (lambda: _conv(2), "img2"),
    "Embedding": (lambda: nn.Sequential(nn.Embedding(VOCAB, CH), nn.Flatten(), nn.Tanh(), nn.Linear(T * CH, H),
                                        nn.Tanh(), nn.Linear(H, 1)), "tokens"),
    "Dropout (p=0.1, train)": (lambda: _mlp(nn.Dropout(0.1)), "vec"),
    "RNN": (lambda: LastStep(nn.RNN(H, H, batch_first=True)), "seq"),
    "GRU": (lambda: LastStep(nn.GRU(H, H, batch_first=True)), "seq"),
    "LSTM": (lambda: LastStep(nn.LSTM(H, H, batch_first=True)), "seq"),
    "MultiheadAttention": (lambda: LastStep(SelfAttention()), "seq"),
    "TransformerEncoderLayer": (lambda: LastStep(nn.TransformerEncoderLayer(H, 4, 2 * H, dropout=0.0,
                                                                            batch_first=True)), "seq"),
    "F.scaled_dot_product_attention (user module)": (lambda: LastStep(Sdpa()), "seq"),
}
PATHS = ("vmap", "loop")


def batch(kind: str, meta_batch: int, k: int, g: torch.Generator) -> mg.TaskBatch:
    """Sine-like regression tasks ``y = a sin(sum(x) / scale + phase)``, shaped for the model."""
    shape = {"vec": (1,), "seq": (T, 1), "img1": (1, 4 * SIDE), "img2": (1, SIDE, SIDE), "tokens": (T,)}[kind]
    amp = 0.1 + 4.9 * torch.rand(meta_batch, 1, 1, generator=g)
    phase = math.pi * torch.rand(meta_batch, 1, 1, generator=g)

    def draw() -> tuple[Tensor, Tensor]:
        if kind == "tokens":
            x = torch.randint(0, VOCAB, (meta_batch, k, *shape), generator=g)
        else:
            x = torch.rand(meta_batch, k, *shape, generator=g) * 10 - 5
        s = x.float().flatten(2).sum(-1, keepdim=True) / math.sqrt(x[0, 0].numel())
        return x, amp * torch.sin(s + phase)

    (sx, sy), (qx, qy) = draw(), draw()
    return mg.TaskBatch(sx, sy, qx, qy)


def make(name: str, path: str, meta_batch: int, k: int) -> Callable[[], float]:
    """A closure running one meta-iteration (forward and backward of ``meta_loss``, second order)."""
    torch.manual_seed(0)
    build, kind = MODELS[name]
    model = build().float()
    algo = mg.MAML(model, inner_lr=LR, inner_steps=STEPS, mode="second_order", vectorize=path == "vmap")
    b = batch(kind, meta_batch, k, torch.Generator().manual_seed(0))
    params = list(model.parameters())

    def step() -> float:
        for p in params:
            p.grad = None
        loss = algo.meta_loss(b)
        loss.backward()
        return loss.item()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per contender per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations per contender first")
    ap.add_argument("--meta-batch", type=int, default=META_BATCH)
    ap.add_argument("--shots", type=int, default=K, help="support and query examples per task")
    ap.add_argument("--only", nargs="+", choices=list(MODELS), metavar="MODULE", help="these module classes only")
    ap.add_argument("--quick", action="store_true",
                    help="tiny settings (meta-batch 2, 1 round of 1 iteration, no warm-up): does it run")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.iters, args.warmup, args.meta_batch, args.shots = 1, 1, 0, 2, 5
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.only or list(MODELS)
    keys = [(n, p) for n in names for p in PATHS]
    steps = {key: make(*key, args.meta_batch, args.shots) for key in keys}
    for key in keys:
        for _ in range(args.warmup):
            steps[key]()
    rounds = interleaved({key: steps[key] for key in keys}, args.rounds, args.iters)
    per_round = {key: [1000 * statistics.median(r) for r in v] for key, v in rounds.items()}  # median of each round
    med = {key: 1000 * statistics.median(t for r in v for t in r) for key, v in rounds.items()}
    print(f"module classes, float32, meta-batch {args.meta_batch}, {STEPS} inner steps, {args.shots} support + "
          f"{args.shots} query examples, second order; torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s); medians of {args.rounds} interleaved rounds x {args.iters} iterations")
    print()
    print("| module | vmap (ms/it) | loop (ms/it) | loop / vmap | per-round range |")
    print("| --- | ---: | ---: | ---: | --- |")
    rows = {}
    for n in names:
        v, lp = med[(n, "vmap")], med[(n, "loop")]
        rr = [a / b for a, b in zip(per_round[(n, "loop")], per_round[(n, "vmap")])]
        rows[n] = {"vmap_ms": v, "loop_ms": lp, "loop_over_vmap": lp / v,
                   "round_ratios": rr, "vmap_all_ms": [1000 * t for r in rounds[(n, "vmap")] for t in r],
                   "loop_all_ms": [1000 * t for r in rounds[(n, "loop")] for t in r]}
        print(f"| {n} | {v:.1f} | {lp:.1f} | {lp / v:.2f}x | {min(rr):.2f}-{max(rr):.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "settings": {"meta_batch": args.meta_batch, "inner_steps": STEPS, "shots": args.shots, "rounds": args.rounds,
                         "iters": args.iters, "threads": torch.get_num_threads(), "torch": torch.__version__,
                         "dtype": "float32", "mode": "second_order"},
            "modules": rows}, indent=2))


if __name__ == "__main__":
    main()
