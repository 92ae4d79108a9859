"""Seeds as one vmapped ``Population`` against the same seeds run one after the other (004's sine).

For each of so-MAML, so-TURTLE and the LSTM meta-learner (004 appendix A.1 settings,
``specs.turtle.config``, 5 shots; public API only),
times one meta-iteration (sampling, meta-loss, backward, clipping, Adam) of:

* ``single``: one run (``MAML.meta_loss``; its meta-batch of 1 to 4 tasks; so-TURTLE T = 10, whose
  setting clamps each task's meta-gradient, as a ``Population`` of one);
* ``population``: ``P`` runs as one ``Population`` (eager);
* ``population compiled``: the same under ``torch.compile`` (compilation time reported apart).

``--eval``: instead, time the validation pass of ``turtle-table6`` (every member's query MSE
after T steps on 250 tasks, in chunks of 50), eager against ``Population(compile_curves=True)``.

Rounds are interleaved, medians reported; the speed-up is ``P * single / population``: how much
faster ``P`` seeds finish together than one after the other.

    python benchmarks/bench_population.py --steps 5 --members 5 --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from metagrad.batch import TaskBatch  # noqa: E402
from metagrad.evaluation import adaptation_curves  # noqa: E402
from metagrad.experiments.building import build  # noqa: E402
from metagrad.experiments.config import Config  # noqa: E402
from metagrad.experiments.specs.turtle import config  # noqa: E402  (004's settings, as data)
from metagrad.population import Population  # noqa: E402
from metagrad.tasks.sine import Sinusoid  # noqa: E402


def _setting(model: str, steps: int) -> Config:
    return Config.from_dict(config(model, steps, 5))


def _members(cfg: Config, seeds) -> list:
    return [build(cfg.override([f"seed={s}"]))[0] for s in seeds]


def _clip(cfg: Config, module) -> None:
    """The setting's meta-gradient clipping (as ``fit`` applies it; the per-task clamp is in the Population)."""
    o, pop = cfg.outer, isinstance(module, Population)
    named = list(zip(module.names, module.stacked)) if pop else list(module.named_parameters())
    if o["clip_value"] is not None and o["clip_scope"] != "init_per_task":
        torch.nn.utils.clip_grad_value_([p for n, p in named if o["clip_scope"] == "all" or n.startswith("model.")],
                                        o["clip_value"])
    if o["clip_norm"] is not None:
        module.clip_grad_norm_(o["clip_norm"]) if pop else torch.nn.utils.clip_grad_norm_(module.parameters(), o["clip_norm"])


def single(model: str, steps: int) -> Callable[[], None]:
    cfg = _setting(model, steps)
    if cfg.outer["clip_scope"] == "init_per_task":
        # the per-task clamp lives in Population's meta-loss: one run is a population of one
        return population(model, steps, 1, False)
    algo = _members(cfg, [0])[0]
    opt = torch.optim.Adam(algo.parameters(), lr=1e-3)
    gen, dist, mb = torch.Generator().manual_seed(0), Sinusoid(5, 50), cfg.outer["meta_batch"]

    def step() -> None:
        loss = algo.meta_loss(dist.sample(mb, gen))
        opt.zero_grad()
        loss.backward()
        _clip(cfg, algo)
        opt.step()
    return step


def _population(cfg: Config, members: int, **kw) -> Population:
    per_task = cfg.outer["clip_value"] if cfg.outer["clip_scope"] == "init_per_task" else None
    return Population(_members(cfg, range(members)), task_clip=per_task, **kw)


def population(model: str, steps: int, members: int, compile: bool) -> Callable[[], None]:
    cfg = _setting(model, steps)
    pop = _population(cfg, members, compile=compile)
    opt = torch.optim.Adam(pop.parameters(), lr=1e-3)
    gens, dist, mb = [torch.Generator().manual_seed(s) for s in range(members)], Sinusoid(5, 50), cfg.outer["meta_batch"]

    def step() -> None:
        losses = pop.meta_losses(TaskBatch.cat([dist.sample(mb, g) for g in gens]))
        opt.zero_grad()
        losses.sum().backward()
        _clip(cfg, pop)
        opt.step()
    return step


def evaluation(model: str, steps: int, members: int, compile: bool) -> Callable[[], None]:
    pop = _population(_setting(model, steps), members, compile_curves=compile)
    tasks = Sinusoid(5, 50).sample(250, torch.Generator().manual_seed(0))
    return lambda: adaptation_curves(pop, tasks, steps, chunk=50)


def bench_eval(a: argparse.Namespace) -> dict:
    results = {}
    for model in a.models:
        eager, comp = evaluation(model, a.steps, a.members, False), evaluation(model, a.steps, a.members, True)
        t = time.perf_counter()
        comp()
        compile_s = time.perf_counter() - t
        eager()
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(a.rounds):
            for k, f in (("eager", eager), ("compiled", comp)):
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        results[model] = {"seconds_per_250_tasks": med, "compile_s": compile_s}
        print(f"{model} T={a.steps}, {a.members} members, 250 tasks: eager {med['eager']:.2f} s, compiled "
              f"{med['compiled']:.2f} s ({med['eager'] / med['compiled']:.2f}x); compile {compile_s:.0f} s", flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["so-MAML", "so-TURTLE", "LSTM"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--eval", action="store_true", help="time the compiled evaluation instead of training")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.eval:
        results = bench_eval(a)
        if a.json:
            a.json.write_text(json.dumps(results, indent=1))
        return
    results = {}
    for model in a.models:
        fns = {"single": single(model, a.steps), "population": population(model, a.steps, a.members, False)}
        compile_s = None
        if not a.no_compile:
            fns["population compiled"] = population(model, a.steps, a.members, True)
            t = time.perf_counter()
            fns["population compiled"]()
            compile_s = time.perf_counter() - t
        for f in fns.values():
            for _ in range(3):
                f()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(a.rounds):
            for k, f in fns.items():
                t = time.perf_counter()
                for _ in range(a.iters):
                    f()
                times[k].append(1000 * (time.perf_counter() - t) / a.iters)
        med = {k: statistics.median(v) for k, v in times.items()}
        results[model] = {"ms_per_iteration": med, "compile_s": compile_s, "members": a.members, "steps": a.steps}
        line = ", ".join(f"{k} {v:.1f} ms" for k, v in med.items())
        ups = ", ".join(f"{k} {a.members * med['single'] / v:.2f}x" for k, v in med.items() if k != "single")
        print(f"{model} T={a.steps}, {a.members} seeds: {line}; speed-up over {a.members} single runs: {ups}"
              + (f"; compile {compile_s:.0f} s" if compile_s else ""), flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
