"""``Population``: P runs trained as one vmapped computation equal the P runs trained alone."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import metagrad as mg
from metagrad.batch import TaskBatch
from metagrad.experiments.reproduce.turtle_common import Spec, clip_grads, sine, spec
from metagrad.experiments.reproduce.turtle_train import _nonfinite_members, build_meta, train_meta
from metagrad.learners.sgd import SGD
from metagrad.population import Population


def _members(model: str, steps: int, seeds: list[int]) -> list[mg.MAML]:
    return [build_meta(spec(model, steps, 5), steps, s).double() for s in seeds]


def _train_alone(algo: mg.MAML, model: str, steps: int, seed: int, iters: int) -> mg.MAML:
    """The reference: one run with ``MAML.meta_loss``, Adam and the spec's clipping."""
    sp = spec(model, steps, 5)
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(iters):
        loss = algo.meta_loss(sine(5).sample(sp.meta_batch, gen).to(torch.float64))
        opt.zero_grad()
        loss.backward()
        clip_grads(sp, algo)
        opt.step()
    return algo


@pytest.mark.parametrize("model,steps", [("so-MAML", 2), ("so-TURTLE", 2), ("LSTM", 2)])
def test_population_training_equals_separate_runs(model: str, steps: int) -> None:
    seeds, iters = [0, 1, 2], 3
    sp = spec(model, steps, 5)
    pop = Population(_members(model, steps, seeds))
    opt = torch.optim.Adam(pop.parameters(), lr=1e-2)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(iters):
        batch = mg.TaskBatch.cat([sine(5).sample(sp.meta_batch, g) for g in gens]).to(torch.float64)
        losses = pop.meta_losses(batch)
        assert losses.shape == (3,)
        opt.zero_grad()
        losses.sum().backward()
        clip_grads(sp, pop)
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
        Population([build_meta(spec("so-MAML", 1), 1, 0), build_meta(spec("so-MAML", 2), 2, 0)])
    hf = mg.MAML(mg.models.MLP([1, 8, 1]), mode="hessian_free")
    with pytest.raises(ValueError, match="hessian_free"):
        Population([hf])
    pop = Population(_members("so-MAML", 1, [0, 1]))
    with pytest.raises(ValueError, match="3 tasks do not split evenly over 2 members"):
        pop.meta_losses(sine(5).sample(3, torch.Generator().manual_seed(0)).to(torch.float64))


def test_train_meta_population_gives_one_record_per_seed() -> None:
    recs = train_meta(spec("so-MAML", 1), 5, 1, [3, 4], tasks=4, val_every=2, val_tasks=4)
    assert [r.population for r in recs] == [2, 2] and all(len(r.val_curve) == 2 for r in recs)
    alone = train_meta(spec("so-MAML", 1), 5, 1, [4], tasks=4, val_every=2, val_tasks=4)[0]
    torch.testing.assert_close(recs[1].test_mse, alone.test_mse, rtol=1e-4, atol=1e-6)


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
    sp = dataclasses.replace(spec("so-TURTLE", 2), clip_value_scope="init_per_task")
    with pytest.raises(ValueError, match="train through a Population"):
        clip_grads(sp, members[0])
    with pytest.raises(ValueError, match="clamps each task at None"):
        clip_grads(sp, Population(members))


def test_nonfinite_members_names_only_the_members_with_a_bad_gradient() -> None:
    pop = Population(_members("so-MAML", 1, [0, 1, 2]))
    pop.meta_losses(sine(5).sample(3, torch.Generator().manual_seed(0)).to(torch.float64)).sum().backward()
    assert _nonfinite_members(pop) == []
    pop.stacked[2].grad[1].view(-1)[0] = float("nan")
    pop.stacked[0].grad[2].view(-1)[3] = float("inf")
    assert _nonfinite_members(pop) == [1, 2]


def test_train_meta_records_when_a_run_turns_nonfinite() -> None:
    # an inner rate of 1e8 overflows float32 on the first task: every run is lost at once
    blowup = Spec("so-MAML", lambda: SGD(1e8), "second_order", 1)
    logged: list[str] = []
    recs = train_meta(blowup, 5, 1, [0, 1], tasks=4, val_every=2, val_tasks=4, log=logged.append)
    assert [r.nonfinite_at for r in recs] == [1, 1] and recs[0].summary()["nonfinite_at"] == 1
    assert sum("meta-gradient not finite at 1 tasks" in m for m in logged) == 2     # once per run
    fine = train_meta(spec("so-MAML", 1), 5, 1, [0], tasks=4, val_every=2, val_tasks=4)[0]
    assert fine.nonfinite_at is None


