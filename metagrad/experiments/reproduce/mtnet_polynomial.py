"""001 Fig. 4 (section 6.3): fraction of rows an MT-net updates vs polynomial order 0..3.

Tasks ``y = sum_{i<=n} c_i x^i``, ``c_i ~ U[-1, 1]``, 10-shot, 10 query points, with the
model and settings of the sine runs (``mtnet_common``). The reference code draws
``x ~ U[-2, 2]`` and divides ``c_i`` by ``2^i``; that is the same distribution of ``y`` as
``x ~ U[-1, 1]`` with undivided coefficients, which we use (the input is rescaled by 1/2).
The fraction is ``mean_j sigmoid(zeta_j)`` over every row of every layer (the probability of
eq. (9)); also reported: the fraction with ``sigmoid(zeta) > 1/2``, per layer, and 001's own
formula ``mean e^{-zeta}/(e^{-zeta}+1) = 1 - fraction`` (the reference code's "change probs").
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from ...learners.tnet import update_fraction, update_fractions
from ...plotting import pyplot, save_figure
from ...tasks.polynomial import Polynomial
from ..tables import row, write_results
from .mtnet_common import ITERATIONS, QUICK_ITERATIONS, QUICK_TEST_TASKS, TEST_TASKS, build, evaluate, summarise, train

NAME = "mtnet-polynomial"
DESCRIPTION = "001 Fig. 4: fraction of MT-net rows updated vs polynomial order 0..3"

ORDERS = (0, 1, 2, 3)


def poly_task(order: int) -> Polynomial:
    return Polynomial(k_shot=10, k_query=10, degree=order, coef_range=(-1.0, 1.0), x_range=(-1.0, 1.0))


def run(out: Path, quick: bool = False, seeds: Optional[int] = None, iterations: Optional[int] = None,
        test_tasks: Optional[int] = None, orders: tuple[int, ...] = ORDERS,
        first_seed: int = 0) -> list[dict[str, Any]]:
    """Train ``seeds`` MT-nets per order (default 3; seeds ``first_seed, first_seed + 1, ...``, each
    seeded on its own, so runs split over processes give the same numbers); write rows,
    ``fraction.png`` and the claim."""
    out = Path(out)
    seeds = seeds or (1 if quick else 3)   # one seed is too noisy to order the four fractions
    iters = iterations or (QUICK_ITERATIONS if quick else ITERATIONS)
    n_test = test_tasks or (QUICK_TEST_TASKS if quick else TEST_TASKS)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    records: dict[str, Any] = {}
    fractions: dict[int, list[float]] = {}
    note = (f"MT-net, {iters} meta-iterations (protocol: {ITERATIONS}), {seeds} seed(s); update_fraction = "
            "mean sigmoid(zeta) over all rows; 10-shot MSE after one step on "
            f"{n_test} test tasks. The paper gives the fraction only as a plot (Fig. 4).")
    for order in orders:
        fr, thr, vs = [], [], []
        for s in range(first_seed, first_seed + seeds):
            algo = build("MT-net", seed=s)
            rec = train(algo, poly_task(order), iters, seed=s,
                        progress=None if quick else f"order {order} seed {s}")
            info = rec.as_dict()
            if not rec.diverged:
                meta = algo.meta_params()
                info.update(update_fraction=update_fraction(meta),
                            threshold_fraction=update_fraction(meta, threshold=True),
                            per_layer=update_fractions(meta))
                fr.append(info["update_fraction"])
                thr.append(info["threshold_fraction"])
                vs.append(evaluate(algo, poly_task(order), n_test, seed=s))
            records[f"order={order}/seed{s}"] = info
        fractions[order] = fr
        setting = {"order": order, "k_shot": 10}
        f = torch.tensor(fr or [float("nan")], dtype=torch.float64)
        ci = float(1.96 * f.std() / len(fr) ** 0.5) if len(fr) > 1 else float("nan")
        rows.append(row("MT-net: fraction of rows updated", setting, "update_fraction", float(f.mean()), ci,
                        median=float(f.median()) if len(fr) > 1 else None, diverged=not fr,
                        threshold_fraction=(sum(thr) / len(thr)) if thr else None,
                        paper_formula_fraction=(1.0 - float(f.mean())) if fr else None))
        mean, ci_l, _ = summarise(torch.cat(vs)) if vs else (float("nan"),) * 3
        rows.append(row("MT-net: 10-shot MSE after one step", setting, "mse", mean, ci_l, diverged=not vs))
        write_results(out, NAME, rows, note, training=records, wall_clock_s=round(time.perf_counter() - t0, 1))
    means = [sum(fractions[o]) / len(fractions[o]) if fractions[o] else float("nan") for o in orders]
    # 001's Fig. 4 text averages e^{-l}/(e^{-l}+1) = 1 - sigmoid(l): the reference code's summary,
    # which is the probability that a row is *not* updated under its own mask. Both are reported.
    paper_formula = [1.0 - m for m in means]
    claims = {"fraction_by_order": dict(zip(map(str, orders), means)),
              "rises_with_order": len(means) > 1 and all(a < b for a, b in zip(means, means[1:])),
              "highest_order_above_lowest": len(means) > 1 and means[-1] > means[0],
              "paper_formula_by_order": dict(zip(map(str, orders), paper_formula)),
              "paper_formula_rises_with_order": len(means) > 1 and all(
                  a < b for a, b in zip(paper_formula, paper_formula[1:]))}
    _plot(out / "fraction.png", orders, fractions)
    write_results(out, NAME, rows, note + f" Claims: {claims}.", training=records, claims=claims,
                  wall_clock_s=round(time.perf_counter() - t0, 1))
    return rows


def _plot(path: Path, orders: tuple[int, ...], fractions: dict[int, list[float]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for o in orders:
        ax.scatter([o] * len(fractions[o]), fractions[o], color="tab:blue", alpha=0.5, s=12)
    means = [sum(fractions[o]) / len(fractions[o]) if fractions[o] else float("nan") for o in orders]
    ax.plot(orders, means, "o-", color="tab:blue", label="mean sigmoid(zeta) (update prob.)")
    ax.plot(orders, [1 - m for m in means], "s--", color="tab:orange", label="001's formula, 1 - sigmoid(zeta)")
    ax.set_xlabel("polynomial order")
    ax.set_ylabel("fraction of rows")
    ax.set_xticks(list(orders))
    ax.set_title("MT-net mask vs task complexity (001 Fig. 4)")
    ax.legend(fontsize=7)
    save_figure(fig, path)
