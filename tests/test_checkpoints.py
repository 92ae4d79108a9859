"""fit's checkpoint files (metagrad/checkpoints.py): one-line errors for every file that cannot be used."""
from __future__ import annotations

import pytest
import torch

from metagrad.checkpoints import (CHECKPOINT_FORMAT, check_checkpoint_path, finite_optimizer_state,
                                  kept_checkpoint, load_checkpoint)
from metagrad.errors import RunError


def _complete(tmp_path, **extra):
    path = tmp_path / "ck.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "iteration": 7, "module": {}, "optimizer": {}, "stream": {}, "fit": {},
                **extra}, path)
    return path


def test_a_complete_checkpoint_loads_and_names_its_iteration(tmp_path):
    path = _complete(tmp_path)
    assert load_checkpoint(path)["iteration"] == 7
    assert kept_checkpoint(path) == f"the checkpoint of iteration 7 is kept in {str(path)!r}"
    assert kept_checkpoint(tmp_path / "none.pt") is None and kept_checkpoint(None) is None


@pytest.mark.parametrize("content, message", [
    (None, "no such checkpoint"),
    (b"not a torch file", "a damaged checkpoint: delete it to start again"),
    ({"format": 1}, "not a metagrad checkpoint of format 2 \\(format 1\\)"),
    ([1, 2], "not a metagrad checkpoint of format 2 \\(format 'list'\\)"),
])
def test_unusable_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "ck.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(RunError, match=message) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_a_missing_entry_is_named_and_evaluation_still_reads_the_model(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "iteration": 3, "module": {}}, path)
    with pytest.raises(RunError, match="no optimizer, stream, fit entry .* metagrad eval still reads its model"):
        load_checkpoint(path)
    assert load_checkpoint(path, need=("iteration", "module"))["iteration"] == 3


def test_a_checkpoint_path_that_cannot_be_written_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a folder; give a file path"):
        check_checkpoint_path(tmp_path)
    with pytest.raises(RunError, match="is a file, not a folder"):
        check_checkpoint_path(tmp_path / "file" / "ck.pt")
    check_checkpoint_path(tmp_path / "new" / "deeper" / "ck.pt")   # folders still to be made are fine
    check_checkpoint_path(None)


def test_the_optimiser_state_check_sees_a_non_finite_moment():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    assert finite_optimizer_state(opt)
    opt.state[p]["exp_avg_sq"][1] = float("inf")
    assert not finite_optimizer_state(opt)
