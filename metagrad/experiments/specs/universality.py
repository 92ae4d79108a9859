"""Finn & Levine (000) section 7 as sweep specs: ``universality-steps``, ``-ood`` and ``-depth``.

Settings (000 appendix G; ``presets_universality``): sine ``y = A sin(x - p)`` meta-trained in
distribution (``A ~ U[0.1, 5]``, ``p ~ U[0, pi]``), 5-shot, MLP 100-100 ReLU with a bias transformation
of 10, 5 inner steps of 0.001 (MAML), Adam 1e-3, meta-batch 25, 70,000 iterations, 1,200 test tasks
with 95% intervals; the task-conditioned oracle (the same MLP reading ``[x; A, w, p]``, supervised)
and SNAIL (2 x (TC block 1, 2, 4, 8 x 16, attention 8/8), 1x1 conv) trained with the same optimiser and
iterations. The two sine experiments share their three cells and every evaluation: their runs live in
the sibling folder ``universality-sine/cells/`` of their output folders (``Spec.cell_store``), so
whichever runs first trains and the other only tabulates when both outputs sit in one folder.

* ``universality-steps`` (Fig. 2): test MSE after 0, 5 and N = 50 gradient steps on the 5 support
  points (the figure: after every step 0..N), in and out of distribution (``A ~ U[5, 10]``,
  ``p ~ U[pi, 2 pi]``). SNAIL takes no steps (a flat line).
* ``universality-ood`` (Fig. 3 left, Fig. 6 left): test MSE at fixed amplitudes 1..10 (phase in
  distribution) and fixed phases 0..2 pi (amplitude in distribution); MAML after its 5 steps, the
  oracle as trained (it reads the true out-of-range description), SNAIL.
* ``universality-depth`` (Fig. 5): degree-3 polynomials, 20 + 20 points, one inner step of 0.001,
  bias transformation 10, hidden layers 1..5 of widths 250, 200, 141, 115, 100; MAML vs the oracle
  (as trained), 3 runs each: mean and standard deviation over runs.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Optional

from ..presets_universality import OOD_AMPLITUDE, OOD_PHASE, oracle, poly000, sine000, snail
from ..sweep import Cell, Row, Spec
from .universality_plots import plot_depth, plot_ood, plot_steps

__all__ = ["STEPS", "OOD", "DEPTH", "N_STEPS", "AMPLITUDES", "PHASES", "WIDTHS"]

N_STEPS = 50
AMPLITUDES = tuple(float(a) for a in range(1, 11))
PHASES = tuple(i * math.pi / 4 for i in range(9))
WIDTHS = {1: 250, 2: 200, 3: 141, 4: 115, 5: 100}        # about 40,000 parameters from 2 layers on (000 G.2)
SINE_MODELS = ("MAML", "oracle", "SNAIL")
_OOD = [f"task.amplitude={OOD_AMPLITUDE}", f"task.phase=[{OOD_PHASE[0]!r}, {OOD_PHASE[1]!r}]"]


def _sine_evals() -> dict[str, list[str]]:
    """Every evaluation both sine experiments read (one set, so their cells are the same runs)."""
    evals = {f"{d}-s{t}": [*over, f"eval.steps={t}"] for d, over in (("in", []), ("out", _OOD))
             for t in (0, 5, N_STEPS)}
    evals.update({f"amp{a:g}": [f"task.amplitude=[{a}, {a}]"] for a in AMPLITUDES})
    evals.update({f"phase{i}": [f"task.phase=[{p!r}, {p!r}]"] for i, p in enumerate(PHASES)})
    return evals


def _sine_cells(opts: Mapping[str, Any]) -> list[Cell]:
    base = sine000()
    configs = {"MAML": sine000("000-sine-maml"), "oracle": oracle(base, "000-sine-oracle"),
               "SNAIL": snail(base, "000-sine-snail")}
    return [Cell(f"sine-{m}", configs[m], _sine_evals(), labels={"model": m}) for m in SINE_MODELS]


def _find(rows: list[dict[str, Any]], model: str, **setting: Any) -> Optional[tuple[float, float]]:
    for r in rows:
        if r["model"] == model and all(r["setting"].get(k) == v for k, v in setting.items()):
            return (math.inf, 0.0) if r["mean"] is None else (r["mean"], r["ci95"] or 0.0)
    return None


def compare(a: Optional[tuple[float, float]], b: Optional[tuple[float, float]]) -> str:
    """``lower`` / ``higher`` where the 95% intervals of ``a`` and ``b`` do not overlap, else ``same``."""
    if a is None or b is None:
        return "not run"
    if a[0] + a[1] < b[0] - b[1]:
        return "lower"
    return "higher" if a[0] - a[1] > b[0] + b[1] else "same (intervals overlap)"


# --- Fig. 2: more gradient steps at test time ------------------------------------------------------------

def _steps_rows(opts: Mapping[str, Any]) -> list[Row]:
    return [Row(m, {"tasks": d, "steps": t}, f"sine-{m}", f"{d}-s{t}")
            for m in SINE_MODELS for d in ("in", "out") for t in (0, 5, N_STEPS)]


def _steps_claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in ("in", "out"):
        for m, t0, label in (("MAML", 5, "after its 5 training steps"), ("oracle", 0, "as trained")):
            v = compare(_find(rows, m, tasks=d, steps=N_STEPS), _find(rows, m, tasks=d, steps=t0))
            if v != "not run":
                out[f"{m} {d}: after {N_STEPS} {'fine-tuning ' if m == 'oracle' else ''}steps vs {label}"] = v
    premise = {"MAML (5 steps)": _find(rows, "MAML", tasks="in", steps=5),
               "oracle (0 steps)": _find(rows, "oracle", tasks="in", steps=0),
               "SNAIL": _find(rows, "SNAIL", tasks="in", steps=0)}
    out["in-distribution MSE (000's premise: similar)"] = {k: None if v is None else round(v[0], 4)
                                                           for k, v in premise.items()}
    return out


STEPS = Spec("universality-steps", "000 Fig. 2: sine test MSE after 0..50 gradient steps, MAML (trained with 5) vs "
             "the fine-tuned task-conditioned oracle vs SNAIL, in and out of distribution",
             _sine_cells, _steps_rows, seeds=1, statistic="tasks", claims=_steps_claims,
             quick=["outer.iterations=300", "eval.tasks=100"], plot=plot_steps, cell_store="universality-sine",
             note="000's claim: MAML keeps improving past its 5 training steps (especially out of distribution); "
                  "a task-conditioned model fine-tuned with gradient steps does not, and can overfit out of "
                  "distribution. MSE after the given number of SGD steps of 0.001 on the 5 support points; 95% "
                  "interval over test tasks. 'lower'/'higher' only where the intervals do not overlap. "
                  "Figure: steps.png.")


# --- Fig. 3 left / Fig. 6 left: out of distribution, by amplitude and by phase ------------------------------

def _ood_rows(opts: Mapping[str, Any]) -> list[Row]:
    rows = [Row(m, {"amplitude": a, "phase": "U[0, pi]"}, f"sine-{m}", f"amp{a:g}") for m in SINE_MODELS
            for a in AMPLITUDES]
    return rows + [Row(m, {"phase": round(p, 4), "amplitude": "U[0.1, 5]"}, f"sine-{m}", f"phase{i}")
                   for m in SINE_MODELS for i, p in enumerate(PHASES)]


def _ood_claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, values, inside in (("amplitude", AMPLITUDES, lambda a: a <= 5.0),
                                ("phase", [round(p, 4) for p in PHASES], lambda p: p <= math.pi + 1e-3)):
        outside = [v for v in values if not inside(v)]
        verdicts = [compare(_find(rows, "MAML", **{key: v}), _find(rows, "SNAIL", **{key: v})) for v in outside]
        if "not run" not in verdicts:   # a table of some cells (--only) states nothing about the others
            out[f"MAML below SNAIL out of distribution ({key})"] = f"{verdicts.count('lower')} of {len(outside)}"
            out[f"MAML above SNAIL out of distribution ({key})"] = f"{verdicts.count('higher')} of {len(outside)}"
        for m in SINE_MODELS:
            pts = [_find(rows, m, **{key: v}) for v in values]
            if None not in pts:
                mean = lambda sel: statistics.fmean(p[0] for v, p in zip(values, pts) if sel(v))   # noqa: E731
                out[f"{m} mean MSE in / out ({key})"] = f"{mean(inside):.4g} / {mean(lambda v: not inside(v)):.4g}"
    return out


OOD = Spec("universality-ood", "000 Fig. 3 left and Fig. 6 left: sine test MSE against the amplitude (1..10) and the "
           "phase (0..2 pi), meta-trained on A in [0.1, 5], p in [0, pi]: MAML vs SNAIL (and the oracle)",
           _sine_cells, _ood_rows, seeds=1, statistic="tasks", claims=_ood_claims,
           quick=["outer.iterations=300", "eval.tasks=100"], plot=plot_ood, cell_store="universality-sine",
           note="000's claim: MAML degrades more gracefully than the recurrent learner (SNAIL) out of distribution "
                "(amplitude > 5, phase > pi). MAML after its 5 steps; the oracle as trained (it reads the true "
                "description); SNAIL takes no steps. 95% interval over test tasks. The cells are those of "
                "universality-steps (runs kept in the sibling folder universality-sine/). Figure: ood.png.")


# --- Fig. 5: depth at a fixed parameter count -----------------------------------------------------------------

def _depth_cells(opts: Mapping[str, Any]) -> list[Cell]:
    cells = []
    for d, w in WIDTHS.items():
        base = poly000([w] * d, f"000-poly-maml-d{d}")
        cells += [Cell(f"poly-MAML-d{d}", base, labels={"model": "MAML", "depth": d}),
                  Cell(f"poly-oracle-d{d}", oracle(base, f"000-poly-oracle-d{d}"), labels={"model": "oracle", "depth": d})]
    return cells


def _depth_rows(opts: Mapping[str, Any]) -> list[Row]:
    return [Row(m, {"hidden_layers": d, "width": w}, f"poly-{m}-d{d}") for m in ("MAML", "oracle")
            for d, w in WIDTHS.items()]


def _depth_extra(r: Row, runs: list[dict[str, Any]]) -> dict[str, Any]:
    means = [f["evals"][r.eval]["mean"] for f in runs]
    return {"std_runs": statistics.stdev(means) if len(means) > 1 else None, "run_means": means}


def _depth_claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in ("MAML", "oracle"):
        pts = {d: next((r for r in rows if r["model"] == m and r["setting"]["hidden_layers"] == d), None) for d in WIDTHS}
        if None in pts.values():
            continue
        mean = {d: r["mean"] if r["mean"] is not None else math.inf for d, r in pts.items()}
        std = {d: r.get("std_runs") or 0.0 for d, r in pts.items()}
        best = min((d for d in WIDTHS if d > 1), key=lambda d: mean[d])
        out[f"{m}: mean MSE by hidden layers"] = {d: round(v, 4) for d, v in mean.items()}
        out[f"{m}: best deeper model ({best} layers) vs 1 layer, beyond both stds"] = \
            "lower" if mean[best] + std[best] < mean[1] - std[1] else \
            "higher" if mean[best] - std[best] > mean[1] + std[1] else "same (within a standard deviation)"
    return out


DEPTH = Spec("universality-depth", "000 Fig. 5: degree-3 polynomials, MAML vs the task-conditioned oracle at 1..5 "
             "hidden layers of about 40,000 parameters (widths 250, 200, 141, 115, 100)",
             _depth_cells, _depth_rows, seeds=3, statistic="runs", claims=_depth_claims, row_extra=_depth_extra,
             quick=["outer.iterations=200", "eval.tasks=100"], plot=plot_depth,
             note="000's claim: MAML improves with depth at a fixed parameter count; the oracle does not need more "
                  "than one hidden layer. Test MSE after one inner step of 0.001 (MAML) or as trained (oracle) on "
                  "1,200 tasks; mean over 3 runs (std_runs in results.json; the figure shows mean ± std, as 000). "
                  "Figure: depth.png.")
