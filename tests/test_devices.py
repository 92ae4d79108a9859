"""On an accelerator, every learner computes what it computes on the CPU.

Run where a GPU (or Apple's ``mps``) is present: each test is parametrised over the accelerators
``available_devices()`` finds, and skipped on a CPU-only machine (comparing the CPU with itself
would prove nothing). ``benchmarks/device_check.sh`` runs this file first on a lent GPU machine.

The reference is the CPU in float64: the same module (a deep copy moved with ``.to``), the same
task batch (drawn on the CPU from one generator, then moved, as training does), and the
meta-loss and meta-gradient compared to a relative 1e-9 (float64 kernels differ between devices
only in summation order). Float32 is compared loosely (1e-3): TF32 and other kernel choices.
"""
from __future__ import annotations

import copy
import math
import os

import pytest
import torch

from metagrad.device import available_devices
from metagrad.experiments.building import build
from metagrad.experiments.config import Config
from metagrad.experiments.presets import get_preset
from metagrad.experiments.runner import evaluate_run, train
from metagrad.population import Population
from metagrad.training import load_checkpoint

# $METAGRAD_TEST_DEVICES (comma-separated, e.g. cuda:1) picks the devices; "cpu" there runs the file
# against the CPU itself, which checks only that the tests run.
ACCELERATORS = [d for d in os.environ.get("METAGRAD_TEST_DEVICES", "").split(",") if d] or \
    [d for d in available_devices() if d != "cpu"]
needs_accelerator = pytest.mark.skipif(not ACCELERATORS, reason="no GPU or mps on this machine")
device = pytest.mark.parametrize("dev", ACCELERATORS or ["none"])

# One preset per learner and meta-gradient mode, cut to a small batch (their data must be here:
# Omniglot from ../shared/data or $METAGRAD_DATA), with the overrides that make it deterministic:
# MT-net's sampled masks come from each device's own random stream, so its parity check uses the
# deterministic mask (the sampled one is checked for finiteness below).
PRESETS = {"sine-maml": [], "sine-fomaml": [], "sine-hfmaml": [], "sine-maml-bt": [], "sine001-metasgd": [],
           "sine001-tnet": [], "sine001-mtnet": ["inner.mask=threshold"], "004-so-turtle-t5-k10": [],
           "004-lstm-t10-k15": [], "sine-oracle": [], "sine-snail": [], "omniglot-5w1s-maml": [], "omniglot-snail": []}


def _grads(algo: torch.nn.Module, batch) -> tuple[float, dict[str, torch.Tensor]]:
    algo.zero_grad(set_to_none=True)
    loss = algo.meta_loss(batch)
    loss.backward()
    return loss.item(), {n: p.grad.detach().cpu() for n, p in algo.named_parameters() if p.grad is not None}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@needs_accelerator
@device
@pytest.mark.parametrize("preset", PRESETS)
def test_meta_gradient_on_the_accelerator_equals_the_cpus(preset: str, dev: str) -> None:
    cfg = get_preset(preset).override(["dtype=float64", "outer.meta_batch=3", *PRESETS[preset]])
    algo, task = build(cfg)
    batch = task.sample(3, torch.Generator().manual_seed(0), torch.float64)
    on_dev = copy.deepcopy(algo).to(dev)
    loss_cpu, g_cpu = _grads(algo, batch)
    loss_dev, g_dev = _grads(on_dev, batch.to(torch.device(dev)))
    assert math.isclose(loss_dev, loss_cpu, rel_tol=1e-9), (preset, loss_dev, loss_cpu)
    assert g_dev.keys() == g_cpu.keys() and g_cpu, preset
    worst = max(g_cpu, key=lambda n: _rel(g_dev[n], g_cpu[n]))
    assert _rel(g_dev[worst], g_cpu[worst]) < 1e-9, (preset, worst, _rel(g_dev[worst], g_cpu[worst]))


@needs_accelerator
@device
def test_mtnet_sampled_masks_train_on_the_accelerator(dev: str) -> None:
    """MT-net's Gumbel noise, drawn per task under ``vmap(randomness="different")`` on the device."""
    algo, task = build(get_preset("sine001-mtnet"))
    algo = algo.to(dev)
    loss, grads = _grads(algo, task.sample(4, torch.Generator().manual_seed(0)).to(torch.device(dev)))
    assert math.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())
    assert any(n.startswith("meta.") and g.abs().sum() > 0 for n, g in grads.items()), sorted(grads)


@needs_accelerator
@device
def test_a_population_on_the_accelerator_equals_the_cpus(dev: str) -> None:
    """Three seeds of so-TURTLE as one vmapped ``Population``: the same meta-gradient per seed."""
    cfg = get_preset("004-so-turtle-t5-k10").override(["dtype=float64"])
    members = [build(cfg.override([f"seed={s}"]))[0] for s in range(3)]
    task = build(cfg)[1]
    batch = task.sample(12, torch.Generator().manual_seed(1), torch.float64)   # 4 tasks a member
    pops = {"cpu": Population(members), dev: Population([copy.deepcopy(m).to(dev) for m in members])}
    grads = {}
    for d, pop in pops.items():
        b = batch.to(torch.device(d))
        losses = pop.meta_losses(b)
        losses.sum().backward()
        grads[d] = [p.grad.detach().cpu() for p in pop.stacked]
    for a, b in zip(grads[dev], grads["cpu"]):
        assert _rel(a, b) < 1e-9


@needs_accelerator
@device
def test_float32_training_on_the_accelerator_resumes_and_evaluates_on_the_cpu(tmp_path, dev: str) -> None:
    """A run cut at iteration 10 and resumed on the accelerator ends where the uninterrupted one
    does (to float32 tolerance: kernel choices may differ between the two processes' warm-ups), and
    its checkpoint evaluates on the CPU to the accelerator's number."""
    sets = ["outer.iterations=20", "eval.tasks=50", "eval.every=0", "checkpoint_every=5"]
    whole = train("sine-maml-quick", tmp_path / "whole", overrides=sets, device=dev, progress=False)
    cut = train("sine-maml-quick", tmp_path / "cut", overrides=sets, device=dev, progress=False, stop_after=10)
    train(out=cut, resume=True, device=dev, progress=False)
    a, b = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(cut / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 20
    for k, v in a["module"].items():
        assert torch.allclose(b["module"][k], v, rtol=1e-3, atol=1e-5), k
    on_dev = evaluate_run(whole, progress=False, device=dev)["mean"]
    on_cpu = evaluate_run(whole, progress=False, device="cpu")["mean"]
    assert math.isclose(on_cpu, on_dev, rel_tol=1e-3), (on_cpu, on_dev)


def test_the_device_tests_cover_every_learner_kind() -> None:
    """The preset list above names every learner the presets use (so a new learner is not left
    untested on accelerators), and each builds here, on the CPU."""
    learners = {get_preset(p).inner["learner"] for p in PRESETS}
    algorithms = {get_preset(p).algorithm for p in PRESETS}
    modes = {get_preset(p).inner["mode"] for p in PRESETS if get_preset(p).algorithm == "maml"}
    from metagrad.experiments.presets import PRESETS as ALL
    assert {Config.from_dict(c).inner["learner"] for c in ALL.values()} <= learners
    assert {Config.from_dict(c).algorithm for c in ALL.values()} <= algorithms
    assert {"second_order", "first_order", "hessian_free"} <= modes
