"""004 (the TURTLE thesis) sine experiments as sweep specs: Table 6 and Fig. 11; protocol in DESIGN.md 4.

Appendix A.1, as configs (``config``): tasks ``y = A sin(x - p)``, ``A ~ U[0.1, 5]``, ``p ~ U[0, pi]``,
``x ~ U[-5, 5]``, ``k`` support and 50 query points; base-learner MLP 1-40-40-1, ReLU, zero biases;
70,000 meta-training tasks (``outer.iterations = 70000 / meta_batch``), Adam 1e-3, validation every
2,500 tasks (``eval.every`` in iterations) on 1,000 fixed tasks, the best validated state tested on
2,000 fixed tasks (the final state is tested too, ``evals["test"]["final"]``).

* so-/fo-MAML: inner SGD 0.01, meta-batch 1; for T > 1 inner gradients clipped to [-10, 10]
  (``inner.grad_clip``) and, as the thesis's code does, the meta-gradient's values too.
* so-TURTLE: 5 hidden layers of 20 ReLU units, per-parameter rates; T = 1 raw gradient, meta-batch 1;
  T = 5 gradient + EMA(0.9) + time step, meta-batch 2; T = 10 gradient + EMA(0.3), meta-batch 4; for
  T > 1 the initialisation's meta-gradient only is value-clipped (``outer.clip_scope="init"``), at
  T = 10 task by task before the meta-batch sum (``"init_per_task"``, the thesis's ``turtle.py``;
  measured in ``reproductions/turtle-table6/README.md``). TURTLE-raw (Fig. 11): raw gradient, no
  per-parameter rates, meta-batch 1.
* LSTM meta-learner: hidden 20, first-order assumption, meta-batch 1, meta-gradient norm clipped to
  0.25, the rule sees the support gradient divided by ``k`` (``grad_scale = 1/k``, the thesis's
  ``ownlstm.py``); at T = 10 a non-finite update is skipped (``outer.nonfinite="skip"``), else a run
  that turns non-finite stops and keeps its best validated state (``"stop"``, as the thesis's code).
* Baselines (TrainFromScratch, Finetuning on the merged data of 70,000 tasks): ``Cell(trainer=...)``.

``--data thesis``: the thesis's own task draws (its 70,000 meta-training tasks in its order for every
run, its validation and test tasks), from ``reproductions/turtle-table6-thesis-data/thesis_data.py``.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from ...errors import ConfigError
from ...evaluation import iqr_kept, robust_summary
from .. import registry
from ..sweep import Cell, Row, Spec

__all__ = ["TABLE6", "ORDER", "PRESETS", "config", "cell", "load_thesis_data"]

MODELS = ("TrainFromScratch", "Finetuning", "LSTM", "so-MAML", "so-TURTLE")
BASELINES = ("TrainFromScratch", "Finetuning")
ORDER_MODELS = ("fo-MAML", "so-MAML", "fo-TURTLE-raw", "so-TURTLE-raw")
STEPS, SHOTS = (1, 5, 10), (5, 10, 15, 20)
TASKS, TEST_TASKS, VAL_TASKS, VAL_EVERY, QUERY = 70_000, 2_000, 1_000, 2_500, 50
TEST_SEED = 10_000                      # test tasks of k shots: sample(2000, Generator(10000 + k)), as before
DATA = ("metagrad", "thesis")
THESIS_FILE = Path(__file__).resolve().parents[3] / "reproductions" / "turtle-table6-thesis-data" / "thesis_data.py"
# 004 Table 6: mean MSE ± 95% interval across 30 runs; keys (model, steps), values per shot 5/10/15/20.
PAPER = {
    ("TrainFromScratch", None): ((7.38, 0.12), (4.61, 0.03), (4.24, 0.01), (3.85, 0.01)),
    ("Finetuning", None): ((3.16, 0.01), (2.96, 0.01), (3.00, 0.01), (2.89, 0.01)),
    ("LSTM", 1): ((0.98, 0.14), (0.76, 0.05), (0.94, 0.14), (1.06, 0.12)),
    ("so-MAML", 1): ((0.68, 0.01), (0.39, 0.01), (0.31, 0.01), (0.24, 0.00)),
    ("so-TURTLE", 1): ((0.47, 0.01), (0.26, 0.00), (0.20, 0.00), (0.15, 0.00)),
    ("LSTM", 5): ((0.37, 0.03), (0.21, 0.03), (0.21, 0.04), (0.18, 0.04)),
    ("so-MAML", 5): ((0.39, 0.01), (0.10, 0.00), (0.05, 0.00), (0.03, 0.00)),
    ("so-TURTLE", 5): ((0.08, 0.01), (0.02, 0.00), (0.02, 0.00), (0.01, 0.00)),
    ("LSTM", 10): ((0.30, 0.02), (0.22, 0.03), (0.25, 0.07), (0.40, 0.22)),
    ("so-MAML", 10): ((0.30, 0.04), (0.07, 0.00), (0.03, 0.00), (0.02, 0.00)),
    ("so-TURTLE", 10): ((0.10, 0.02), (0.08, 0.02), (0.07, 0.02), (0.34, 0.24)),
}


def _learner(model: str, steps: int, k_shot: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(inner, outer)`` config sections of ``model`` at ``steps`` (004 appendix A.1, module doc)."""
    clip = 10.0 if steps > 1 else None
    mode = "first_order" if model.startswith("fo-") else "second_order"
    if model in ("so-MAML", "fo-MAML") or model in BASELINES:
        return {"learner": "sgd", "lr": 0.01, "grad_clip": clip, "mode": mode}, {"meta_batch": 1, "clip_value": clip}
    if model in ("so-TURTLE", "fo-TURTLE"):
        if steps == 1:
            rule, mb = {"inputs": ["grad"]}, 1
        elif steps <= 5:
            rule, mb = {"inputs": ["grad", "ema_grad", "time"], "beta": 0.9}, 2
        else:
            rule, mb = {"inputs": ["grad", "ema_grad"], "beta": 0.3}, 4
        return ({"learner": "turtle", **rule, "grad_clip": clip, "mode": mode},
                {"meta_batch": mb, "clip_value": clip, "clip_scope": "init_per_task" if steps > 5 else "init"})
    if model in ("so-TURTLE-raw", "fo-TURTLE-raw"):   # 004 section 4.2.2 / Fig. 11
        return ({"learner": "turtle", "inputs": ["grad"], "learn_lr": False, "grad_clip": clip, "mode": mode},
                {"meta_batch": 1, "clip_value": clip, "clip_scope": "init"})
    if model == "LSTM":
        return ({"learner": "lstm", "grad_scale": 1.0 / k_shot, "mode": "second_order"},
                {"meta_batch": 1, "clip_norm": 0.25, "nonfinite": "skip" if steps >= 10 else "stop"})
    raise ConfigError(f"004: unknown model {model!r}; choose one of {', '.join(MODELS + ORDER_MODELS)}")


