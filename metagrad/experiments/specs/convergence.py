"""002 (Fallah, Mokhtari & Ozdaglar 2020): MAML, FO-MAML and HF-MAML convergence, measured exactly.

On ``metagrad.tasks.Quadratic`` (linear regression whose expected losses are quadratics) the
meta-objective ``F(w) = E_i f_i(w - a grad f_i(w))`` and ``grad F`` are known in closed form, so each
run records ``||grad F(w_k)||`` every ``eval.every`` iterations (``eval.measure=grad_norm_F``). The
setting of 002's theorems: plain SGD on ``w`` (constant step ``beta``), one inner SGD step of size
``a``, batches ``B`` tasks of ``D_in = D_o = D_h = D`` examples each (``D_h`` fresh data of the same
tasks, ``outer.hvp_batch``), label noise ``sigma~``; the task spread ``sigma`` (``task.spread``) is the
heterogeneity behind 002's Assumption 4.5. The table gives the level each run settles at (the mean
of the last fifth of its curve), over seeds:

(a) MAML and HF-MAML: the level falls as the batches grow (Theorems 4.12, 4.17).
(b) FO-MAML: stalls near the closed-form floor ``||grad F(w_FO)||`` (``first_order_fixed_point``), of
    order ``a * sigma`` (Theorem 4.15), which larger batches do not remove.
(c) ms per meta-iteration of the three modes against the dimension ``d`` (a linear model: each
    gradient, exact Hessian-vector product and finite difference costs O(d)).

On a quadratic the finite difference of 002 eq. (9) is exact, so HF-MAML equals MAML given the same
``D_h``: its rows check the machinery (same data, same numbers up to rounding), not eq. (9)'s error.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional

from ...tasks.quadratic import Quadratic, first_order_fixed_point, meta_gradient
from ...errors import ConfigError
from ..sweep import Cell, Row, Spec

__all__ = ["CONVERGENCE", "config", "floor", "grad_norm_panel", "samples_per_iteration"]

MODES = {"second_order": "MAML", "first_order": "FO-MAML", "hessian_free": "HF-MAML"}
BATCHES = (5, 25, 100)             # B = D (tasks per batch = examples per D_in, D_o, D_h)
ALPHAS = (0.05, 0.1, 0.2)
SPREADS = (0.5, 1.0, 2.0)
DIMS = (10, 100, 1000)
BASE = {"alpha": 0.1, "spread": 1.0}
BETA, ITERATIONS, EVERY, NOISE, DIM = 0.1, 300, 10, 0.5, 10


def config(mode: str, batch: int, alpha: float, spread: float, dim: int = DIM, iterations: int = ITERATIONS,
           every: int = EVERY) -> dict[str, Any]:
    """One run: ``mode`` on quadratic tasks of dimension ``dim``, batches ``B = D = batch``, SGD step ``BETA``."""
    return {"name": f"convergence-{mode}", "task": {"name": "quadratic", "dim": dim, "k_shot": batch, "k_query": batch,
                                                    "spread": spread, "noise": NOISE},
            "model": {"name": "linear"},
            "inner": {"learner": "sgd", "lr": alpha, "steps": 1, "mode": mode, "hf_delta": 1e-3},
            "outer": {"optimizer": "sgd", "lr": BETA, "meta_batch": batch, "iterations": iterations,
                      "hvp_batch": batch if mode != "first_order" else False},
            "eval": {"tasks": 100 if dim <= 1000 else 10, "every": every, "measure": "grad_norm_F" if every else None,
                     "test_state": "final"},
            "threads": 1, "log_every": iterations}


def samples_per_iteration(mode: str, batch: int) -> int:
    """Examples drawn per meta-iteration: ``B`` tasks x (``D_in + D_o``, plus ``D_h`` for MAML and HF-MAML)."""
    return batch * batch * (2 if mode == "first_order" else 3)


def floor(alpha: float, spread: float, dim: int = DIM) -> float:
    """FO-MAML's floor: ``||grad F||`` at its fixed point (002, Theorem 4.15), in closed form."""
    task = Quadratic(dim=dim, spread=spread, noise=NOISE)
    return float(meta_gradient(first_order_fixed_point(alpha, task), alpha, task).norm())


