"""metagrad beside higher and torchopt: the same second-order meta-gradient, and its time.

Workloads (Finn et al. 2017, DESIGN.md section 4):

* ``sine`` (default): MLP 1-40-40-1 (ReLU), 10-shot tasks with 10 query points, meta-batch 25, five
  inner SGD steps of 0.01, second order, Adam 1e-3;
* ``conv4``: Omniglot's conv4 (four 3x3 convolutions of 64 filters, stride 2, ``nn.BatchNorm2d``
  without running statistics, ReLU; a linear layer) on 5-way 1-shot tasks of random 28x28 images
  with one query image a class, meta-batch 32, one inner step of 0.4: the batch-norm case, where
  torch.func's ``vmap`` gives wrong second-order gradients (DESIGN.md section 2).

Contenders, each written as its library's documentation writes MAML:

* ``metagrad``: ``mg.MAML(..., mode="second_order")``, tasks vmapped;
* ``higher``: ``higher.innerloop_ctx`` over ``torch.optim.SGD``, a loop over tasks (its README);
* ``torchopt``: ``torchopt.MetaSGD`` with ``extract_state_dict`` / ``recover_state_dict``, a loop over
  tasks (its MAML example);
* ``torchopt+vmap``: torchopt's functional ``torchopt.sgd`` (``update(..., inplace=False)``,
  ``apply_updates(..., inplace=False)``) inside ``torch.func.vmap`` over tasks, the pattern of its
  functorch examples.

First the check: on one batch in float64, every contender's meta-gradient against metagrad's
(relative error of the whole gradient vector): an independent implementation of the same
second-order MAML, so the number says both are right or at least one is wrong. Then speed:
``--rounds`` rounds of ``--iters`` float32 meta-iterations per contender, interleaved in shuffled
order in one process, medians, and each peer's time over metagrad's per round (median and its
distribution-free 95% interval).

The peers live in their own environment (not dependencies; benchmarks/README.md has the commands)::

    /tmp/peers/bin/python benchmarks/bench_peers.py --threads 1 [--rounds 9 --iters 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from torch.func import functional_call, grad, vmap  # noqa: E402

import metagrad as mg  # noqa: E402
from timing import cpu_description, interleaved, median_interval  # noqa: E402

# workload -> (inner steps, meta-batch, inner rate)
WORKLOADS = {"sine": (5, 25, 0.01), "conv4": (1, 32, 0.4)}
WORKLOAD = "sine"
STEPS, META_BATCH, INNER_LR = WORKLOADS[WORKLOAD]
LOSS: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = lambda pred, y: ((pred - y) ** 2).mean()  # noqa: E731


def task_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The workload's loss: MSE for sine, cross-entropy for conv4 (``LOSS``, set by ``--workload``)."""
    return LOSS(pred, y)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    if WORKLOAD == "sine":
        return mg.models.MLP([1, 40, 40, 1])
    layers: list[torch.nn.Module] = []
    for c in (1, 64, 64, 64):
        layers += [torch.nn.Conv2d(c, 64, 3, stride=2, padding=1),
                   torch.nn.BatchNorm2d(64, track_running_stats=False), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(64 * 2 * 2, 5))


class RandomImages:
    """5-way 1-shot tasks of random 28x28 images (a gradient check and a timing need no real data)."""

    def sample(self, n: int, g: torch.Generator) -> mg.TaskBatch:
        y = torch.arange(5).repeat(n, 1)
        return mg.TaskBatch(support_x=torch.rand(n, 5, 1, 28, 28, generator=g), support_y=y,
                            query_x=torch.rand(n, 5, 1, 28, 28, generator=g), query_y=y.clone())


