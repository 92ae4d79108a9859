"""The learner contract: every update rule in ``registry.LEARNERS``, the same checks (DESIGN.md section 2).

Each rule's own file tests its equations; this suite holds every rule to one contract, so a new
learner (a file under ``learners/`` and a ``register_learner`` line) is checked by being registered:

The composed rules of ``learners/combine.py`` (``chain``, ``masked``) are checked alike (``COMPOSED``), and
so is a user's rule registered from outside the package (``examples/momentum_rule.py``, loaded as a
config's ``imports`` would load it).

1. second order: the meta-gradient of a two-step inner loop equals central finite differences of
   the meta-loss along random directions (float64; DESIGN principle 3);
2. first order: the meta-gradient equals an independent one-step reference built from the rule's
   ``init``/``step`` with the inner gradient detached, and differs from the exact one;
3. Hessian-free: within 1e-4 of second order (002's central differences, delta 1e-6);
4. the vmapped path equals the loop over tasks, loss and meta-gradient, in every mode;
5. ``init`` and ``step`` are pure: they change none of their inputs, and the same inputs give the same
   outputs (a rule's state lives in ``state``, its meta-parameters in ``meta``);
6. zero inner steps is the plain query loss of the initial model, whatever the rule.

Rules with randomness get it fixed (MT-net: its relaxed mask with one Gumbel draw, ``OPTIONS`` and
``_deterministic``), as a finite difference needs a function; a rule whose default is an approximation
by design is checked in its exact setting (the LSTM meta-learner's ``second_order=True``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

import metagrad as mg
from metagrad.experiments import registry
from metagrad.learners.tnet import MTNet
from metagrad.models.tnet import is_transform
from conftest import directional_fd_errors, rel_err
from geometry_checks import all_params, autograd_grads, first_order_reference, sine_batch
from metagrad.experiments.plugins import load_imports

load_imports([str(Path(__file__).resolve().parents[1] / "examples" / "momentum_rule.py")])   # registers "momentum"

# Composed rules (learners/combine.py) are held to the same contract: built on top of the registry's.
COMPOSED = {
    "chain(clip(0.5), sgd)": lambda model: (model, mg.chain(mg.clip(0.5), mg.SGD(0.05))),   # the clamp is active
    "masked(meta_sgd, first layer)": lambda model: (model, mg.masked(mg.MetaSGD(lr_init="uniform", seed=3),
                                                                     lambda k: k.startswith("net.0."))),
}
NAMES = sorted(registry.LEARNERS) + list(COMPOSED)
OPTIONS = {"mtnet": {"hard": False},       # the relaxed mask: a smooth function of its logits
           "lstm": {"second_order": True}}   # its default treats the gradient inputs as constants
                                              # (Ravi & Larochelle's first-order assumption): not exact


def _deterministic(learner: mg.Learner, model: torch.nn.Module) -> mg.Learner:
    if isinstance(learner, MTNet):   # one Gumbel draw for every task and call
        g = torch.Generator().manual_seed(5)
        noise = {k[:-2]: torch.randn(p.shape[0], generator=g, dtype=p.dtype)
                 for k, p in model.named_parameters() if is_transform(k)}
        return dataclasses.replace(learner, fixed_noise=noise)
    return learner


def make(name: str, mode: str = "second_order", steps: int = 2, vectorize: bool = True, **kw) -> mg.MAML:
    """A small float64 sine MLP under rule ``name`` (registry defaults), its meta-parameters moved off
    their initial values so that no gradient is zero by symmetry."""
    torch.manual_seed(0)
    model = mg.models.MLP([1, 8, 8, 1]).double()
    model, learner = COMPOSED[name](model) if name in COMPOSED else \
        registry.build("inner", registry.LEARNERS, name, OPTIONS.get(name, {}), model)
    algo = mg.MAML(model.double(), learner=_deterministic(learner, model), inner_steps=steps, mode=mode,
                   vectorize=vectorize, **kw).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for v in algo.meta_params().values():
            v.add_(0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype))
    return algo


@pytest.mark.parametrize("name", NAMES)
def test_second_order_meta_gradient_equals_finite_differences(name):
    algo, batch = make(name), sine_batch(3)
    errs = directional_fd_errors(lambda: algo.meta_loss(batch), all_params(algo), directions=3)
    assert max(errs) < 1e-6, errs


def _dense(grads: list, params: list) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


@pytest.mark.parametrize("name", NAMES)
def test_first_order_equals_the_detached_reference_and_hessian_free_equals_second_order(name):
    batch = sine_batch(3)
    fo = make(name, "first_order", steps=1)
    got = _dense(autograd_grads(fo, batch), all_params(fo))
    assert rel_err(got, first_order_reference(fo, batch)) < 1e-10
    exact = _dense(autograd_grads(make(name, steps=1), batch), all_params(fo))
    assert rel_err(got, exact) > 1e-6   # else the first check would prove nothing
    so, hf = make(name), make(name, "hessian_free", hf_delta=1e-6)
    assert rel_err(_dense(autograd_grads(hf, batch), all_params(hf)),
                   _dense(autograd_grads(so, batch), all_params(so))) < 1e-4


@pytest.mark.parametrize("mode", mg.MODES)
@pytest.mark.parametrize("name", NAMES)
def test_vmap_equals_loop(name, mode):
    batch = sine_batch(3)
    a, b = make(name, mode), make(name, mode, vectorize=False)
    la, lb = a.meta_loss(batch), b.meta_loss(batch)
    assert torch.allclose(la, lb, rtol=1e-12, atol=1e-14), (la, lb)
    ga = _dense(torch.autograd.grad(la, all_params(a), allow_unused=True), all_params(a))
    gb = _dense(torch.autograd.grad(lb, all_params(b), allow_unused=True), all_params(b))
    assert rel_err(ga, gb) < 1e-10


def _snapshot(tree):
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    if isinstance(tree, dict):
        return {k: _snapshot(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_snapshot(v) for v in tree)
    return tree


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", NAMES)
def test_init_and_step_are_pure(name):
    algo = make(name)
    learner, meta = algo.learner, algo.meta_params()
    params = {k: v.detach().clone() for k, v in algo.params().items() if learner.adapts(k)}   # step's keys
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    inputs = _snapshot((grads, params, meta))
    out = []
    for _ in range(2):
        state = learner.init(params, meta)
        new, state2 = learner.step(grads, params, state, meta, 0, torch.tensor(0.5, dtype=torch.float64))
        new2, _ = learner.step(grads, new, state2, meta, 1, torch.tensor(0.4, dtype=torch.float64))
        out.append(_snapshot((new, new2)))
    assert _equal(inputs, (grads, params, meta)), "init/step changed an input in place"
    assert _equal(out[0], out[1]), "the same inputs gave different outputs"
    assert not _equal(out[0][0], params), "a step with a non-zero gradient left every parameter unchanged"


@pytest.mark.parametrize("name", NAMES)
def test_zero_steps_is_the_query_loss_of_the_initial_model(name):
    algo, batch = make(name, steps=0), sine_batch(3)
    with torch.no_grad():
        want = torch.stack([algo.loss(functional_call(algo.model, algo.params(), (batch.query_x[i],)), batch.query_y[i])
                            for i in range(batch.n_tasks)]).mean()
        assert torch.allclose(algo.meta_loss(batch), want, rtol=1e-12)
