"""``compile=True``: the compiled vmapped meta-loss gives eager's gradients (slow: 30 s to 3 min to compile)."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from conftest import rel_err


@pytest.mark.slow
def test_compiled_meta_loss_matches_eager():
    torch.manual_seed(0)
    model = mg.models.MLP([1, 40, 40, 1])
    b = mg.tasks.Sinusoid().sample(25, torch.Generator().manual_seed(0))
    eager = mg.MAML(model, inner_steps=5)
    comp = mg.MAML(model, inner_steps=5, compile=True)
    ge = torch.autograd.grad(eager.meta_loss(b), list(model.parameters()))
    gc = torch.autograd.grad(comp.meta_loss(b), list(model.parameters()))
    assert rel_err(list(gc), list(ge)) < 1e-4


@pytest.mark.slow
def test_compiled_hessian_free_matches_eager():
    """HF-MAML under compile=True (torch 2.13 traces around its finite-difference autograd.Function)."""
    torch.manual_seed(0)
    model = mg.models.MLP([1, 8, 8, 1])
    b = mg.tasks.Sinusoid().sample(6, torch.Generator().manual_seed(0))
    h = mg.tasks.Sinusoid().resample(b, 7, torch.Generator().manual_seed(1))
    eager = mg.MAML(model, inner_steps=3, mode="hessian_free", hf_delta=1e-3)
    comp = mg.MAML(model, inner_steps=3, mode="hessian_free", hf_delta=1e-3, compile=True)
    for hvp in (None, h):
        ge = torch.autograd.grad(eager.meta_loss(b, hvp), list(model.parameters()))
        gc = torch.autograd.grad(comp.meta_loss(b, hvp), list(model.parameters()))
        assert rel_err(list(gc), list(ge)) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["lstm", "turtle"])
def test_compiled_population_curves_match_eager(rule):
    torch.manual_seed(0)
    learner = mg.learners.LSTMMetaLearner() if rule == "lstm" else mg.learners.Turtle(inputs=("grad", "ema_grad", "time"))
    members = [mg.MAML(mg.models.MLP([1, 8, 8, 1]), learner=learner, inner_steps=3) for _ in range(3)]
    b = mg.tasks.Sinusoid(k_shot=5, k_query=10).sample(6, torch.Generator().manual_seed(0))
    eager = mg.Population(members).adaptation_curves(b)
    comp = mg.Population(members, compile_curves=True).adaptation_curves(b)
    assert comp.shape == (3, 6, 4)
    assert rel_err([comp], [eager]) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("steps", [1, 2])
def test_compiled_conv4_with_batch_norm_matches_eager(steps: int):
    """conv4's batch norm is an autograd.Function with its own vmap rule, which torch.compile cannot
    trace under vmap; compiled, it runs the same equation in elementary ops (float64, second order).
    Two steps: eager routes the images' convolutions through ``models.data_conv``, compiled does not."""
    torch.manual_seed(0)
    model = mg.models.Conv4(n_way=3, hidden=4, image_size=16).double()
    g = torch.Generator().manual_seed(1)
    b = mg.TaskBatch(torch.randn(4, 3, 1, 16, 16, generator=g, dtype=torch.float64), torch.arange(3).repeat(4, 1),
                     torch.randn(4, 6, 1, 16, 16, generator=g, dtype=torch.float64), torch.arange(3).repeat(4, 2))
    grads = [torch.autograd.grad(mg.MAML(model, inner_lr=0.4, inner_steps=steps, loss="cross_entropy",
                                         compile=c).meta_loss(b), list(model.parameters())) for c in (False, True)]
    assert rel_err(list(grads[1]), list(grads[0])) < 1e-10   # one norm over all tensors: the conv biases' gradients are zero up to rounding
