"""Image-classification tables as sweep specs: 001 Table 3 (Omniglot, miniImageNet) and 004 Tables 7-9.

Protocols: DESIGN.md section 4 and the docstrings of ``presets_images`` (the settings) and
``tasks/{omniglot,images,cub}.py`` (the data). Each cell is a config that ``metagrad train`` also
runs (``--set`` may change any key; runs record their config, so other settings never mix).

* ``omniglot-table3`` (001 Table 3, Omniglot): MAML, Meta-SGD, MT-net, 5-way and 20-way 1-shot, at
  the papers' settings: second order, 60,000 iterations, Adam 1e-3; 5-way one inner step of 0.4,
  meta-batch 32; 20-way five steps of 0.1, meta-batch 16; conv4 with 64 filters and strides;
  1100 + 100 + 423 characters (``--split official``: the background/evaluation split); the best
  validated state (every 2,000 iterations on 200 validation tasks) tested on 600 test tasks; one
  run per cell, 95% interval over test tasks (the paper reports intervals over test tasks). A
  second row per cell tests with 10 inner steps (never instead of the trained number).
* ``miniimagenet-table3`` (001 Table 3, miniImageNet): MAML, Meta-SGD, T-net, MT-net, 5-way 1- and
  5-shot: conv4 with 64 filters (001 section 6.4; MAML used 32) and 2x2 max-pooling, five inner
  steps of 0.01 (ten at test), meta-batch 4 / 2, 15 query images a class, 60,000 iterations.
* ``turtle-images`` (004 Tables 7-9): TrainFromScratch, Finetuning, centroid finetuning, the LSTM
  meta-learner, MAML and TURTLE, 5-way 1- and 5-shot, trained on miniImageNet or on CUB (004's
  70/15/15 classes) and each tested on both (Table 7: miniImageNet; Table 8: CUB; Table 9: across).
  004 appendix A.1: conv4 with 64 filters and max-pooling, 16 query images a class; 60,000
  meta-training tasks for 1-shot, 40,000 for 5-shot (section 4.2.1's text; its summary table swaps
  them); validation every 2,500 tasks on 600 tasks, the best state tested on 600; MAML five steps
  of 0.01 (ten at test), value clipping at 10, meta-batch 4 / 2; TURTLE 5x20 ReLU, gradient + EMA
  (0.9) + time step, per-parameter rates, five steps, meta-batch 2; LSTM 12 / 5 updates, meta-gradient
  norm clipped to 0.25; baselines pre-trained on flat batches of 16 for as many batches as there are
  meta-training tasks. Five runs per cell, summarised as 004 does; Table 7's paper column is 004's
  "our impl." (the best of its runs), so rows also show our best run.

``task.root`` is the data root holding ``omniglot/``, ``miniimagenet/`` and ``cub/``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Optional

from ..presets_geometry import KINDS
from ..presets_images import PRESETS as IMAGE_PRESETS, _rgb
from ..sweep import Cell, Row, Spec

__all__ = ["OMNIGLOT_TABLE3", "MINIIMAGENET_TABLE3", "TURTLE_IMAGES", "omniglot_config", "mini_config", "config004"]

# --- 001 Table 3, Omniglot ---------------------------------------------------------------------------------

OMNI_KINDS = ("MAML", "Meta-SGD", "MT-net")
WAYS = (5, 20)
# accuracy (fraction) ± 95% interval over test tasks, 1-shot
PAPER_OMNI = {("MAML", 5): (0.987, 0.004), ("MAML", 20): (0.958, 0.003), ("Meta-SGD", 5): (0.9953, 0.0026),
              ("Meta-SGD", 20): (0.9593, 0.0038), ("MT-net", 5): (0.995, 0.003), ("MT-net", 20): (0.9621, 0.0035)}
SPLITS = ("random", "official")


def omniglot_config(kind: str, n_way: int, split: str = "random") -> dict[str, Any]:
    """001's Omniglot setting of ``kind`` (MAML, Meta-SGD, MT-net) for ``n_way``-way 1-shot."""
    cfg = copy.deepcopy(IMAGE_PRESETS[f"omniglot-{n_way}w1s-maml"])
    cfg["name"] = f"001-omniglot-{kind.lower()}-{n_way}w1s"
    cfg["inner"] = {**KINDS[kind], "lr": cfg["inner"]["lr"], "steps": cfg["inner"]["steps"], "mode": "second_order"}
    cfg["eval"]["val_tasks"] = 200
    if split != "random":
        cfg["task"]["split_by"] = split
    return cfg


