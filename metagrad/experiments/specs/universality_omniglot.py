"""Finn & Levine (000) Figs. 3 right, 4 and 6 right as sweep specs: ``universality-omniglot-ood``, ``-finetune``.

5-way 1-shot Omniglot (Finn et al. 2017's protocol, ``presets_images``): MAML (conv4, one inner step of
0.4, meta-batch 32, second order, 60,000 iterations) against SNAIL on the same conv4 embedding
(``omniglot-snail``), meta-trained on the ordinary characters and tested on held-out characters whose
105x105 originals are sheared (``x' = x + tan(shear) y``, shear in radians) or scaled about the centre
before resizing to 28x28 (000 appendix G.1; ``tasks.omniglot.affine_originals``). Accuracy on 600
test tasks with its 95% interval; MAML after its one step, SNAIL without steps.

The MAML runs are 001 Table 3's (``omniglot-table3``'s MAML cells have the same configs): a run kept
by any of the three records beside the output folder is tested, not trained again (``Spec.reuse``).

``universality-finetune`` (Fig. 4, Fig. 6 right): a MAML initialisation meta-trained on 20-way 1-shot with
5 inner steps of 0.1 (and on 5-way 1-shot with 1 step of 0.4) is fine-tuned for 100 SGD steps of that
rate on one task's support set; the support-set ("train", ``eval.on=support``) and query-set ("test")
accuracy after every step, averaged over test tasks with 95% intervals, against the same network at a
random initialisation (``Cell(trainer="init")``: the seed's initial weights, not meta-trained).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..presets import PRESETS
from ..sweep import Cell, Row, Spec
from .universality import compare
from .universality_plots import COLOURS

__all__ = ["OMNIGLOT_OOD", "FINETUNE", "SHEARS", "SCALES", "FINETUNE_STEPS"]

SHEARS = (0.0, 0.3, 0.6, 0.9)
SCALES = (0.4, 0.7, 1.0, 1.3)
MODELS = {"MAML": "omniglot-5w1s-maml", "SNAIL": "omniglot-snail"}


def _evals() -> dict[str, list[str]]:
    return {**{f"shear{v:g}": [f"task.shear={v}"] for v in SHEARS}, **{f"scale{v:g}": [f"task.scale={v}"] for v in SCALES}}


def _cells(opts: Mapping[str, Any]) -> list[Cell]:
    return [Cell(f"omniglot-{m}", PRESETS[p], _evals(), labels={"model": m}) for m, p in MODELS.items()]


def _rows(opts: Mapping[str, Any]) -> list[Row]:
    return [Row(m, {"shear": v}, f"omniglot-{m}", f"shear{v:g}") for m in MODELS for v in SHEARS] + \
           [Row(m, {"scale": v}, f"omniglot-{m}", f"scale{v:g}") for m in MODELS for v in SCALES]


def _claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def find(model: str, **s: Any) -> Any:
        r = next((r for r in rows if r["model"] == model and all(r["setting"].get(k) == v for k, v in s.items())), None)
        return None if r is None or r["mean"] is None else (r["mean"], r["ci95"] or 0.0)
    out: dict[str, Any] = {}
    for key, values, normal in (("shear", SHEARS, 0.0), ("scale", SCALES, 1.0)):
        shifted = [v for v in values if v != normal]
        verdicts = [compare(find("MAML", **{key: v}), find("SNAIL", **{key: v})) for v in shifted]
        out[f"MAML above SNAIL ({key} != {normal:g})"] = f"{verdicts.count('higher')} of {len(shifted)}"
        out[f"MAML below SNAIL ({key} != {normal:g})"] = f"{verdicts.count('lower')} of {len(shifted)}"
        for m in MODELS:
            base, worst = find(m, **{key: normal}), [find(m, **{key: v}) for v in shifted]
            if base is not None and None not in worst:
                out[f"{m}: largest accuracy drop over {key}"] = round(base[0] - min(w[0] for w in worst), 4)
    return out


def plot_omniglot_ood(out: Any, rows: list[dict[str, Any]], runs: Mapping[str, Any]) -> None:
    """000 Fig. 3 right: accuracy against shear and against scale (``omniglot-ood.png``)."""
    from ...plotting import figure_legend, pyplot, save_figure
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for ax, key, normal, xlabel in ((axes[0], "shear", 0.0, "shear of the 105x105 originals (radians)"),
                                    (axes[1], "scale", 1.0, "scale of the 105x105 originals")):
        ax.axvline(normal, color="grey", ls=":", lw=1, label="meta-training images")
        for m in MODELS:
            pts = sorted((r["setting"][key], 100 * r["mean"], 100 * (r["ci95"] or 0.0)) for r in rows
                         if r["model"] == m and key in r["setting"] and r["mean"] is not None)
            if pts:
                x, y, c = zip(*pts)
                ax.errorbar(x, y, yerr=c, color=COLOURS[m], marker="o", ms=4, capsize=3,
                            label="MAML (1 step)" if m == "MAML" else "SNAIL (no steps)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("5-way 1-shot test accuracy, % (95% interval)")
        ax.grid(alpha=0.3)
    figure_legend(fig, axes, ncol=3, fontsize=8)
    fig.suptitle("000 Fig. 3 right redrawn: out-of-distribution Omniglot characters", fontsize=10)
    save_figure(fig, out / "omniglot-ood.png")


OMNIGLOT_OOD = Spec("universality-omniglot-ood", "000 Fig. 3 right: 5-way 1-shot Omniglot accuracy against shear and "
                    "scale of the held-out characters, MAML vs SNAIL (both meta-trained on unchanged characters)",
                    _cells, _rows, seeds=1, statistic="tasks", claims=_claims, plot=plot_omniglot_ood,
                    quick=["outer.iterations=30", "eval.tasks=50", "eval.every=0"],
                    reuse=("omniglot-table3", "universality-finetune"),   # the same MAML run (kept_runs)
                    note="000's claim: MAML generalises better than the recurrent learners (SNAIL, MetaNet) to "
                         "sheared and scaled characters. Accuracy on held-out characters; 95% interval over test "
                         "tasks; 'higher'/'lower' only where intervals do not overlap. Figure: omniglot-ood.png. "
                         "Each transformed set is built once (about 20 s of CPU) and cached.")


# --- Fig. 4 / Fig. 6 right: 100 fine-tuning steps from the MAML initialisation vs a random one ---------------

FINETUNE_STEPS = 100
SETTINGS = {"20-way": ("omniglot-20w1s-maml", 5), "5-way": ("omniglot-5w1s-maml", 1)}
_FT_EVALS = {"test": [f"eval.steps={FINETUNE_STEPS}"], "train": [f"eval.steps={FINETUNE_STEPS}", "eval.on=support"]}


def _ft_cells(opts: Mapping[str, Any]) -> list[Cell]:
    cells = []
    for way, (preset, _) in SETTINGS.items():
        cfg = PRESETS[preset]
        cells += [Cell(f"{way}-MAML", cfg, _FT_EVALS, labels={"model": "MAML", "way": way}),
                  Cell(f"{way}-random", {**cfg, "eval": {**cfg["eval"], "every": 0}}, _FT_EVALS, trainer="init",
                       labels={"model": "random", "way": way})]
    return cells


def _ft_rows(opts: Mapping[str, Any]) -> list[Row]:
    return [Row(f"{m} init, {e}", {"way": way, "steps": FINETUNE_STEPS}, f"{way}-{m}", e)
            for way in SETTINGS for m in ("MAML", "random") for e in ("train", "test")]


def _point(runs: list[dict[str, Any]], name: str, t: int) -> Any:
    from .universality_plots import pooled_curve
    mean, ci = pooled_curve(runs, name)
    return (mean[t], ci[t]) if mean else None


def _ft_claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def find(model: str, e: str, way: str) -> Any:
        r = next((r for r in rows if r["model"] == f"{model} init, {e}" and r["setting"]["way"] == way), None)
        return None if r is None or r["mean"] is None else (r["mean"], r["ci95"] or 0.0)
    out: dict[str, Any] = {}
    for way in SETTINGS:
        tr, te = find("random", "train", way), find("random", "test", way)
        if tr is not None and te is not None:
            out[f"{way} random init after {FINETUNE_STEPS} steps: train / test accuracy"] = f"{tr[0]:.3f} / {te[0]:.3f}"
        mtr, mte = find("MAML", "train", way), find("MAML", "test", way)
        if mtr is not None and mte is not None:
            out[f"{way} MAML init after {FINETUNE_STEPS} steps: train / test accuracy"] = f"{mtr[0]:.3f} / {mte[0]:.3f}"
        if te is not None and mte is not None:
            out[f"{way}: MAML init test accuracy vs random init after {FINETUNE_STEPS} steps"] = compare(mte, te)
    return out


def _ft_extra(r: Row, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The accuracy at the MAML's own training steps, beside the one after 100 (does it drop?)."""
    steps = SETTINGS[r.setting["way"]][1]
    p = _point(runs, r.eval, steps)
    return {} if p is None else {f"after_{steps}_steps": p[0], f"after_{steps}_steps_ci95": p[1]}


