"""The image tables as sweep specs (specs/images.py): ``--quick`` on Omniglot and on miniImageNet/CUB
fixtures through the CLI, 004's baselines on classification, and a partial table's progress."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from image_fixtures import cub, mini_folders
from metagrad.cli import main as cli_main
from metagrad.experiments import specs
from metagrad.experiments.baseline_runs import flat_classes
from metagrad.experiments.config import Config
from metagrad.tasks.episodic import EpisodicImages

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def rgb_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root with a miniImageNet fixture (MAML's folder layout) and a CUB fixture (34 classes)."""
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    mini_folders(root, per_class=8)
    cub(root, 34)
    return root


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.skipif(not (SHARED / "omniglot").is_dir(), reason="no ../shared/data/omniglot")
def test_omniglot_table3_quick_runs_every_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("METAGRAD_DATA", str(SHARED))
    out = tmp_path / "t3"
    assert cli_main(["reproduce", "omniglot-table3", "--quick", "--out", str(out)]) == 0
    res = _results(out)
    assert not res["partial"] and len(res["rows"]) == 12
    main = [r for r in res["rows"] if r["paper"] is not None]
    assert {(r["model"], r["setting"]["n_way"]) for r in main} == {(m, n) for m in ("MAML", "Meta-SGD", "MT-net")
                                                                  for n in (5, 20)}
    assert all(r["metric"] == "accuracy" and 0 <= r["mean"] <= 1 and r["vs_paper"] for r in main)
    assert "| MT-net | n_way=20, k_shot=1 |" in capsys.readouterr().out
    cell = json.loads((out / "cells" / "MT-net_20way_s0.json").read_text())
    # The full protocol is what --quick shortens: second order, mtnet learner, 20-way, five steps of 0.1.
    assert cell["config"]["inner"]["learner"] == "mtnet" and cell["config"]["inner"]["mode"] == "second_order"
    assert cell["config"]["task"]["n_way"] == 20 and cell["config"]["inner"]["steps"] == 5
    full = specs.get("omniglot-table3").cells({"split": "random"})
    assert all(c.config["outer"]["iterations"] == 60000 and c.config["eval"]["tasks"] == 600 for c in full)
    official = specs.get("omniglot-table3").cells({"split": "official"})
    assert all(c.config["task"]["split_by"] == "official" for c in official)


def test_a_partial_table_lists_missing_cells_with_their_progress(tmp_path: Path) -> None:
    out = tmp_path / "t3"
    (out / "cells").mkdir(parents=True)
    torch.save({"iteration": 12000}, out / "cells" / "MAML_5way_s0.partial.pt")
    assert cli_main(["reproduce", "omniglot-table3", "--report", "--out", str(out)]) == 0
    res = _results(out)
    assert res["partial"] and len(res["missing"]) == 6 and res["rows"] == []
    assert "MAML_5way (0 of 1 runs; training s0: iteration 12000 of 60000)" in res["missing"]
    table = (out / "table.md").read_text()
    assert "PARTIAL: 6 cell(s) incomplete" in table
    assert "| MAML | n_way=5, k_shot=1 | 0.987 ± 0.004 | 0 of 1 | training s0: iteration 12000 of 60000 |" in table
    assert "| MT-net | n_way=20, k_shot=1 | 0.9621 ± 0.0035 | 0 of 1 | not started |" in table
    # with validations so far: the last one shown
    torch.save({"iteration": 12500, "fit": {"curves": [[(10000, 0.9), (12000, 0.95)]]}},
               out / "cells" / "MAML_5way_s0.partial.pt")
    assert cli_main(["reproduce", "omniglot-table3", "--report", "--out", str(out)]) == 0
    assert "| 0 of 1 | training s0: iteration 12500 of 60000 (validation 0.95 at 12000) |" in (out / "table.md").read_text()
    # the checkpoint gone (it is committed with the record): the progress file says how far it was, and that it restarts
    (out / "cells" / "MAML_5way_s0.partial.pt").unlink()
    assert cli_main(["reproduce", "omniglot-table3", "--report", "--out", str(out)]) == 0
    assert "| 0 of 1 | training s0: reached iteration 12500 of 60000 (validation 0.95 at 12000), but its checkpoint " \
           "is not here: it trains again from the start |" in (out / "table.md").read_text()


def test_committed_omniglot_record_is_its_report(tmp_path: Path) -> None:
    kept = Path(__file__).resolve().parents[1] / "reproductions" / "omniglot-table3"
    if (kept / "cells").is_dir():
        shutil.copytree(kept / "cells", tmp_path / "cells", ignore=shutil.ignore_patterns(".*"))   # resume points too
    assert cli_main(["reproduce", "omniglot-table3", "--out", str(tmp_path), "--report"]) == 0
    assert (tmp_path / "table.md").read_bytes() == (kept / "table.md").read_bytes()
    assert (tmp_path / "results.json").read_bytes() == (kept / "results.json").read_bytes()


