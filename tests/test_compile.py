"""``compile=True``: the compiled vmapped meta-loss gives eager's gradients (slow: ~30 s to compile)."""
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


def test_compile_with_hessian_free_is_refused_at_construction():
    with pytest.raises(ValueError, match="compile=True supports mode='second_order' and 'first_order', not 'hessian_free'"):
        mg.MAML(mg.models.MLP([1, 4, 1]), mode="hessian_free", compile=True)
