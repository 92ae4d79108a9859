"""One-time conversion of the 004 records' run summaries (``cells/*.json``) to the sweep's schema 2.

The records ``turtle-table6/`` and ``turtle-table6-thesis-data/`` were written by the old
``reproduce/turtle_*`` code (one flat JSON per run: ``mean``, ``median``, ``ci95_tasks``, ``protocol``,
``spec``, ...). The sweep (``metagrad.experiments.sweep``) reads ``{"schema": 2, "cell", "seed", "labels",
"config", "evals": {"test": {...}}, "train": {...}}`` and reuses a run only when ``config`` is the sweep
identity of its cell's config, so each file is rewritten in place (same name, ``{cell.id}_s{seed}.json``):

* ``config``: the identity of ``specs.turtle.cell(model, steps, k_shot, data)``'s config;
* ``evals["test"]``: ``mean``, ``median``, ``ci95_tasks``, ``n_tasks`` = 2000, ``std_tasks`` =
  ``ci95_tasks * sqrt(2000) / 1.96`` (the interval was ``1.96 std / sqrt(n)``), ``diverged``;
* ``train``: ``seconds``, ``ms_per_iteration``, ``iterations``, ``best_val``, ``population``, and
  ``val_curve`` / ``nonfinite_at`` from meta-training tasks to iterations (divided by the meta-batch),
  ``skipped`` (0 and ``nonfinite_at`` null where the old run did not record them);
* kept as they were: ``thesis_restore_mean`` / ``thesis_restore_median`` (what the thesis's code tests),
  and under ``converted_from`` the old ``protocol``, ``spec`` and ``model`` / ``steps`` / ``k_shot``.

Files already in schema 2 are left alone, so running it again changes nothing::

    python reproductions/convert_records.py reproductions/turtle-table6 reproductions/turtle-table6-thesis-data
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from metagrad.experiments.config import Config
from metagrad.experiments.specs.turtle import TEST_TASKS, cell, load_thesis_data
from metagrad.experiments.sweep import SCHEMA, _identity
from metagrad.io import write_json


def convert(old: dict[str, Any]) -> dict[str, Any]:
    """The schema-2 summary of one old run summary."""
    data = old["protocol"].get("data", "metagrad")
    if data == "thesis":
        load_thesis_data()
    c = cell(old["model"], old["steps"], old["k_shot"], data)
    cfg = Config.from_dict(c.config)
    mb = cfg.outer["meta_batch"]
    ci = old["ci95_tasks"]
    test = {"metric": "mse", "mean": old["mean"], "median": old["median"],
            "std_tasks": ci * math.sqrt(TEST_TASKS) / 1.96 if ci == ci else math.nan, "ci95_tasks": ci,
            "n_tasks": TEST_TASKS, "diverged": old["diverged"]}
    nonfinite = old.get("nonfinite_at")
    train = {"iterations": old["iterations"], "seconds": old["seconds"], "ms_per_iteration": old["ms_per_iteration"],
             "population": old["population"], "best_val": old["best_val"],
             "val_curve": [[int(t) // mb, v] for t, v in old["val_curve"]],
             "nonfinite_at": None if nonfinite is None else -(-int(nonfinite) // mb), "skipped": old.get("skipped", 0),
             "state": "best_validated" if old["val_curve"] else "final"}
    out = {"schema": SCHEMA, "cell": c.id, "seed": old["seed"], "labels": dict(c.labels), "config": _identity(cfg),
           "evals": {"test": test}, "train": train}
    out.update({k: old[k] for k in ("thesis_restore_mean", "thesis_restore_median") if k in old})
    out["converted_from"] = {"schema": 1, **{k: old[k] for k in ("model", "steps", "k_shot", "protocol", "spec")
                                             if k in old},
                             "recorded_nonfinite": "nonfinite_at" in old}
    return out


def main(records: list[str]) -> None:
    for record in records:
        done = kept = 0
        for path in sorted(Path(record, "cells").glob("*.json")):
            old = json.loads(path.read_text())
            if old.get("schema") == SCHEMA:
                kept += 1
                continue
            new = convert(old)
            if path.name != f"{new['cell']}_s{new['seed']}.json":
                raise SystemExit(f"convert_records: {path} would hold {new['cell']} seed {new['seed']}; not converted")
            write_json(path, new)
            done += 1
        print(f"{record}: converted {done} run summaries to schema {SCHEMA}; {kept} already in schema {SCHEMA}")


if __name__ == "__main__":
    main(sys.argv[1:] or [str(Path(__file__).parent / r) for r in ("turtle-table6", "turtle-table6-thesis-data")])
