"""Omniglot presets: the protocol of Finn et al. 2017 (DESIGN.md section 4; 001 Table 3).

Conv4 (64 filters, stride-2 convs, transductive batch norm), 28x28 images, 1200 training
characters with rotations (100 of them held out for validation), one query image per class
as in MAML's reference code, Adam 1e-3, 60,000 meta-iterations.

* 5-way 1-shot: one inner SGD step of 0.4, meta-batch 32 (paper: 98.7 +- 0.4%).
* 20-way 1-shot: five inner steps of 0.1, meta-batch 16 (paper: 95.8 +- 0.3%).
* ``-fomaml``: the same with first-order meta-gradients.
* ``-90min``: first-order runs measured to fit 90 minutes on this project's 2-core CPU machine
  (both ran side by side, one thread each): Adam 1e-3 decayed to 0 on a cosine schedule;
  5-way: 30,000 iterations of the paper's setting; 20-way: 10,000 iterations of two inner steps
  of 0.2 (half the inner work of five steps of 0.1, so twice the meta-iterations).
* ``omniglot-5w1s-maml-quick``: a few minutes on two CPU cores (a smoke run; accuracy rises
  well above the 20% chance level but far from the paper's).
* ``omniglot-5w1s-fomaml-official``: the official split (background set to train, evaluation set
  to test, ``task.split_by="official"``); add ``--set task.within_alphabet=true`` for Lake et al.'s
  within-alphabet test tasks.

miniImageNet and CUB (MAML's protocol, Finn et al. 2017, as 001 Table 3 reports it): conv4 with 32
filters and 2x2 max-pooling on 84x84 RGB, 5-way, 15 query images per class (MAML's code), five inner
SGD steps of 0.01 in training and ten at test time, meta-batch 4 (1-shot) or 2 (5-shot), Adam 1e-3,
60,000 iterations, 600 test tasks; validation every 2,000 iterations on 200 fixed validation tasks.
Paper (001 Table 3, miniImageNet): MAML 48.70 +- 1.84% (1-shot), 63.11 +- 0.92% (5-shot).

* ``miniimagenet-5w1s-maml``, ``miniimagenet-5w5s-maml``: second order; ``-fomaml``: first order
  (MAML paper: 48.07 +- 1.75% / 63.15 +- 0.91%).
* ``cub-5w1s-maml``, ``cub-5w5s-maml``: the same on CUB-200-2011 with 004's 70/15/15 class split.

``task.root`` is the data root holding ``miniimagenet/`` and ``cub/`` (layouts: ``tasks/images.py``
and ``tasks/cub.py``), or ``$METAGRAD_DATA``.
"""
from __future__ import annotations

import copy
from typing import Any

__all__ = ["PRESETS"]


def _omniglot(name: str, n_way: int, steps: int, lr: float, meta_batch: int, mode: str = "second_order",
              iterations: int = 60000) -> dict[str, Any]:
    return {
        "name": name,
        "task": {"name": "omniglot", "n_way": n_way, "k_shot": 1, "k_query": 1},
        "model": {"name": "conv4", "hidden": 64},
        "inner": {"learner": "sgd", "lr": lr, "steps": steps, "mode": mode},
        "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": meta_batch, "iterations": iterations},
        "eval": {"tasks": 600, "batch": 100, "every": 2000, "val_tasks": 200},
        "log_every": 100, "checkpoint_every": 1000,
    }


PRESETS: dict[str, dict[str, Any]] = {
    "omniglot-5w1s-maml": _omniglot("omniglot-5w1s-maml", 5, 1, 0.4, 32),
    "omniglot-5w1s-fomaml": _omniglot("omniglot-5w1s-fomaml", 5, 1, 0.4, 32, "first_order"),
    "omniglot-20w1s-maml": _omniglot("omniglot-20w1s-maml", 20, 5, 0.1, 16),
    "omniglot-20w1s-fomaml": _omniglot("omniglot-20w1s-fomaml", 20, 5, 0.1, 16, "first_order"),
}

for _name, _way, _steps, _lr, _mb, _iters in (("omniglot-5w1s-fomaml-90min", 5, 1, 0.4, 32, 30000),
                                               ("omniglot-20w1s-fomaml-90min", 20, 2, 0.2, 16, 10000)):
    PRESETS[_name] = _omniglot(_name, _way, _steps, _lr, _mb, "first_order", _iters)
    PRESETS[_name]["outer"]["schedule"] = "cosine"

_quick = copy.deepcopy(_omniglot("omniglot-5w1s-maml-quick", 5, 1, 0.4, 32, "second_order", 300))
_quick["eval"].update({"tasks": 600, "every": 100, "val_tasks": 100})
_quick["log_every"], _quick["checkpoint_every"] = 25, 100
PRESETS["omniglot-5w1s-maml-quick"] = _quick

PRESETS["omniglot-5w1s-fomaml-official"] = copy.deepcopy(PRESETS["omniglot-5w1s-fomaml"])
PRESETS["omniglot-5w1s-fomaml-official"].update({"name": "omniglot-5w1s-fomaml-official"})
PRESETS["omniglot-5w1s-fomaml-official"]["task"]["split_by"] = "official"


def _rgb(name: str, dataset: str, k_shot: int, mode: str = "second_order") -> dict[str, Any]:
    """MAML's miniImageNet setting (module docstring) on ``dataset`` (``miniimagenet`` or ``cub``)."""
    return {
        "name": name,
        "task": {"name": dataset, "n_way": 5, "k_shot": k_shot, "k_query": 15},
        "model": {"name": "conv4", "hidden": 32, "pooling": "max"},
        "inner": {"learner": "sgd", "lr": 0.01, "steps": 5, "mode": mode},
        "outer": {"optimizer": "adam", "lr": 1e-3, "meta_batch": 4 if k_shot == 1 else 2, "iterations": 60000},
        "eval": {"tasks": 600, "steps": 10, "batch": 50, "every": 2000, "val_tasks": 200},
        "log_every": 100, "checkpoint_every": 500,
    }


for _ds in ("miniimagenet", "cub"):
    for _k in (1, 5):
        for _mode, _tag in (("second_order", "maml"), ("first_order", "fomaml")):
            _n = f"{_ds}-5w{_k}s-{_tag}"
            PRESETS[_n] = _rgb(_n, _ds, _k, _mode)
