"""fit's divergence guard (metagrad/guards.py): which members diverged, and the words for it."""
from __future__ import annotations

import math

import pytest
import torch

from metagrad.guards import diverged, updated_level, why


def _t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def test_non_finite_losses_and_gradients_are_caught_per_member():
    values, norms = _t(1.0, math.nan, 2.0, math.inf), _t(1.0, 1.0, math.inf, 1.0)
    assert diverged(values, norms, [None] * 4, explode=1e6) == [1, 2, 3]


def test_a_loss_explodes_only_past_explode_times_its_running_level():
    level = [math.log(2.0)] * 3
    values = _t(2.0 * 1e6 * 0.99, 2.0 * 1e6 * 1.01, 0.0)   # just under, just over, zero (no log)
    assert diverged(values, _t(1.0, 1.0, 1.0), level, explode=1e6) == [1]
    assert diverged(values, _t(1.0, 1.0, 1.0), level, explode=None) == []   # explode off: finite is fine
    assert diverged(values, _t(1.0, 1.0, 1.0), [None] * 3, explode=1e6) == []   # no level yet


def test_the_running_level_is_a_geometric_mean_of_accepted_losses():
    assert updated_level(None, 4.0) == pytest.approx(math.log(4.0))
    assert updated_level(math.log(4.0), 1.0) == pytest.approx(0.99 * math.log(4.0))
    assert updated_level(None, 0.0) == pytest.approx(math.log(1e-30))   # a zero loss: floored, finite


def test_why_names_what_the_guard_saw():
    assert why(math.nan, None, 1e6) == "the meta-loss is nan"
    assert why(3e7, math.log(2.0), 1e6) == "the meta-loss exploded to 3e+07, over 1e+06 times its running level 2"
    assert why(1.0, math.log(2.0), 1e6) == "the meta-gradient is not finite (or its square overflows)"