def test_train_meta_resumes_exactly_from_its_checkpoint(tmp_path) -> None:
    sp, ck = spec("so-TURTLE", 2), tmp_path / "cell.partial.pt"
    straight = train_meta(sp, 5, 2, [0, 1], tasks=12, val_every=4, val_tasks=4)

    calls = []

    def crash(message: str) -> None:
        calls.append(message)
        if len(calls) == 2:         # dies at the second validation, as a killed process would
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_meta(sp, 5, 2, [0, 1], tasks=12, val_every=4, val_tasks=4, log=crash, checkpoint=ck,
                   checkpoint_every_s=0.0)
    assert ck.exists()
    resumed = train_meta(sp, 5, 2, [0, 1], tasks=12, val_every=4, val_tasks=4, log=calls.append, checkpoint=ck)
    assert any("resumed at iteration 3" in c for c in calls)
    assert not ck.exists()          # removed once the run has ended
    for a, b in zip(straight, resumed):
        assert torch.equal(a.test_mse, b.test_mse) and a.val_curve == b.val_curve and a.best_val == b.best_val


def test_train_meta_never_resumes_a_checkpoint_of_other_settings(tmp_path) -> None:
    sp, ck = spec("so-TURTLE", 2), tmp_path / "cell.partial.pt"
    other = dataclasses.replace(sp, clip_value_scope="all")

    def crash(message: str) -> None:
        raise KeyboardInterrupt     # dies at the first validation, after a checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_meta(other, 5, 2, [0], tasks=8, val_every=4, val_tasks=4, log=crash, checkpoint=ck,
                   checkpoint_every_s=0.0)
    assert ck.exists()
    calls: list[str] = []
    fresh = train_meta(sp, 5, 2, [0], tasks=8, val_every=4, val_tasks=4, log=calls.append, checkpoint=ck)
    assert not any("resumed" in c for c in calls)      # trained from the start under its own settings
    straight = train_meta(sp, 5, 2, [0], tasks=8, val_every=4, val_tasks=4)
    assert torch.equal(fresh[0].test_mse, straight[0].test_mse)