def plot_finetune(out: Any, rows: list[dict[str, Any]], runs: Mapping[str, Any]) -> None:
    """000 Fig. 4 / Fig. 6 right: train and test accuracy against fine-tuning steps (``finetune.png``)."""
    from ...plotting import curve_with_band, figure_legend, pyplot, save_figure
    from .universality_plots import pooled_curve
    plt = pyplot()
    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(10, 4.2), layout="constrained")
    for ax, (way, (_, steps)) in zip(axes, SETTINGS.items()):
        for m, colour in (("MAML", COLOURS["MAML"]), ("random", "C1")):
            for e, ls in (("train", "--"), ("test", "-")):
                mean, ci = pooled_curve(runs.get(f"{way}-{m}", []), e)
                if mean:
                    curve_with_band(ax, mean, ci, scale=100, color=colour, ls=ls, label=f"{m} init, {e}")
        ax.axvline(steps, color="grey", ls=":", lw=1)
        ax.set_title(f"{way} 1-shot (MAML meta-trained with {steps} step{'s' if steps > 1 else ''})", fontsize=9)
        ax.set_xlabel("gradient steps on the support set")
        ax.set_ylabel("accuracy, % (95% interval)")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
    figure_legend(fig, axes, ncol=4, fontsize=8)
    fig.suptitle("000 Fig. 4 / Fig. 6 right redrawn: fine-tuning for 100 steps on one Omniglot task", fontsize=10)
    save_figure(fig, out / "finetune.png")


FINETUNE = Spec("universality-finetune", "000 Fig. 4 and Fig. 6 right: Omniglot 20-way (5 steps) and 5-way (1 step) 1-shot, "
                "train and test accuracy over 100 fine-tuning steps from the MAML initialisation vs a random one",
                _ft_cells, _ft_rows, seeds=1, statistic="tasks", claims=_ft_claims, row_extra=_ft_extra,
                plot=plot_finetune, quick=["outer.iterations=10", "eval.tasks=10", "eval.every=0"],
                reuse=("omniglot-table3", "universality-omniglot-ood"),   # the same MAML runs (kept_runs)
                note="000's claim: fine-tuned for 100 steps, the MAML initialisation does not overfit (its test accuracy "
                     "does not drop after its training steps) while a random initialisation reaches about the same "
                     "training accuracy but overfits (low test accuracy). Accuracy after 100 steps of the MAML's inner "
                     "rate on the support set ('train') and on the query set ('test'); results.json also has the value "
                     "after the MAML's training steps. 95% interval over test tasks. Figure: finetune.png.")