def _omni_evals(split: str) -> dict[str, list[str]]:
    """As trained and with 10 test steps; on the official split also tasks drawn within one alphabet
    of the evaluation set (Lake et al.'s harder test: similar characters side by side)."""
    within = {"within_alphabet": ["task.within_alphabet=true"]} if split == "official" else {}
    return {"test": [], "steps10": ["eval.steps=10"], **within}


def _omni_cells(opts: Mapping[str, Any]) -> list[Cell]:
    split = opts.get("split", "random")
    return [Cell(f"{k}_{n}way", omniglot_config(k, n, split), _omni_evals(split), labels={"model": k, "n_way": n})
            for k in OMNI_KINDS for n in WAYS]


def _omni_rows(opts: Mapping[str, Any]) -> list[Row]:
    rows, official = [], opts.get("split", "random") == "official"
    for k in OMNI_KINDS:
        for n in WAYS:
            rows.append(Row(k, {"n_way": n, "k_shot": 1}, f"{k}_{n}way", "test", *PAPER_OMNI[(k, n)]))
            rows.append(Row(f"{k} (10 test steps)", {"n_way": n, "k_shot": 1}, f"{k}_{n}way", "steps10"))
            if official:
                rows.append(Row(f"{k} (within-alphabet test tasks)", {"n_way": n, "k_shot": 1}, f"{k}_{n}way",
                                "within_alphabet"))
    return rows


def _claims_paper(rows: list[dict[str, Any]]) -> dict[str, Any]:
    compared = [r for r in rows if r.get("paper") is not None]
    return {"all_within_or_better_than_paper": all(r.get("vs_paper") in ("within", "better") for r in compared),
            "worse_than_paper": [f"{r['model']} {r['setting']}" for r in compared if r.get("vs_paper") == "worse"]}