def meta_loss_fn(name: str, model: torch.nn.Module) -> Callable[[mg.TaskBatch], torch.Tensor]:
    """``batch -> meta-loss`` (mean over tasks) whose ``backward`` leaves the meta-gradient in
    ``model``'s ``.grad`` (the loop contenders call ``backward`` per task, as their examples do, and
    return the detached total)."""
    if name == "metagrad":
        algo = mg.MAML(model, inner_lr=INNER_LR, inner_steps=STEPS, mode="second_order",
                       loss="mse" if WORKLOAD == "sine" else "cross_entropy")
        return algo.meta_loss
    if name == "higher":
        import higher
        inner_opt = torch.optim.SGD(model.parameters(), lr=INNER_LR)

        def loss_higher(b: mg.TaskBatch) -> torch.Tensor:
            total = 0.0
            for i in range(b.n_tasks):
                with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
                    for _ in range(STEPS):
                        diffopt.step(task_loss(fmodel(b.support_x[i]), b.support_y[i]))
                    q = task_loss(fmodel(b.query_x[i]), b.query_y[i]) / b.n_tasks
                    q.backward()
                    total += q.item()
            return torch.tensor(total)
        return loss_higher
    import torchopt
    if name == "torchopt":
        inner = torchopt.MetaSGD(model, lr=INNER_LR)

        def loss_torchopt(b: mg.TaskBatch) -> torch.Tensor:
            net_state = torchopt.extract_state_dict(model, by="reference", detach_buffers=True)
            opt_state = torchopt.extract_state_dict(inner, by="reference")
            total = 0.0
            for i in range(b.n_tasks):
                for _ in range(STEPS):
                    inner.step(task_loss(model(b.support_x[i]), b.support_y[i]))
                q = task_loss(model(b.query_x[i]), b.query_y[i]) / b.n_tasks
                q.backward()
                total += q.item()
                torchopt.recover_state_dict(model, net_state)
                torchopt.recover_state_dict(inner, opt_state)
            return torch.tensor(total)
        return loss_torchopt
    sgd = torchopt.sgd(lr=INNER_LR)

    def one_task(params: dict, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
        state = sgd.init(params)
        for _ in range(STEPS):
            g = grad(lambda p: task_loss(functional_call(model, p, (sx,)), sy))(params)
            updates, state = sgd.update(g, state, inplace=False)
            params = torchopt.apply_updates(params, updates, inplace=False)
        return task_loss(functional_call(model, params, (qx,)), qy)

    def loss_vmap(b: mg.TaskBatch) -> torch.Tensor:
        params = dict(model.named_parameters())
        return vmap(one_task, in_dims=(None, 0, 0, 0, 0))(params, b.support_x, b.support_y, b.query_x,
                                                           b.query_y).mean()
    return loss_vmap


def meta_gradient(name: str, batch: mg.TaskBatch) -> torch.Tensor:
    """The meta-gradient of contender ``name`` on ``batch`` in float64 (the same initial weights)."""
    model = make_model().double()
    loss = meta_loss_fn(name, model)(batch)
    if loss.requires_grad:
        loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def make_step(name: str, task: mg.tasks.Sinusoid | RandomImages) -> Callable[[], float]:
    """One float32 meta-iteration of ``name`` (tasks drawn, meta-loss, backward, Adam), as training runs it."""
    model = make_model()
    loss_fn, g = meta_loss_fn(name, model), torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> float:
        batch = task.sample(META_BATCH, g)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(batch)
        if loss.requires_grad:
            loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--iters", type=int, default=10, help="timed meta-iterations per contender per round")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--workload", choices=tuple(WORKLOADS), default="sine")
    args = ap.parse_args()
    global WORKLOAD, STEPS, META_BATCH, INNER_LR, LOSS
    WORKLOAD = args.workload
    STEPS, META_BATCH, INNER_LR = WORKLOADS[WORKLOAD]
    if args.workload == "conv4":
        LOSS = torch.nn.functional.cross_entropy
    if args.threads:
        torch.set_num_threads(args.threads)
    names = ["metagrad"]
    for peer, module in (("higher", "higher"), ("torchopt", "torchopt"), ("torchopt+vmap", "torchopt")):
        try:
            __import__(module)
            names.append(peer)
        except ImportError:
            print(f"{peer}: not importable here, skipped (benchmarks/README.md: its environment)")
    task = mg.tasks.Sinusoid(k_shot=10, k_query=10) if args.workload == "sine" else RandomImages()
    batch = task.sample(META_BATCH, torch.Generator().manual_seed(0))
    batch = batch.to(torch.float64) if args.workload == "sine" else \
        mg.TaskBatch(batch.support_x.double(), batch.support_y, batch.query_x.double(), batch.query_y)
    ref = meta_gradient("metagrad", batch)
    what = "MLP 1-40-40-1" if args.workload == "sine" else "conv4 with nn.BatchNorm2d, 5-way 1-shot random images"
    print(f"{args.workload}: {what}, meta-batch {META_BATCH}, {STEPS} inner step(s) of {INNER_LR}, second order; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu_description()}")
    print("meta-gradient in float64 on one batch, relative to metagrad's (||g - g_metagrad|| / ||g_metagrad||):")
    for n in names[1:]:
        g = meta_gradient(n, batch)
        err = float((g - ref).norm() / ref.norm())
        print(f"  {n:14s} {err:.2e}  {'agree' if err < 1e-10 else 'DIFFER'}")
    steps = {n: make_step(n, task) for n in names}
    for s in steps.values():
        for _ in range(3):   # warm-up
            s()
    rounds = interleaved(steps, args.rounds, args.iters)
    per_round = {n: [statistics.median(r) for r in v] for n, v in rounds.items()}
    print(f"ms per meta-iteration, medians of {args.rounds} interleaved rounds x {args.iters}; "
          "the peer's time over metagrad's per round (median, 95% interval):")
    for n in names:
        ms = 1000 * statistics.median(per_round[n])
        if n == "metagrad":
            print(f"  {n:14s} {ms:9.2f}")
            continue
        ratios = [a / b for a, b in zip(per_round[n], per_round["metagrad"])]
        lo, hi = median_interval(ratios)
        print(f"  {n:14s} {ms:9.2f}   {statistics.median(ratios):.1f}x ({lo:.1f}-{hi:.1f})")


if __name__ == "__main__":
    main()