def test_miniimagenet_table3_quick_on_a_fixture(rgb_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "mini"
    assert cli_main(["reproduce", "miniimagenet-table3", "--quick", "--out", str(out),
                     "--set", f"task.root={rgb_root}"]) == 0
    res = _results(out)
    assert not res["partial"] and len(res["rows"]) == 8
    assert {r["model"] for r in res["rows"]} == {"MAML", "Meta-SGD", "T-net", "MT-net"}
    t_net_5 = next(r for r in res["rows"] if r["model"] == "T-net" and r["setting"]["k_shot"] == 5)
    assert t_net_5["paper"] is None


def test_turtle_images_quick_trains_baselines_and_meta_learners_and_tests_across(rgb_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "t004"
    assert cli_main(["reproduce", "turtle-images", "--quick", "--out", str(out), "--set", f"task.root={rgb_root}",
                     "--only", "dataset=miniimagenet", "--only", "k_shot=1"]) == 0
    res = _results(out)
    rows = {(r["model"], r["setting"]["table"], r["setting"]["test"]) for r in res["rows"]}
    models = ("TrainFromScratch", "Finetuning", "CentroidFinetuning", "LSTM", "MAML", "TURTLE")
    assert rows == {(m, t, d) for m in models for t, d in ((7, "miniimagenet"), (9, "cub"))}
    assert all(r["metric"] == "accuracy" and 0 <= r["mean"] <= 1 and r["best_run"] is not None for r in res["rows"])
    summary = json.loads((out / "cells" / "CentroidFinetuning_miniimagenet_k1_s0.json").read_text())
    assert set(summary["evals"]) == {"same", "cross"} and summary["evals"]["cross"]["n_tasks"] == 4


@pytest.mark.slow
def test_turtle_images_quick_every_cell(rgb_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "t004"
    assert cli_main(["reproduce", "turtle-images", "--quick", "--out", str(out), "--set", f"task.root={rgb_root}",
                     "--set", "task.k_shot=1"]) == 0   # 8 images a class: 5 + 2 fits, the quick run keeps it small
    assert len(_results(out)["rows"]) == 48


def test_flat_classes_gives_global_labels_with_rotations() -> None:
    images = torch.arange(3 * 2 * 4, dtype=torch.uint8).reshape(3, 2, 1, 2, 2) * 10
    task = EpisodicImages(images, n_way=2, k_shot=1, k_query=1, rotations=(0, 1))
    x, y, n = flat_classes(task)
    assert n == 6 and x.shape == (12, 1, 2, 2) and y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert torch.equal(x[2], torch.rot90(images[0, 0], 1, dims=(-2, -1)))


def test_004_settings_are_the_thesis_appendix() -> None:
    cells = {c.id: c for c in specs.get("turtle-images").cells({})}
    assert len(cells) == 24
    maml = Config.from_dict(cells["MAML_miniimagenet_k1"].config)
    assert (maml.outer["meta_batch"], maml.outer["iterations"], maml.eval["steps"], maml.task["k_query"]) == (4, 15000, 10, 16)
    assert maml.eval["every"] == 625 and maml.eval["val_tasks"] == 600 and maml.model["hidden"] == 64
    turtle = Config.from_dict(cells["TURTLE_cub_k5"].config)
    assert (turtle.outer["meta_batch"], turtle.outer["iterations"], turtle.inner["steps"]) == (2, 20000, 5)
    lstm = Config.from_dict(cells["LSTM_cub_k1"].config)
    assert lstm.inner["steps"] == 12 and lstm.outer["clip_norm"] == 0.25
    assert cells["CentroidFinetuning_cub_k5"].trainer == "CentroidFinetuning"
    assert cells["Finetuning_miniimagenet_k1"].evals["cross"] == ["task.name=cub"]


def test_image_test_sets_are_drawn_lazily_like_metagrad_train(rgb_root: Path) -> None:
    from metagrad.batch import TaskBatch
    from metagrad.experiments.train_runs import fixed_set, held_out, task_chunks
    from metagrad.tasks import MiniImageNet, Sinusoid
    task = MiniImageNet("test", n_way=5, k_shot=1, k_query=2, root=rgb_root, image_size=16)
    lazy = held_out(task, 7, 3)
    assert lazy == (task, 7, 3)                       # never materialised: 600 real tasks are 4.3 GB
    chunks = list(task_chunks(lazy, 3))
    assert [c.n_tasks for c in chunks] == [3, 3, 1]
    g = torch.Generator().manual_seed(3)              # the draw of evaluation.adaptation_curves (metagrad train)
    for c in chunks:
        assert torch.equal(c.query_x, task.sample(c.n_tasks, g).query_x)
    sine = Sinusoid(5, 5)
    small = held_out(sine, 4, 1)
    assert isinstance(small, TaskBatch) and torch.equal(small.query_x, fixed_set(sine, 4, 1).query_x)


def test_validation_figure_draws_each_finished_run_and_nothing_without_curves(tmp_path: Path) -> None:
    """Table 3's ``validation.png``: one line per finished run with its validation curve; a table
    with no finished run (or runs without curves) writes no figure rather than an empty one."""
    from metagrad.experiments.specs.images import plot_validation
    plot_validation(tmp_path, [], {"MAML_5way": [{"seed": 0, "train": {"val_curve": []}, "evals": {}}]})
    assert not (tmp_path / "validation.png").exists()
    run = {"seed": 0, "train": {"val_curve": [[2000, 0.9], [4000, 0.95], [6000, 0.95]]},
           "evals": {"test": {"mean": 0.94, "ci95_tasks": 0.01}}}
    plot_validation(tmp_path, [], {"MAML_5way": [run], "Meta-SGD_5way": [{**run, "evals": {}}]})
    assert (tmp_path / "validation.png").stat().st_size > 10_000