def plot_validation(out: Path, rows: list[dict[str, Any]], runs: Mapping[str, list[dict[str, Any]]]) -> None:
    """001 Table 3's runs, validation accuracy against meta-training iteration (``validation.png``), a
    star at the best validated state (the one tested) and the test accuracy in the legend: how each
    run reached its number (a flat tail says more iterations would not help; a rising one, that they may)."""
    from ...plotting import pyplot, save_figure
    curves = [(cell_id, s) for cell_id, summaries in sorted(runs.items()) for s in summaries
              if s.get("train", {}).get("val_curve")]
    if not curves:
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    for i, (cell_id, s) in enumerate(curves):
        its, accs = zip(*((it, 100 * acc) for it, acc in s["train"]["val_curve"]))
        best = max(range(len(accs)), key=lambda j: (accs[j], -its[j]))   # the first of equal bests, as fit keeps
        test = s.get("evals", {}).get("test", {})
        label = cell_id + (f" s{s['seed']}" if len(runs[cell_id]) > 1 else "") + \
            (f": test {100 * test['mean']:.2f} ± {100 * test['ci95_tasks']:.2f}%" if "ci95_tasks" in test else "")
        ax.plot(its, accs, color=f"C{i}", marker="o", ms=3, label=label)
        ax.plot([its[best]], [accs[best]], color=f"C{i}", marker="*", ms=12, ls="none")
    ax.set_xlabel("meta-training iteration")
    ax.set_ylabel("validation accuracy, %")
    ax.set_title("001 Table 3: validation during meta-training (star: the state tested)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    save_figure(fig, out / "validation.png")


# --quick: a tiny smoke run of every cell (seconds); the full protocol is the claim.
QUICK_OMNI = ("outer.iterations=2", "outer.meta_batch=2", "eval.tasks=10", "eval.every=0", "eval.batch=10",
              "model.hidden=8")

OMNIGLOT_TABLE3 = Spec(
    "omniglot-table3", "001 Table 3 (Omniglot): MAML / Meta-SGD / MT-net, 5- and 20-way 1-shot, second order",
    _omni_cells, _omni_rows, seeds=1, statistic="tasks", quick=QUICK_OMNI, claims=_claims_paper,
    plot=plot_validation, options={"split": "random"}, choices={"split": SPLITS},
    reuse=("universality-omniglot-ood", "universality-finetune"),   # 000's figures: the same MAML runs (kept_runs)
    note=lambda o: ("Accuracy of the best validated state on 600 test tasks, 95% interval over tasks; one run per "
                    "cell as the paper reports. Second order, 60,000 iterations. Characters: " +
                    ("1100 + 100 + 423 (seeded shuffle, 001's protocol)." if o.get("split", "random") == "random" else
                     "official split (background set to train, evaluation set to test; the paper used the "
                     "shuffle, so the comparison is indicative).") + " Paper: 001 Table 3."))


# --- 001 Table 3, miniImageNet --------------------------------------------------------------------------

MINI_KINDS = ("MAML", "Meta-SGD", "T-net", "MT-net")
SHOTS = (1, 5)
PAPER_MINI: dict[tuple[str, int], Optional[tuple[float, float]]] = {
    ("MAML", 1): (0.4870, 0.0184), ("MAML", 5): (0.6311, 0.0092), ("Meta-SGD", 1): (0.5047, 0.0187),
    ("Meta-SGD", 5): (0.6403, 0.0094), ("T-net", 1): (0.5082, 0.0069), ("T-net", 5): None,
    ("MT-net", 1): (0.5169, 0.0070), ("MT-net", 5): (0.6408, 0.0035)}


def mini_config(kind: str, k_shot: int) -> dict[str, Any]:
    """001's miniImageNet setting of ``kind`` at ``k_shot`` (MAML's protocol with 001's 64 filters)."""
    cfg = _rgb(f"001-miniimagenet-{kind.lower()}-5w{k_shot}s", "miniimagenet", k_shot)
    cfg["model"]["hidden"] = 64
    cfg["inner"] = {**KINDS[kind], "lr": 0.01, "steps": 5, "mode": "second_order"}
    return cfg


def _mini_cells(opts: Mapping[str, Any]) -> list[Cell]:
    return [Cell(f"{k}_k{s}", mini_config(k, s), labels={"model": k, "k_shot": s}) for k in MINI_KINDS for s in SHOTS]


def _mini_rows(opts: Mapping[str, Any]) -> list[Row]:
    return [Row(k, {"n_way": 5, "k_shot": s}, f"{k}_k{s}", "test", *(PAPER_MINI[(k, s)] or (None, None)))
            for k in MINI_KINDS for s in SHOTS]


# Tiny images and networks: a smoke run that works on real data and on test fixtures alike.
QUICK_RGB = ("outer.iterations=2", "eval.tasks=4", "eval.every=0", "eval.batch=4", "model.hidden=4",
             "task.image_size=16", "task.k_query=2", "inner.steps=1", "eval.steps=2")

MINIIMAGENET_TABLE3 = Spec(
    "miniimagenet-table3", "001 Table 3 (miniImageNet): MAML / Meta-SGD / T-net / MT-net, 5-way 1- and 5-shot",
    _mini_cells, _mini_rows, seeds=1, statistic="tasks", quick=QUICK_RGB, claims=_claims_paper,
    plot=plot_validation, note="Accuracy of the best validated state on 600 test tasks after 10 inner steps, 95% interval over tasks; "
         "one run per cell. Conv4 with 64 filters (001 section 6.4), second order, 60,000 iterations. Paper: 001 "
         "Table 3 (its MAML row is Finn et al.'s, with 32 filters).")


# --- 004 Tables 7-9 ---------------------------------------------------------------------------------------

MODELS004 = ("TrainFromScratch", "Finetuning", "CentroidFinetuning", "LSTM", "MAML", "TURTLE")
BASELINES004 = ("TrainFromScratch", "Finetuning", "CentroidFinetuning")
DATASETS = ("miniimagenet", "cub")
_OTHER = {"miniimagenet": "cub", "cub": "miniimagenet"}
# (model) -> ((1-shot mean, ci), (5-shot mean, ci)); Table 7 is 004's "our impl." column (no intervals).
PAPER7 = {"TrainFromScratch": ((0.29, None), (0.41, None)), "Finetuning": ((0.39, None), (0.56, None)),
          "CentroidFinetuning": ((0.45, None), (0.58, None)), "LSTM": ((0.38, None), (0.60, None)),
          "MAML": ((0.48, None), (0.63, None)), "TURTLE": ((0.49, None), (0.64, None))}
PAPER8 = {"TrainFromScratch": ((0.30, 0.00), (0.46, 0.00)), "Finetuning": ((0.33, 0.00), (0.53, 0.00)),
          "CentroidFinetuning": ((0.36, 0.01), (0.53, 0.02)), "LSTM": ((0.47, 0.01), (0.64, 0.01)),
          "MAML": ((0.52, 0.00), (0.73, 0.01)), "TURTLE": ((0.53, 0.01), (0.71, 0.01))}
PAPER9 = {("miniimagenet", "TrainFromScratch"): ((0.31, 0.00), (0.47, 0.00)),
          ("miniimagenet", "Finetuning"): ((0.33, 0.00), (0.52, 0.01)),
          ("miniimagenet", "CentroidFinetuning"): ((0.35, 0.01), (0.52, 0.01)),
          ("miniimagenet", "LSTM"): ((0.27, 0.01), (0.57, 0.01)), ("miniimagenet", "MAML"): ((0.39, 0.00), (0.58, 0.00)),
          ("miniimagenet", "TURTLE"): ((0.42, 0.01), (0.59, 0.01)),
          ("cub", "TrainFromScratch"): ((0.29, 0.00), (0.40, 0.00)), ("cub", "Finetuning"): ((0.29, 0.00), (0.41, 0.00)),
          ("cub", "CentroidFinetuning"): ((0.26, 0.00), (0.31, 0.01)), ("cub", "LSTM"): ((0.29, 0.01), (0.37, 0.00)),
          ("cub", "MAML"): ((0.32, 0.00), (0.47, 0.00)), ("cub", "TURTLE"): ((0.31, 0.00), (0.44, 0.00))}


def config004(model: str, dataset: str, k_shot: int) -> dict[str, Any]:
    """004's setting of ``model`` trained on ``dataset`` at ``k_shot`` (module docstring)."""
    tasks = 60_000 if k_shot == 1 else 40_000
    inner: dict[str, Any]
    if model == "MAML":
        inner, outer = ({"learner": "sgd", "lr": 0.01, "steps": 5, "grad_clip": 10.0},
                        {"meta_batch": 4 if k_shot == 1 else 2, "clip_value": 10.0})
    elif model == "TURTLE":
        inner, outer = ({"learner": "turtle", "inputs": ["grad", "ema_grad", "time"], "beta": 0.9, "hidden_layers": 5,
                         "width": 20, "steps": 5, "grad_clip": 10.0},
                        {"meta_batch": 2, "clip_value": 10.0, "clip_scope": "init"})
    elif model == "LSTM":
        inner, outer = {"learner": "lstm", "steps": 12 if k_shot == 1 else 5}, {"meta_batch": 1, "clip_norm": 0.25}
    else:   # a baseline: ``outer.iterations`` pre-training batches of 16, one per meta-training task
        inner, outer = {"learner": "sgd", "lr": 0.01, "steps": 5}, {"meta_batch": 1}
    mb = outer["meta_batch"]
    return {"name": f"004-{model.lower()}-{dataset}-5w{k_shot}s",
            "task": {"name": dataset, "n_way": 5, "k_shot": k_shot, "k_query": 16},
            "model": {"name": "conv4", "hidden": 64, "pooling": "max"},
            "inner": {**inner, "mode": "second_order"},
            "outer": {"optimizer": "adam", "lr": 1e-3, "iterations": tasks // mb, "nonfinite": "stop", **outer},
            "eval": {"tasks": 600, "steps": 10 if model == "MAML" else None, "batch": 25,
                     "every": 0 if model in BASELINES004 else 2500 // mb, "val_tasks": 600, "test_state": "best"},
            "log_every": 100, "checkpoint_every": 500}


def _cell004(model: str, dataset: str, k: int) -> Cell:
    return Cell(f"{model}_{dataset}_k{k}", config004(model, dataset, k),
                {"same": [], "cross": [f"task.name={_OTHER[dataset]}"]},
                trainer=model if model in BASELINES004 else "meta",
                labels={"model": model, "dataset": dataset, "k_shot": k})


def _cells004(opts: Mapping[str, Any]) -> list[Cell]:
    return [_cell004(m, d, k) for d in DATASETS for k in SHOTS for m in MODELS004]


def _rows004(opts: Mapping[str, Any]) -> list[Row]:
    rows = []
    for table, train, test, ev in ((7, "miniimagenet", "miniimagenet", "same"), (8, "cub", "cub", "same"),
                                   (9, "miniimagenet", "cub", "cross"), (9, "cub", "miniimagenet", "cross")):
        for k in SHOTS:
            for m in MODELS004:
                paper = (PAPER7 if table == 7 else PAPER8 if table == 8 else {m: PAPER9[(train, m)]})[m][SHOTS.index(k)]
                rows.append(Row(m, {"table": table, "train": train, "test": test, "k_shot": k},
                                f"{m}_{train}_k{k}", ev, *paper))
    return rows


def _best_run(r: Row, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The best run's mean (004's Table 7 reports its best run), beside the robust summary."""
    means = [f["evals"][r.eval]["mean"] for f in runs if not f["evals"][r.eval].get("diverged")]
    return {"best_run": max(means) if means else None}


TURTLE_IMAGES = Spec(
    "turtle-images", "004 Tables 7-9: baselines, LSTM, MAML, TURTLE on miniImageNet and CUB (5-way 1/5-shot, "
    "and across the two)", _cells004, _rows004, seeds=5, statistic="runs", quick=QUICK_RGB, claims=_claims_paper,
    row_extra=_best_run,
    note="Accuracy on 600 test tasks of each run's best validated state, summarised across runs as 004 does (mean, "
         "median, 95% interval after IQR outlier removal); 'best_run': the best run's mean (Table 7's paper column is "
         "004's best run, without an interval). Table 9 tests the runs trained for Tables 7 and 8 on the other data "
         "set's test classes.")