def config(model: str, steps: Optional[int], k_shot: int, data: str = "metagrad") -> dict[str, Any]:
    """004's setting of ``model`` with ``steps`` inner steps (``None``: a baseline) and ``k_shot`` support
    points, as a ``Config`` dict that ``metagrad train`` also runs (``data="thesis"``: the thesis's tasks)."""
    t = steps or 1
    inner, outer = _learner(model, t, k_shot)
    mb = outer["meta_batch"]
    return {"name": f"004-{model.lower()}-t{steps or '-'}-k{k_shot}",
            "task": {"name": "thesis_sine" if data == "thesis" else "sine", "k_shot": k_shot, "k_query": QUERY},
            "model": {"name": "mlp", "hidden": [40, 40], "bias_init": "zero"},
            "inner": {**inner, "steps": t},
            "outer": {"optimizer": "adam", "lr": 1e-3, "iterations": TASKS // mb, "nonfinite": "stop",
                      "explode": None, **outer},
            "eval": {"tasks": TEST_TASKS, "seed": TEST_SEED + k_shot, "every": VAL_EVERY // mb,
                     "val_tasks": VAL_TASKS, "batch": 50, "test_state": "best"},
            "threads": 1, "log_every": 500}


def cell(model: str, steps: Optional[int], k_shot: int, data: str = "metagrad") -> Cell:
    """The sweep cell of ``(model, steps, k_shot)``; its id is the records' file stem, e.g. ``so-MAML_T5_k10``."""
    return Cell(f"{model}_T{steps if steps is not None else '-'}_k{k_shot}", config(model, steps, k_shot, data),
                trainer=model if model in BASELINES else "meta",
                labels={"model": model, "steps": steps if steps is not None else "-", "k_shot": k_shot})


