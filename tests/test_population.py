"""``Population``: P runs trained as one vmapped computation equal the P runs trained alone."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from metagrad.batch import TaskBatch
from metagrad.evaluation import adaptation_curves
from metagrad.experiments.building import build
from metagrad.experiments.config import Config
from metagrad.experiments.specs.turtle import config as turtle_config
from metagrad.experiments.train_runs import train_runs
from metagrad.tasks.sine import Sinusoid
from metagrad.population import Population


def sine(k_shot: int) -> Sinusoid:
    return Sinusoid(k_shot=k_shot, k_query=50)


def _cfg(model: str, steps: int) -> Config:
    """004's setting of ``model`` (``specs.turtle.config``), 5 shots."""
    return Config.from_dict(turtle_config(model, steps, 5))


def _one(model: str, steps: int, seed: int) -> mg.MAML:
    return build(_cfg(model, steps).override([f"seed={seed}"]))[0]


def _members(model: str, steps: int, seeds: list[int]) -> list[mg.MAML]:
    return [_one(model, steps, s).double() for s in seeds]


def clip_grads(model: str, steps: int, module: mg.MAML | Population) -> None:
    """The setting's meta-gradient clipping (``outer.clip_value`` of ``clip_scope``, ``outer.clip_norm``)."""
    o = _cfg(model, steps).outer
    named = list(zip(module.names, module.stacked)) if isinstance(module, Population) else list(module.named_parameters())
    if o["clip_value"] is not None:
        torch.nn.utils.clip_grad_value_([p for n, p in named if o["clip_scope"] == "all" or n.startswith("model.")],
                                        o["clip_value"])
    if o["clip_norm"] is not None:
        if isinstance(module, Population):
            module.clip_grad_norm_(o["clip_norm"])
        else:
            torch.nn.utils.clip_grad_norm_(module.parameters(), o["clip_norm"])


def _train_alone(algo: mg.MAML, model: str, steps: int, seed: int, iters: int) -> mg.MAML:
    """The reference: one run with ``MAML.meta_loss``, Adam and the setting's clipping."""
    mb = _cfg(model, steps).outer["meta_batch"]
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(iters):
        loss = algo.meta_loss(sine(5).sample(mb, gen).to(torch.float64))
        opt.zero_grad()
        loss.backward()
        clip_grads(model, steps, algo)
        opt.step()
    return algo


@pytest.mark.parametrize("model,steps", [("so-MAML", 2), ("so-TURTLE", 2), ("LSTM", 2)])
def test_population_training_equals_separate_runs(model: str, steps: int) -> None:
    seeds, iters = [0, 1, 2], 3
    mb = _cfg(model, steps).outer["meta_batch"]
    pop = Population(_members(model, steps, seeds))
    opt = torch.optim.Adam(pop.parameters(), lr=1e-2)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(iters):
        batch = mg.TaskBatch.cat([sine(5).sample(mb, g) for g in gens]).to(torch.float64)
        losses = pop.meta_losses(batch)
        assert losses.shape == (3,)
        opt.zero_grad()
        losses.sum().backward()
        clip_grads(model, steps, pop)
        opt.step()
    for p, s in enumerate(seeds):
        alone = _train_alone(_members(model, steps, [s])[0], model, steps, s, iters)
        mine = pop.member(p)
        for (name, a), b in zip(alone.named_parameters(), mine.parameters()):
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11, msg=f"{model} seed {s}: {name}")


def test_members_start_from_their_own_initialisation_and_differ() -> None:
    members = _members("so-MAML", 1, [0, 1])
    pop = Population(members)
    for p, m in enumerate(members):
        for a, b in zip(m.parameters(), pop.member(p).parameters()):
            assert torch.equal(a, b)
    assert not torch.equal(pop.stacked[0][0], pop.stacked[0][1])
    assert len(list(pop.parameters())) == len(list(members[0].parameters()))   # the template is not a child