@pytest.mark.parametrize("model", ["so-MAML", "so-TURTLE", "LSTM"])
def test_population_adaptation_curves_equal_each_members(model: str) -> None:
    from metagrad.experiments.reproduce.turtle_train import evaluate_meta, evaluate_population
    members = _members(model, 2, [0, 1, 2])
    pop = Population(members)
    tasks = sine(5).sample(7, torch.Generator().manual_seed(3)).to(torch.float64)
    curves = pop.adaptation_curves(tasks, 3)
    assert curves.shape == (3, 7, 4)
    mse = evaluate_population(pop, tasks, 2, chunk=3)
    for p, m in enumerate(members):
        torch.testing.assert_close(curves[p], m.adaptation_curve(tasks, 3), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(mse[p], evaluate_meta(m, tasks, 2), rtol=1e-10, atol=1e-12)


def test_step_skipping_leaves_the_skipped_members_and_their_adam_state_untouched() -> None:
    pop = Population([build_meta(spec("so-MAML", 1), 1, s) for s in range(3)])
    ref = Population([build_meta(spec("so-MAML", 1), 1, s) for s in range(3)])
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
    pop = Population([build_meta(spec("so-MAML", 1), 1, s) for s in range(2)])
    opt = torch.optim.Adam(pop.parameters(), lr=1e-2)
    before = [s.detach().clone() for s in pop.stacked]
    for s in pop.stacked:
        s.grad = torch.ones_like(s)
        s.grad[0] = float("inf")
    pop.step_skipping(opt, [0])
    for s, b in zip(pop.stacked, before):
        assert torch.equal(s[0], b[0]) and not torch.equal(s[1], b[1])      # member 1 did step
        assert not opt.state[s]["exp_avg"][0].any() and not opt.state[s]["exp_avg_sq"][0].any()


def test_train_meta_skips_nonfinite_updates_when_asked() -> None:
    # the same blow-up as above, with nonfinite="skip": every update is skipped, nothing is lost
    blowup = Spec("so-MAML", lambda: SGD(1e8), "second_order", 1, nonfinite="skip")
    logged: list[str] = []
    recs = train_meta(blowup, 5, 1, [0, 1], tasks=4, val_every=2, val_tasks=4, log=logged.append)
    assert [r.nonfinite_at for r in recs] == [1, 1] and [r.skipped for r in recs] == [4, 4]
    assert sum("later non-finite one are skipped" in m for m in logged) == 2     # once per run
    stop = train_meta(dataclasses.replace(blowup, nonfinite="stop"), 5, 1, [0], tasks=4, val_every=2, val_tasks=4)
    assert stop[0].skipped == 0
    assert blowup.describe()["nonfinite"] == "skip" and "nonfinite" not in spec("so-MAML", 1).describe()
    with pytest.raises(ValueError, match="nonfinite must be 'stop' or 'skip', got 'ignore'"):
        Spec("so-MAML", lambda: SGD(0.01), "second_order", 1, nonfinite="ignore")


def test_thesis_restore_tests_the_state_the_thesis_code_keeps() -> None:
    # the thesis's dump_state copies the initialisation but holds TURTLE's meta-network (and all of
    # the LSTM) by reference: its test sees the best initialisation with the final rule
    from metagrad.experiments.reproduce.turtle_train import _thesis_restore_test, evaluate_population
    tasks = sine(5).sample(6, torch.Generator().manual_seed(3))
    pop = Population([build_meta(spec("so-TURTLE", 2), 2, s) for s in (0, 1)])
    best = [pop.member_state(0), None]              # member 1 never validated finite: it keeps its final state
    with torch.no_grad():
        for v in pop.parameters():
            v.mul_(1.1)
    final = [pop.member_state(p) for p in (0, 1)]
    expect_final = evaluate_population(pop, tasks, 2)
    got = _thesis_restore_test(spec("so-TURTLE", 2), pop, best, tasks, 2)
    mixed = {n: best[0][n] if n.startswith("model.") else final[0][n] for n in pop.names}
    for n, v in zip(pop.names, pop.parameters()):
        assert torch.equal(v[0], mixed[n]) and torch.equal(v[1], final[1][n])
    assert torch.equal(got, evaluate_population(pop, tasks, 2))
    pop.load_member_state(0, best[0])
    expect_best = evaluate_population(pop, tasks, 2)
    assert not torch.allclose(got[0], expect_best[0]) and not torch.allclose(got[0], expect_final[0])
    torch.testing.assert_close(got[1], expect_final[1])
    # the LSTM's: the final state; MAML's: the best state, which is tested anyway
    assert spec("LSTM", 2, 5).thesis_restores == "none" and spec("so-MAML", 2).thesis_restores == "all"
    pop.load_member_state(0, final[0])
    torch.testing.assert_close(_thesis_restore_test(dataclasses.replace(spec("so-TURTLE", 2), thesis_restores="none"),
                                                    pop, best, tasks, 2), expect_final)
    assert _thesis_restore_test(spec("so-MAML", 2), pop, best, tasks, 2) is None
    with pytest.raises(ValueError, match="thesis_restores must be 'all', 'init' or 'none', got 'best'"):
        Spec("x", lambda: SGD(0.1), thesis_restores="best")


def test_train_meta_records_the_thesis_restore_test_where_it_differs() -> None:
    turtle = train_meta(spec("so-TURTLE", 1), 5, 1, [0], tasks=6, val_every=2, val_tasks=4)[0]
    assert turtle.thesis_restore_mse is not None and turtle.thesis_restore_mse.shape == turtle.test_mse.shape
    summary = turtle.summary()
    assert summary["thesis_restore_mean"] == pytest.approx(float(turtle.thesis_restore_mse.mean()))
    maml = train_meta(spec("so-MAML", 1), 5, 1, [0], tasks=6, val_every=2, val_tasks=4)[0]
    assert maml.thesis_restore_mse is None and "thesis_restore_mean" not in maml.summary()