def load_thesis_data() -> Any:
    """Import ``thesis_data.py`` beside its record (registers task ``thesis_sine``); one line if absent."""
    name = "metagrad_thesis_data"
    if name not in sys.modules:
        if not THESIS_FILE.is_file():
            raise ConfigError(f"004: --data thesis needs the thesis's task draws in {THESIS_FILE}, which is missing")
        spec = importlib.util.spec_from_file_location(name, THESIS_FILE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _data(opts: Mapping[str, Any]) -> str:
    data = opts.get("data", "metagrad")
    if data not in DATA:
        raise ConfigError(f"004: --data must be one of {', '.join(DATA)}, got {data!r}")
    if data == "thesis" and "thesis_sine" not in registry.TASKS:
        load_thesis_data()
    return data


def _grid6() -> list[tuple[str, Optional[int], int]]:
    return [(m, t, k) for k in SHOTS for m in MODELS for t in ((None,) if m in BASELINES else STEPS)]


def _cells6(opts: Mapping[str, Any]) -> list[Cell]:
    data = _data(opts)
    return [cell(m, t, k, data) for m, t, k in _grid6()]


def _rows6(opts: Mapping[str, Any]) -> list[Row]:
    rows = []
    for m, t, k in _grid6():
        paper, paper_ci = PAPER[(m, t)][SHOTS.index(k)]
        rows.append(Row(m, {"k_shot": k, "steps": t}, cell(m, t, k).id, "test", paper, paper_ci))
    return rows


def _extra6(r: Row, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over the kept runs of one run's 95% interval over its test tasks (``± test tasks``: the
    test draw's own error, shared by every run), and where every run has it the number the thesis's code
    tests (``as thesis code``: TURTLE's best initialisation with its final rule, the LSTM's final state)."""
    ev = [f["evals"][r.eval] for f in runs]
    kept = iqr_kept([e["mean"] if not e.get("diverged") else math.nan for e in ev])
    used = [e["ci95_tasks"] for e, keep in zip(ev, kept) if keep]
    out: dict[str, Any] = {"test_set_ci95": sum(used) / len(used) if used else math.nan}
    if all("thesis_restore_mean" in f for f in runs):
        s = robust_summary([f["thesis_restore_mean"] for f in runs])
        out["thesis_restore"], out["thesis_restore_ci95"] = s["mean"], s["ci95"]
    return out


def _claims6(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """so-TURTLE below so-MAML at 5 steps (5, 10 shots); every row within or better than the thesis by the
    intervals; the baselines worse than every meta-learner at each shot."""
    by = {(r["model"], r["setting"]["steps"], r["setting"]["k_shot"]): r["mean"] for r in rows}
    out: dict[str, Any] = {f"turtle_beats_maml_5step_{k}shot": by[("so-TURTLE", 5, k)] < by[("so-MAML", 5, k)]
                           for k in (5, 10) if by.get(("so-TURTLE", 5, k)) is not None
                           and by.get(("so-MAML", 5, k)) is not None}
    out["all_within_or_better_than_paper"] = all(r.get("vs_paper") in ("within", "better") for r in rows)
    for k in SHOTS:   # where a shot has both (a run of a part of the table has what it has)
        base = [v for (m, _, kk), v in by.items() if kk == k and m in BASELINES and v is not None]
        meta = [v for (m, _, kk), v in by.items() if kk == k and m not in BASELINES and v is not None]
        if base and meta:
            out[f"baselines_worse_than_all_meta_learners_{k}shot"] = min(base) > max(meta)
    return out


def _note6(opts: Mapping[str, Any]) -> str:
    tasks = ("the thesis's own (thesis_data.py beside reproductions/turtle-table6-thesis-data: its 70,000 "
             "meta-training tasks in its order for every run, its validation and test tasks), so the comparison "
             "carries no test-draw difference" if opts.get("data") == "thesis" else
             "our own draws (each run its own meta-training stream; fixed validation and test tasks), so the "
             "comparison with the thesis (other test tasks) carries the test draw's error ('± test tasks')")
    return ("Mean MSE on 2,000 fixed test tasks (query sets of 50) of each run's best validated state, summarised "
            "across runs as 004 does (mean, median, 95% interval after IQR outlier removal); verdicts compare the "
            "intervals. 70,000 meta-training tasks, validation every 2,500 on 1,000 tasks. Tasks: " + tasks + ". "
            "'± test tasks': one run's 95% interval over its test tasks (mean over the kept runs). 'as thesis "
            "code': the state the thesis's code tests where it differs (TURTLE: best initialisation with the final "
            "rule; LSTM: final state). Paper: 004 Table 6, 30 runs per cell; we cannot afford 30 (about 40 "
            "CPU-hours for 5), so every row uses the same 5 (seeds 0-4).")


def _rows_order(opts: Mapping[str, Any]) -> list[Row]:
    return [Row(m, {"k_shot": 5, "steps": t}, cell(m, t, 5).id) for t in STEPS for m in ORDER_MODELS]


def _claims_order(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per T: the first-order penalty (fo - so) of TURTLE and of MAML, and whether TURTLE's is larger."""
    by = {(r["model"], r["setting"]["steps"]): r["mean"] for r in rows}
    out: dict[str, Any] = {}
    for t in sorted({r["setting"]["steps"] for r in rows}):
        fo_m, so_m, fo_t, so_t = (by.get((m, t)) for m in ORDER_MODELS)
        if None not in (fo_m, so_m, fo_t, so_t):
            out[f"T{t}"] = {"turtle_fo_minus_so": fo_t - so_t, "maml_fo_minus_so": fo_m - so_m,
                            "turtle_gap_larger": (fo_t - so_t) > abs(fo_m - so_m)}
    return out


def _plot_order(out: Path, rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> None:
    """004 Fig. 11 redrawn at TURTLE's 5 hidden layers (``order.png``): test MSE against T for fo/so-MAML
    and fo/so-TURTLE-raw, the across-run mean with its 95% interval (after 004's IQR rule), each run a dot."""
    from ...plotting import log_axis, pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    style = {"fo-MAML": ("C0", "--"), "so-MAML": ("C0", "-"), "fo-TURTLE-raw": ("C3", "--"), "so-TURTLE-raw": ("C3", "-")}
    for i, m in enumerate(ORDER_MODELS):
        pts = sorted((STEPS.index(r["setting"]["steps"]), r["mean"], r["ci95"] or 0.0, cell(m, r["setting"]["steps"], 5).id)
                     for r in rows if r["model"] == m and r["mean"] is not None)
        if not pts:
            continue
        x = [p[0] + (i - 1.5) * 0.08 for p in pts]
        colour, ls = style[m]
        ax.errorbar(x, [p[1] for p in pts], yerr=[p[2] for p in pts], color=colour, ls=ls, marker="o", capsize=3,
                    mfc="white" if m.startswith("fo-") else colour, label=m)
        for xi, p in zip(x, pts):
            ys = [f["evals"]["test"]["mean"] for f in runs.get(p[3], []) if math.isfinite(f["evals"]["test"]["mean"])]
            ax.scatter([xi] * len(ys), ys, color=colour, s=8, alpha=0.4)
    ax.set_xticks(range(len(STEPS)), [f"T = {t}" for t in STEPS])
    ax.set_ylabel("5-shot sine test MSE (mean, 95% CI; dots: runs)")
    log_axis(ax)
    ax.grid(alpha=0.3, which="both")
    ax.set_title("004 Fig. 11 redrawn (TURTLE with 5 hidden layers): first vs second order", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, out / "order.png")


QUICK = ("outer.iterations=10", "eval.tasks=20", "eval.every=0")

TABLE6 = Spec("turtle-table6", "004 Table 6: TFS / Finetuning / LSTM / so-MAML / so-TURTLE on 004's sine tasks, "
              "1/5/10 steps, 5-20 shots", _cells6, _rows6, seeds=5, statistic="runs", quick=QUICK,
              options={"data": "metagrad"}, choices={"data": DATA}, claims=_claims6, note=_note6, row_extra=_extra6)

ORDER = Spec("turtle-order", "004 Fig. 11: first- vs second-order TURTLE and MAML on 5-shot sine, T = 1, 5, 10",
             lambda opts: [cell(m, t, 5) for t in STEPS for m in ORDER_MODELS], _rows_order, seeds=5,
             statistic="runs", quick=QUICK, claims=_claims_order, reuse=("turtle-table6",), plot=_plot_order,
             note="5-shot sine, mean test MSE on 2,000 tasks, 004's statistics across runs. TURTLE-raw: raw gradient "
                  "input, 5x20 ReLU, no per-parameter rates, meta-batch 1 (004 section 4.2.2). Fig. 11 gives no "
                  "numbers; the claim is the first-order gap. The so-MAML rows are turtle-table6's runs (the same "
                  "configs and seeds; their summaries are taken, not trained again).")

# settings a user may want to train alone (``metagrad train 004-so-turtle-t10-k15``)
PRESETS = {c["name"]: c for c in (config("so-TURTLE", 10, 15), config("so-TURTLE", 5, 10), config("so-MAML", 5, 10),
                                  config("LSTM", 10, 15))}