def test_clip_grad_norm_is_per_member() -> None:
    pop = Population(_members("so-MAML", 1, [0, 1]))
    for v in pop.parameters():
        v.grad = torch.randn_like(v) * torch.tensor([10.0, 0.01], dtype=v.dtype).view(2, *([1] * (v.dim() - 1)))
    expected = []
    for p in range(2):
        alone = [torch.nn.Parameter(v[p].detach().clone()) for v in pop.parameters()]
        for a, v in zip(alone, pop.parameters()):
            a.grad = v.grad[p].clone()
        norm = torch.nn.utils.clip_grad_norm_(alone, 1.0)      # what one run alone would do
        expected.append((float(norm), [a.grad for a in alone]))
    norms = pop.clip_grad_norm_(1.0)
    for p in range(2):
        assert float(norms[p]) == pytest.approx(expected[p][0])
        for v, g in zip(pop.parameters(), expected[p][1]):
            torch.testing.assert_close(v.grad[p], g)
    assert float(norms[1]) < 1.0    # the small member is left as it was


def test_member_state_round_trip() -> None:
    pop = Population(_members("so-MAML", 1, [0, 1]))
    saved = pop.member_state(1)
    with torch.no_grad():
        for v in pop.parameters():
            v.add_(1.0)
    pop.load_member_state(1, saved)
    for n, v in zip(pop.names, pop.parameters()):
        assert torch.equal(v[1], saved[n])
    with pytest.raises(IndexError, match="index 2 out of range for 2 members"):
        pop.member(2)


def test_bad_populations_raise() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        Population([])
    with pytest.raises(ValueError, match="member 1 differs"):
        Population([_one("so-MAML", 1, 0), _one("so-MAML", 2, 0)])
    hf = mg.MAML(mg.models.MLP([1, 8, 1]), mode="hessian_free")
    with pytest.raises(ValueError, match="hessian_free"):
        Population([hf])
    pop = Population(_members("so-MAML", 1, [0, 1]))
    with pytest.raises(ValueError, match="3 tasks do not split evenly over 2 members"):
        pop.meta_losses(sine(5).sample(3, torch.Generator().manual_seed(0)).to(torch.float64))


def test_task_clip_clamps_each_tasks_init_gradient_before_the_mean() -> None:
    # float64: the init's gradient is the mean of the per-task gradients clamped one by one; the
    # meta-network's is the plain mean. A bound of 0.05 makes the clamp bite on many elements.
    c, B = 0.05, 3
    members = _members("so-TURTLE", 2, [0, 1])
    batch = TaskBatch.cat([sine(5).sample(B, torch.Generator().manual_seed(s)) for s in (7, 8)]).to(torch.float64)
    pop = Population(members, task_clip=c)
    pop.meta_losses(batch).sum().backward()
    for p, algo in enumerate(members):
        named = dict(algo.named_parameters())
        want = {n: torch.zeros_like(v) for n, v in named.items()}
        for i in range(B):
            loss = algo.meta_loss(batch[p * B + i: p * B + i + 1])
            for n, g in zip(named, torch.autograd.grad(loss, list(named.values()))):
                want[n] += (g.clamp(-c, c) if n.startswith("model.") else g) / B
        clamped = sum(int((w.abs() >= c - 1e-12).sum()) for n, w in want.items() if n.startswith("model."))
        assert clamped > 0
        for n, s_ in zip(pop.names, pop.stacked):
            torch.testing.assert_close(s_.grad[p], want[n], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="task_clip must be positive"):
        Population(members, task_clip=0.0)


