"""Why some so-TURTLE runs stall on 004's sine tasks: the adapted base-learner's ReLUs die.

Trains the seeds of one ``turtle-table6`` cell together (004 appendix A.1 settings, the thesis's own
tasks in its order, as ``turtle-table6 --data thesis``) for ``--iterations`` meta-updates, printing each
run's mean query loss on the way. Then, for every run, it adapts the base-learner to the first
meta-training task and reports how many of the 40 hidden units of each layer are active anywhere on
``x in [-5, 5]`` and the mean absolute update per parameter tensor. A stalled run (validation MSE
about 4, the MSE of predicting 0) shows a second layer with no active unit and large updates of
about the same size in every tensor (an update that hardly depends on the gradient).

    python reproductions/turtle-table6-thesis-data/diag_turtle_stall.py --steps 10 --shots 5 --seeds 5 6 7 8 9
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch  # noqa: E402

from metagrad.experiments.building import make_module  # noqa: E402
from metagrad.experiments.config import Config  # noqa: E402
from metagrad.experiments.specs.turtle import config, load_thesis_data  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="so-TURTLE")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7, 8, 9])
    p.add_argument("--iterations", type=int, default=100, help="meta-updates (each of the spec's meta-batch)")
    a = p.parse_args()
    torch.set_num_threads(1)
    load_thesis_data()
    cfg = Config.from_dict(config(a.model, a.steps, a.shots, "thesis"))
    pop, stream, _, _ = make_module(cfg, a.seeds)     # as the sweep builds a cell
    if len(a.seeds) == 1:
        raise SystemExit("diag_turtle_stall: give at least two --seeds (they train as one Population)")
    opt = torch.optim.Adam(pop.parameters(), lr=1e-3)
    o = cfg.outer
    clip = [p for n, p in zip(pop.names, pop.stacked) if o["clip_scope"] == "all" or n.startswith("model.")]
    pool = load_thesis_data().thesis_tasks(a.shots, 50).train
    report = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, a.iterations}
    for it in range(1, a.iterations + 1):
        losses = pop.meta_losses(stream.next().batch)     # the thesis's tasks in its order, as the sweep trains
        opt.zero_grad()
        losses.sum().backward()
        if o["clip_value"] is not None and o["clip_scope"] != "init_per_task":
            torch.nn.utils.clip_grad_value_(clip, o["clip_value"])
        if o["clip_norm"] is not None:
            pop.clip_grad_norm_(o["clip_norm"])
        opt.step()
        if it in report:
            per_run = losses.detach().reshape(len(a.seeds), -1).mean(1).tolist()
            print(f"iteration {it}: query loss per seed " + ", ".join(f"{v:.3f}" for v in per_run))
    task = pool[0:1]
    x = torch.linspace(-5, 5, 101)[:, None]
    with torch.no_grad():
        for i, seed in enumerate(a.seeds):
            member = pop.member(i)
            with torch.enable_grad():   # the inner loop differentiates the support loss
                fast = {k: v.detach() for k, v in member.adapt(task.support_x[0], task.support_y[0]).items()}
            init = {k: v.detach() for k, v in member.params().items()}
            active = [_active(w, x) for w in (init, fast)]
            update = ", ".join(f"{k} {float((fast[k] - init[k]).abs().mean()):.3f}" for k in fast)
            print(f"seed {seed}: active units (layer 1, layer 2) of 40 at the initialisation {active[0]}, "
                  f"adapted {active[1]}; mean |update| {update}")


def _active(w: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[int, int]:
    """How many units of each hidden layer of the 1-40-40-1 MLP ``w`` are active for some ``x``."""
    h1 = torch.relu(x @ w["net.0.weight"].T + w["net.0.bias"])
    h2 = torch.relu(h1 @ w["net.2.weight"].T + w["net.2.bias"])
    return int((h1 > 0).any(0).sum()), int((h2 > 0).any(0).sum())


if __name__ == "__main__":
    main()
