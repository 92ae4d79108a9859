"""How the runs of one ``turtle-table6`` cell trained: stalls, collapses and slow runs, from the record.

Not a timing, and no training: it reads the kept runs of a cell under ``--out`` (their ``cells/*.json``,
as ``--report`` does) and prints, per seed, the test MSE, whether the IQR rule drops it, and what its
validation curve (one point every 2,500 meta-training tasks) did:

- *stalled*: the validation MSE never went below ``--learned`` (1.5; predicting 0 gives about 4);
- *collapsed*: it went above ``--learned`` after having been below ``--good`` (0.6), at the given task
  count; *came back* when the last validation is below ``--learned`` again;
- *still improving*: the last validation is the best one.

Then one summary line: how many runs, how many test MSEs are at most ``--at-most``, and the stalled and
collapsed seeds.

    python reproductions/turtle-table6-thesis-data/diag_turtle_curves.py --out reproductions/turtle-table6-thesis-data \\
        --data thesis --model so-TURTLE --steps 10 --shots 15 --at-most 0.09
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from metagrad.evaluation import iqr_kept  # noqa: E402

DATA = {"metagrad": "sine", "thesis": "thesis_sine"}   # --data -> the runs' task.name


def cached_cells(out: Path, model: str, steps: int, shots: int, data: str) -> list[dict[str, Any]]:
    """The kept runs (schema 2) of a cell under ``out/cells`` on ``data``'s tasks, by seed, each with
    ``mean`` (test MSE) and ``val_curve`` in meta-training tasks (iterations times the meta-batch)."""
    runs = []
    for path in (out / "cells").glob(f"{model}_T{steps}_k{shots}_s*.json"):
        run = json.loads(path.read_text())
        if run.get("schema") == 2 and run["config"]["task"]["name"] == DATA[data]:
            mb = run["config"]["outer"]["meta_batch"]
            runs.append({"seed": run["seed"], "mean": run["evals"]["test"]["mean"],
                         "val_curve": [(it * mb, v) for it, v in run["train"]["val_curve"]]})
    return sorted(runs, key=lambda r: r["seed"])


def describe(curve: list[tuple[int, float]], learned: float, good: float) -> dict[str, Any]:
    """Stall, collapse and trend of one validation curve ``[(tasks, mse), ...]`` (see the module doc)."""
    values = [v for _, v in curve]
    collapsed_at: Optional[int] = None
    best = float("inf")
    for tasks, v in curve:
        if collapsed_at is None and best < good and v > learned:
            collapsed_at = tasks
        best = min(best, v)
    last = values[-1] if values else float("nan")
    return {"stalled": bool(values) and min(values) >= learned, "collapsed_at": collapsed_at,
            "came_back": collapsed_at is not None and last < learned, "last": last,
            "improving": bool(values) and last <= best}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="a turtle-table6 record or run folder (with cells/)")
    p.add_argument("--data", choices=DATA, default="metagrad", help="the tasks the record was trained on")
    p.add_argument("--model", default="so-TURTLE")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--shots", type=int, default=15)
    p.add_argument("--learned", type=float, default=1.5, help="validation MSE below which a run has learned")
    p.add_argument("--good", type=float, default=0.6, help="validation MSE a run must have reached to collapse")
    p.add_argument("--at-most", type=float, default=None, help="also count the test MSEs at most this")
    a = p.parse_args()
    if not (a.out / "cells").is_dir():
        p.error(f"no cells/ folder under --out {a.out}: give a turtle-table6 record or run folder")
    cells = cached_cells(a.out, a.model, a.steps, a.shots, a.data)
    name = f"{a.model} T={a.steps} k={a.shots}"
    if not cells:
        p.error(f"no kept run of {name} under {a.out} for --data {a.data}")
    kept = iqr_kept([c["mean"] for c in cells])
    stalled, collapsed = [], []
    print("| seed | test MSE | IQR rule | validation: stalled / collapsed at (tasks) / last |")
    print("| --- | --- | --- | --- |")
    for cell, keep in zip(cells, kept):
        d = describe([(int(t), float(v)) for t, v in cell.get("val_curve", [])], a.learned, a.good)
        what = ("stalled" if d["stalled"] else
                f"collapsed at {d['collapsed_at']:,}" + (", came back" if d["came_back"] else ", did not come back")
                if d["collapsed_at"] is not None else "learned")
        what += f"; last {d['last']:.3f}" + (" (still improving)" if d["improving"] else "")
        print(f"| {cell['seed']} | {cell['mean']:.4f} | {'kept' if keep else 'dropped'} | {what} |")
        stalled += [cell["seed"]] if d["stalled"] else []
        collapsed += [cell["seed"]] if d["collapsed_at"] is not None else []
    at_most = ("" if a.at_most is None else
               f", {sum(c['mean'] <= a.at_most for c in cells)} with test MSE at most {a.at_most}")
    print(f"{name}: {len(cells)} runs{at_most}, {len(cells) - sum(kept)} dropped by the IQR rule; "
          f"stalled: {stalled or 'none'}; collapsed: {collapsed or 'none'}")


if __name__ == "__main__":
    main()