def _conv_id(mode: str, batch: int, alpha: float, spread: float) -> str:
    return f"{mode}-B{batch}-a{alpha:g}-s{spread:g}"


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise ConfigError(f"reproduce maml-convergence: --{name} takes numbers separated by commas, got {text!r}") from None
    if not vals or any(not (v > 0 and math.isfinite(v)) for v in vals):
        raise ConfigError(f"reproduce maml-convergence: --{name} must be positive numbers, got {text!r}")
    return vals


def _settings(opts: Mapping[str, Any]) -> list[tuple[str, int, float, float]]:
    """(mode, batch, a, sigma): every mode and batch at the base a, sigma; MAML and FO-MAML at the largest
    batch for each a (at the base sigma) and each sigma (at the base a)."""
    alphas, spreads = _floats(opts["alphas"], "alphas"), _floats(opts["spreads"], "spreads")
    a0, s0 = BASE["alpha"], BASE["spread"]
    out = [(m, b, a0, s0) for m in MODES for b in BATCHES]
    star = [(a, s0) for a in alphas if a != a0] + [(a0, s) for s in spreads if s != s0]
    out += [(m, BATCHES[-1], a, s) for m in ("second_order", "first_order") for a, s in star]
    return out


def _dims(opts: Mapping[str, Any]) -> list[int]:
    return [int(d) for d in _floats(opts["dims"], "dims")]


def _cells(opts: Mapping[str, Any]) -> list[Cell]:
    cells = [Cell(_conv_id(m, b, a, s), config(m, b, a, s), labels={"part": "convergence", "mode": m, "batch": b,
                                                                      "alpha": f"{a:g}", "spread": f"{s:g}"},
                  separate=True) for m, b, a, s in _settings(opts)]
    cells += [Cell(f"time-{m}-d{d}", config(m, 25, BASE["alpha"], BASE["spread"], dim=d, iterations=20, every=0),
                   labels={"part": "time", "mode": m, "dim": d}, separate=True) for m in MODES for d in _dims(opts)]
    return cells


def _rows(opts: Mapping[str, Any]) -> list[Row]:
    rows = [Row(MODES[m], {"B=D": b, "a": a, "sigma": s}, _conv_id(m, b, a, s), measure="grad_norm_F_tail")
            for m, b, a, s in _settings(opts)]
    rows += [Row(f"{MODES[m]}: ms per iteration", {"d": d, "B=D": 25}, f"time-{m}-d{d}", measure="ms_per_iteration")
             for m in MODES for d in _dims(opts)]
    return rows


def _level(rows: list[dict[str, Any]], model: str, **setting: Any) -> Optional[float]:
    for r in rows:
        if r["model"] == model and all(r["setting"].get(k) == v for k, v in setting.items()):
            return r["mean"]
    return None


def _present(rows: list[dict[str, Any]]) -> tuple[list[float], list[float], list[int]]:
    """The a, sigma and d values the rows hold (the options they were made under)."""
    conv = [r["setting"] for r in rows if "a" in r["setting"]]
    return (sorted({c["a"] for c in conv}), sorted({c["sigma"] for c in conv}),
            sorted({r["setting"]["d"] for r in rows if "d" in r["setting"]}))


