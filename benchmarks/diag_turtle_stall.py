"""Why some so-TURTLE runs stall on 004's sine tasks: the adapted base-learner's ReLUs die.

Trains the seeds of one ``turtle-table6`` cell together (004 appendix A.1 settings, the thesis's own
tasks in its order, as ``turtle-table6 --data thesis``) for ``--iterations`` meta-updates, printing each
run's mean query loss on the way. Then, for every run, it adapts the base-learner to the first
meta-training task and reports how many of the 40 hidden units of each layer are active anywhere on
``x in [-5, 5]`` and the mean absolute update per parameter tensor. A stalled run (validation MSE
about 4, the MSE of predicting 0) shows a second layer with no active unit and large updates of
about the same size in every tensor (an update that hardly depends on the gradient).

    python benchmarks/diag_turtle_stall.py --steps 10 --shots 5 --seeds 5 6 7 8 9 --iterations 100
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from metagrad.experiments.reproduce.turtle_common import QUERY, clip_grads, spec  # noqa: E402
from metagrad.experiments.reproduce.turtle_train import build_population, thesis_meta_batch  # noqa: E402
from metagrad.experiments.reproduce.turtle_data import thesis_tasks  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="so-TURTLE")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7, 8, 9])
    p.add_argument("--iterations", type=int, default=100, help="meta-updates (each of the spec's meta-batch)")
    a = p.parse_args()
    torch.set_num_threads(1)
    sp = spec(a.model, a.steps, a.shots)
    pop = build_population(sp, a.steps, a.seeds)     # as train_meta builds it
    opt = torch.optim.Adam(pop.parameters(), lr=1e-3)
    pool = thesis_tasks(a.shots, QUERY).train
    report = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, a.iterations}
    for it in range(1, a.iterations + 1):
        losses = pop.meta_losses(thesis_meta_batch(pool, it, sp.meta_batch, len(a.seeds)))   # as train_meta
        opt.zero_grad()
        losses.sum().backward()
        clip_grads(sp, pop)
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
