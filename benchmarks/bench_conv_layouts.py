"""Three kernels torch picks inside a vmapped second-order conv4 step, against what they could be.

``bench_table3.py --ops`` shows where 001 Table 3's Omniglot cells spend their time; three of its
large rows are computed slower than the same numbers can be on this CPU (oneDNN), and none of them
is reachable from the library without replacing a torch kernel or formula, so they are measured
here, on layer 2's shapes (64 -> 64 channels, 3x3, stride 2, 14x14 -> 7x7), as vmap hands them on
(tasks as groups):

* ``data``: the input gradient of the grouped convolution (``convolution_backward``, mask data
  only), in torch's NCHW layout, against the same call on channels-last tensors plus the copy of its
  result back to NCHW (per-image 2-d transposes, torch's fast path for a transposed copy).
* ``transposed``: the grouped transposed convolution of the convolution's double backward, the same
  two ways.
* ``gW``: the double backward's weight term ``conv(ggI, gO)``: torch 2.13's
  ``_convolution_double_backward`` computes it as one dilated convolution per group (64 calls per
  20-way iteration), against one grouped weight gradient (``convolution_backward``, mask weight only),
  which is the same quantity.

Each pair is checked for equal values and timed in interleaved rounds (medians, per-round ratio
torch / alternative with a distribution-free 95% interval of its median).

    OMP_NUM_THREADS=1 python benchmarks/bench_conv_layouts.py --threads 1 --rounds 15
"""
from __future__ import annotations

import argparse
import statistics
from typing import Callable

import torch
import torch.nn.functional as F

from timing import cpu_description, interleaved, median_interval

CL = torch.channels_last
SHAPES = {"5-way (32 tasks of 5 images)": (5, 32), "20-way (16 tasks of 20 images)": (20, 16)}
_bwd = torch.ops.aten.convolution_backward


def to_nchw(y: torch.Tensor) -> torch.Tensor:
    """A channels-last ``[N, C, H, W]`` tensor copied to NCHW one image at a time (a 2-d transpose each)."""
    n, c, h, w = y.shape
    out = torch.empty((n, c, h, w), dtype=y.dtype)
    rows = y.permute(0, 2, 3, 1).reshape(n, h * w, c)
    for i in range(n):
        out[i].view(c, h * w).copy_(rows[i].t())
    return out


def pairs(n: int, g: int) -> dict[str, tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]]:
    """For ``n`` images of each of ``g`` tasks: name -> (torch's computation, the alternative)."""
    c, h, ho = 64 * g, 14, 7
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, h, generator=gen)
    w = torch.randn(c, 64, 3, 3, generator=gen)
    go = torch.randn(n, c, ho, ho, generator=gen)
    conf = ([2, 2], [1, 1], [1, 1], False, [0, 0], g)

    def data_torch() -> torch.Tensor:
        return _bwd(go, x, w, None, *conf, [True, False, False])[0]

    def data_cl() -> torch.Tensor:   # the input's values are not read: an uninitialised channels-last stand-in
        stand_in = torch.empty(x.shape, memory_format=CL)
        return to_nchw(_bwd(go.contiguous(memory_format=CL), stand_in, w, None, *conf, [True, False, False])[0])

    def transposed_torch() -> torch.Tensor:
        return F.conv_transpose2d(go, w, stride=2, padding=1, output_padding=1, groups=g)

    def transposed_cl() -> torch.Tensor:
        return to_nchw(F.conv_transpose2d(go.contiguous(memory_format=CL), w, stride=2, padding=1,
                                          output_padding=1, groups=g))

    def gw_torch() -> torch.Tensor:   # _convolution_double_backward's loop over groups
        ggi_t, go_t = x.transpose(0, 1), go.transpose(0, 1)
        parts = [F.conv2d(ggi_t[k * 64:(k + 1) * 64], go_t[k * 64:(k + 1) * 64], padding=1, dilation=2)
                 .narrow(2, 0, 3).narrow(3, 0, 3).transpose(0, 1) for k in range(g)]
        return torch.cat(parts, 0)

    def gw_grouped() -> torch.Tensor:
        return _bwd(go, x, w, None, *conf, [False, True, False])[1]

    return {"data": (data_torch, data_cl), "transposed": (transposed_torch, transposed_cl),
            "gW": (gw_torch, gw_grouped)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"layer 2 of conv4 under vmap; {cpu_description()}, {args.threads} threads, {args.rounds} interleaved rounds")
    print("| shape | computation | torch ms | alternative ms | torch / alternative per round (95% interval) "
          "| max abs difference |\n| --- | --- | ---: | ---: | --- | ---: |")
    for label, (n, g) in SHAPES.items():
        for name, (ours, alt) in pairs(n, g).items():
            diff = (ours() - alt()).abs().max().item()
            t = interleaved({"torch": ours, "alt": alt}, args.rounds, 1)
            a = [r[0] for r in t["torch"]]
            b = [r[0] for r in t["alt"]]
            ratios = [p / q for p, q in zip(a, b)]
            lo, hi = median_interval(ratios)
            print(f"| {label} | {name} | {1000 * statistics.median(a):.1f} | {1000 * statistics.median(b):.1f} "
                  f"| {statistics.median(ratios):.2f} ({lo:.2f}-{hi:.2f}) | {diff:.1e} |")


if __name__ == "__main__":
    main()