def _claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    a0, s0, big = BASE["alpha"], BASE["spread"], BATCHES[-1]
    f0 = floor(a0, s0)
    lv = {(MODES[m], b): _level(rows, MODES[m], **{"B=D": b, "a": a0, "sigma": s0}) for m in MODES for b in BATCHES}
    if any(v is None for v in lv.values()):
        return {}
    exact = {m: [lv[m, b] for b in BATCHES] for m in ("MAML", "HF-MAML")}
    fo = [lv["FO-MAML", b] for b in BATCHES]
    alphas, spreads, dims = _present(rows)
    grid = {(a, s): (_level(rows, "FO-MAML", **{"B=D": big, "a": a, "sigma": s}),
                     _level(rows, "MAML", **{"B=D": big, "a": a, "sigma": s}), floor(a, s)) for a in alphas for s in spreads}
    times = {m: [_level(rows, f"{m}: ms per iteration", d=d) for d in dims] for m in MODES.values()}
    lo = 1 if len(dims) > 2 else 0
    slope = {m: None if None in t or len(t) < 2 else round(math.log(t[-1] / t[lo]) / math.log(dims[-1] / dims[lo]), 2)
             for m, t in times.items()}
    return {
        "a_levels_by_batch": {m: [round(v, 4) for v in vals] for m, vals in exact.items()},
        "a_maml_hf_fall_with_batch_and_go_below_fo_floor": all(
            all(x > y for x, y in zip(vals, vals[1:])) and vals[-1] < f0 for vals in exact.values()),
        "b_fo_levels_by_batch": [round(v, 4) for v in fo], "b_fo_floor_closed_form": round(f0, 4),
        "b_fo_stalls_at_floor": all(v > 0.7 * f0 for v in fo) and fo[-1] > 0.7 * fo[-2],
        "b_fo_over_floor_by_a_sigma": {f"a={a:g},sigma={s:g}": round(v[0] / v[2], 2) for (a, s), v in grid.items()
                                       if v[0] is not None},
        "b_maml_below_fo_everywhere": all(v[1] < v[0] for v in grid.values() if None not in v),
        "c_ms_per_iteration_by_d": {m: [None if v is None else round(v, 2) for v in t] for m, t in times.items()},
        "c_dims": dims, f"c_loglog_slope_d{dims[lo] if dims else '-'}_to_d{dims[-1] if dims else '-'}": slope,
        "c_hf_over_fo_at_largest_d": None if not dims or None in (times["HF-MAML"][-1], times["FO-MAML"][-1])
        else round(times["HF-MAML"][-1] / times["FO-MAML"][-1], 2),
    }


def _curves(out: Path, cell: str) -> list[list[tuple[int, float]]]:
    found = []
    for p in sorted((out / "cells").glob(f"{cell}_s*.json")):
        if p.name[len(cell) + 2:-5].isdigit():
            found.append([tuple(x) for x in json.loads(p.read_text())["train"]["val_curve"]])
    return found