@pytest.mark.parametrize("model", ["so-MAML", "so-TURTLE", "LSTM"])
def test_population_adaptation_curves_equal_each_members(model: str) -> None:
    members = _members(model, 2, [0, 1, 2])
    pop = Population(members)
    tasks = sine(5).sample(7, torch.Generator().manual_seed(3)).to(torch.float64)
    curves = pop.adaptation_curves(tasks, 3)
    assert curves.shape == (3, 7, 4)
    mse = adaptation_curves(pop, tasks, 2, chunk=3)[..., -1]
    for p, m in enumerate(members):
        torch.testing.assert_close(curves[p], m.adaptation_curve(tasks, 3), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(mse[p], adaptation_curves(m, tasks, 2, chunk=3)[:, -1], rtol=1e-10, atol=1e-12)


def test_step_skipping_leaves_the_skipped_members_and_their_adam_state_untouched() -> None:
    pop = Population([_one("so-MAML", 1, s) for s in range(3)])
    ref = Population([_one("so-MAML", 1, s) for s in range(3)])
    opt, opt_ref = torch.optim.Adam(pop.parameters(), lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for it in range(3):
        grads = [torch.randn(s.shape, generator=gen) for s in pop.stacked]
        for s, r, g in zip(pop.stacked, ref.stacked, grads):
            s.grad, r.grad = g.clone(), g.clone()
            if it == 1:
                s.grad[1] = float("nan")      # member 1's gradient is lost at the second step
        before = [s[1].clone() for s in pop.stacked]
        moments = [opt.state[s]["exp_avg"][1].clone() for s in pop.stacked] if it else None
        if it == 1:
            pop.step_skipping(opt, [1])
            for s, b, m in zip(pop.stacked, before, moments):
                assert torch.equal(s[1], b) and torch.equal(opt.state[s]["exp_avg"][1], m)
            opt_ref.step()
        else:
            pop.step_skipping(opt, [])
            opt_ref.step()
        for s, r in zip(pop.stacked, ref.stacked):
            assert torch.isfinite(s).all()
            for p in (0, 2):                  # the others step as if nothing happened
                torch.testing.assert_close(s[p], r[p], rtol=0, atol=0)
    with pytest.raises(IndexError, match=r"members \[3\] out of range for 3"):
        pop.step_skipping(opt, [3])


def test_step_skipping_on_the_first_step_keeps_fresh_adam_state() -> None:
    pop = Population([_one("so-MAML", 1, s) for s in range(2)])
    opt = torch.optim.Adam(pop.parameters(), lr=1e-2)
    before = [s.detach().clone() for s in pop.stacked]
    for s in pop.stacked:
        s.grad = torch.ones_like(s)
        s.grad[0] = float("inf")
    pop.step_skipping(opt, [0])
    for s, b in zip(pop.stacked, before):
        assert torch.equal(s[0], b[0]) and not torch.equal(s[1], b[1])      # member 1 did step
        assert not opt.state[s]["exp_avg"][0].any() and not opt.state[s]["exp_avg_sq"][0].any()


def _short(cfg: Config, *over: str) -> Config:
    return cfg.override(["outer.iterations=4", "eval.every=2", "eval.val_tasks=4", "eval.tasks=8", *over])


def test_train_runs_population_gives_one_summary_per_seed() -> None:
    cfg = _short(_cfg("so-MAML", 1))
    both = train_runs(cfg, [3, 4], {"test": []}, log=lambda m: None)
    assert [s["train"]["population"] for s in both] == [2, 2] and all(len(s["train"]["val_curve"]) == 2 for s in both)
    alone = train_runs(cfg, [4], {"test": []}, log=lambda m: None)[0]
    assert both[1]["evals"]["test"]["mean"] == pytest.approx(alone["evals"]["test"]["mean"], rel=1e-4)


@pytest.mark.parametrize("policy,skipped", [("skip", [4, 4]), ("stop", [0, 0])])
def test_train_runs_record_when_a_run_turns_nonfinite(policy: str, skipped: list[int]) -> None:
    # an inner rate of 1e8 overflows float32 on the first task: every run fails the guard at once
    cfg = _short(_cfg("so-MAML", 1), "inner.lr=100000000.0", f"outer.nonfinite={policy}")
    runs = train_runs(cfg, [0, 1], {"test": []}, log=lambda m: None)
    assert [r["train"]["nonfinite_at"] for r in runs] == [1, 1] and [r["train"]["skipped"] for r in runs] == skipped