def _band(curves: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Geometric mean and 95% t-interval over runs at each recorded iteration (taken on log values, so
    that the band stays positive on a log axis)."""
    its = [i for i, _ in curves[0]]
    cols = list(zip(*[[math.log(max(v, 1e-30)) for _, v in c] for c in curves]))
    n = len(curves)
    t = {1: 0.0, 2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78}.get(n, 1.96)
    mean = [sum(c) / n for c in cols]
    half = [t * math.sqrt(sum((x - m) ** 2 for x in c) / (n - 1) / n) if n > 1 else 0.0 for c, m in zip(cols, mean)]
    return its, [math.exp(m) for m in mean], [math.exp(m - h) for m, h in zip(mean, half)], \
        [math.exp(m + h) for m, h in zip(mean, half)]


_COLORS = {"second_order": "C0", "first_order": "C3", "hessian_free": "C2"}


def grad_norm_panel(ax: Any, out: Path, lines: list[tuple[str, int, str]], styles: dict[int, str],
                    by_samples: bool) -> None:
    """||grad F(w_k)|| of each ``(mode, batch, cell id)`` line (geometric mean and 95% band over seeds)
    against meta-iterations, or ``by_samples`` against examples processed; log scales."""
    for m, b, cell in lines:
        curves = _curves(out, cell)
        if not curves:
            continue
        its, mean, lo, hi = _band(curves)
        x = [i * samples_per_iteration(m, b) for i in its] if by_samples else its
        hf = m == "hessian_free"   # drawn wide and pale: it lies on MAML's line
        ax.plot(x, mean, styles[b], color=_COLORS[m], lw=2.4 if hf else 1.2, alpha=0.45 if hf else 1.0,
                label=f"{MODES[m]} B=D={b}")
        ax.fill_between(x, lo, hi, color=_COLORS[m], alpha=0.13)
    ax.set_yscale("log")
    if by_samples:
        ax.set_xscale("log")
    ax.set_xlabel("examples processed (B x (D_in + D_o [+ D_h]) per iteration)" if by_samples else "meta-iteration")


def figure(out: Path, rows: list[dict[str, Any]]) -> None:
    """convergence.png: ||grad F|| against iterations (1st) and against examples processed (2nd), the level
    against a and sigma at the largest batch with FO-MAML's closed-form floor (3rd), ms per iteration
    against d (4th)."""
    from ...plotting import pyplot, save_figure
    plt = pyplot()
    fig, grid = plt.subplots(2, 2, figsize=(14, 11))
    fig.subplots_adjust(wspace=0.3, hspace=0.25, bottom=0.14)
    axes = grid.reshape(-1)
    styles = {BATCHES[0]: ":", BATCHES[1]: "--", BATCHES[2]: "-"}
    lines = [(m, b, _conv_id(m, b, BASE["alpha"], BASE["spread"])) for m in MODES for b in BATCHES]
    for j, ax in enumerate(axes[:2]):
        grad_norm_panel(ax, out, lines, styles, by_samples=j == 1)
        ax.axhline(floor(BASE["alpha"], BASE["spread"]), color="k", lw=0.8, ls="-.", label="FO-MAML floor (closed form)")
        ax.set_ylabel("||grad F(w_k)||")
        ax.set_title(f"a={BASE['alpha']:g}, sigma={BASE['spread']:g}, d={DIM}: geometric mean, 95% band over seeds",
                     fontsize=9)
        ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-2))
        if j == 0:   # the same lines in both panels
            ax.legend(fontsize=6, ncol=2, loc="upper right")
        ax.grid(alpha=0.3)
    alphas, spreads, dims = _present(rows)
    ax = axes[2]
    for j, s in enumerate(spreads):
        for model, mk in (("FO-MAML", "o"), ("MAML", "s")):
            pts = [(a, r) for a in alphas for r in rows
                   if r["model"] == model and r["setting"] == {"B=D": BATCHES[-1], "a": a, "sigma": s}]
            if pts:
                ax.errorbar([a for a, _ in pts], [r["mean"] for _, r in pts], yerr=[r["ci95"] or 0 for _, r in pts],
                            marker=mk, color=f"C{j}", ls="-" if model == "FO-MAML" else ":", capsize=2,
                            label=f"{model} sigma={s:g}")
        ax.plot(alphas, [floor(a, s) for a in alphas], color=f"C{j}", lw=3, alpha=0.25,
                label=f"closed-form FO floor sigma={s:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("inner step size a")
    ax.set_ylabel("settled ||grad F|| (last fifth of the run)")
    ax.set_title(f"B=D={BATCHES[-1]}: FO-MAML's floor scales with a*sigma; MAML below it", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13), borderaxespad=0)
    ax.grid(alpha=0.3)
    ax = axes[3]
    for m in MODES:
        pts = [(d, r) for d in dims for r in rows if r["model"] == f"{MODES[m]}: ms per iteration" and r["setting"]["d"] == d]
        if pts:
            ax.errorbar([d for d, _ in pts], [r["mean"] for _, r in pts], yerr=[r["ci95"] or 0 for _, r in pts],
                        marker="o", color=_COLORS[m], capsize=2, label=MODES[m])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("ms per meta-iteration (B=D=25, 1 thread)")
    ax.set_title("per-iteration time against d", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, out / "convergence.png")


CONVERGENCE = Spec(
    "maml-convergence", "002: ||grad F|| of MAML, FO-MAML and HF-MAML on quadratic tasks (exact F), and cost vs d",
    _cells, _rows, seeds=3, statistic="runs", claims=_claims, figure=figure,
    options={"alphas": ",".join(f"{a:g}" for a in ALPHAS), "spreads": ",".join(f"{s:g}" for s in SPREADS),
             "dims": ",".join(str(d) for d in DIMS)},
    quick_options={"alphas": "0.05,0.2", "spreads": "2", "dims": "10,100"},
    quick=["outer.iterations=40", "eval.every=5", "eval.tasks=10"],
    note=f"Quadratic tasks (d={DIM}, curvatures U[0.5, 2], label noise {NOISE}); linear model from w=0; one inner SGD "
         f"step of a; SGD meta-step {BETA}, {ITERATIONS} iterations; B tasks of D_in = D_o = D_h = D examples. "
         "Rows: ||grad F|| (closed form) averaged over the last fifth of each run, mean ± 95% interval over seeds; "
         "time rows: ms per meta-iteration (20 iterations, drawing the data included, one thread, a machine shared with other jobs).")
