"""000 (Finn & Levine 2018) section 7: the sine-ood preset, the oracle, the SNAIL learner, the specs."""
from __future__ import annotations

import math

import pytest

from metagrad.experiments import runner
from metagrad.experiments.presets import get_preset


def test_sine_ood_meta_trains_in_distribution_and_evaluates_out_of_it(tmp_path):
    cfg = get_preset("sine-ood")
    assert cfg.task["amplitude"] == [0.1, 5.0] and cfg.task["phase"] == [0.0, math.pi]
    assert cfg.model["hidden"] == [100, 100] and cfg.model["bias_transform"] == 10
    assert (cfg.inner["steps"], cfg.inner["lr"], cfg.task["k_shot"]) == (5, 0.001, 5)
    run = runner.train("sine-ood", tmp_path / "r", overrides=["outer.iterations=2", "eval.tasks=20"], progress=False)
    ood = ["task.amplitude=[5,10]", "task.phase=[3.14159,6.28319]"]
    res = runner.evaluate_run(run, overrides=ood, progress=False)
    assert res["overrides"] == ood and math.isfinite(res["mean"])
    assert runner.resolve_config(run / "config.json").task["amplitude"] == [0.1, 5.0]   # training unchanged


# --- the task-conditioned oracle and the SNAIL learner ---------------------------------------------------
import torch  # noqa: E402

from metagrad.batch import TaskBatch  # noqa: E402
from metagrad.baselines.blackbox import BlackBox, sequences  # noqa: E402
from metagrad.errors import ConfigError, InputError  # noqa: E402
from metagrad.experiments.building import build  # noqa: E402
from metagrad.models.snail import SNAIL  # noqa: E402
from metagrad.tasks.sine import Sinusoid  # noqa: E402
from metagrad.training import fit  # noqa: E402
from metagrad.streams import SampledStream  # noqa: E402


def test_snail_is_causal():
    torch.manual_seed(0)
    net = SNAIL(3, 1)
    x = torch.randn(2, 12, 3)
    y = net(x)
    for t in range(11):
        x2 = x.clone()
        x2[:, t + 1:] += torch.randn_like(x2[:, t + 1:]) * 5
        y2 = net(x2)
        assert torch.equal(y[:, :t + 1], y2[:, :t + 1]), t
        assert not torch.allclose(y[:, t + 1:], y2[:, t + 1:])


@pytest.mark.parametrize("dilation", [1, 2, 4, 8])
def test_causal_convolution_is_conv1d_on_the_left_padded_sequence(dilation):
    """SNAIL's causal convolution (a matrix product per tap, channels last) is ``nn.Conv1d`` with its
    own parameters on the sequence padded with ``dilation`` zeros on the left, also where the
    dilation reaches past the sequence (8 > 6 steps: the earlier tap reads only padding)."""
    from metagrad.models.snail import CausalConv1d
    torch.manual_seed(0)
    conv = CausalConv1d(7, 5, dilation).double()
    x = torch.randn(3, 6, 7, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.conv1d(torch.nn.functional.pad(x.transpose(1, 2), (dilation, 0)), conv.conv.weight,
                                     conv.conv.bias, dilation=dilation).transpose(1, 2)
    out = conv(x)
    assert out.shape == (3, 6, 5) and torch.allclose(out, ref, atol=1e-13)
    g = torch.randn_like(out)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in
               zip(torch.autograd.grad(out, (x, conv.conv.weight), g), torch.autograd.grad(ref, (x, conv.conv.weight), g)))


def test_blackbox_sequences_mask_the_query_label_and_keep_queries_apart():
    b = Sinusoid(k_shot=3, k_query=2).sample(2, torch.Generator().manual_seed(0))
    s = sequences(b.support_x, b.support_y, b.query_x)
    assert s.shape == (4, 4, 3)
    assert torch.equal(s[1, :3, 1], b.support_y[0, :, 0]) and s[1, 3, 1] == 0 and s[1, 3, 2] == 1
    assert torch.equal(s[1, 3, 0], b.query_x[0, 1, 0]) and (s[:, :3, 2] == 0).all()


def _tiny_fit(module, task, iterations=150, lr=3e-3):
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    stream = SampledStream(task, 16, 0)
    test = task.sample(64, torch.Generator().manual_seed(99))
    before = float(module.adaptation_curve(test, 0).mean())
    fit(module, stream, opt, iterations)
    return before, float(module.adaptation_curve(test, 0).mean())


def test_snail_learns_a_tiny_task_family():
    torch.manual_seed(0)
    task = Sinusoid(k_shot=5, k_query=5, amplitude=(0.5, 2.0), phase=(0.0, 1.0))
    before, after = _tiny_fit(BlackBox(SNAIL(3, 1, filters=8)), task)
    assert after < 0.5 * before, (before, after)


def test_oracle_learns_and_fine_tunes():
    cfg = get_preset("sine-oracle").override(["model.hidden=[40,40]"])
    algo, task = build(cfg)
    before, after = _tiny_fit(algo, task, iterations=300, lr=1e-2)
    assert after < 0.5 * before, (before, after)
    b = task.sample(8, torch.Generator().manual_seed(1))
    curve = algo.adaptation_curve(b, 3)
    assert curve.shape == (8, 4) and not torch.equal(curve[:, 0], curve[:, 3])   # fine-tuning moves it
    with pytest.raises(InputError, match="task_params"):
        algo.meta_loss(TaskBatch(b.support_x, b.support_y, b.query_x, b.query_y))


def test_algorithm_key_is_checked():
    with pytest.raises(ConfigError, match="unknown algorithm 'snial'"):
        get_preset("sine-snail").override(["algorithm=snial"])
    with pytest.raises(InputError, match="inner.learner must be 'sgd'"):
        build(get_preset("sine-oracle").override(["inner.learner=meta_sgd"]))


@pytest.mark.parametrize("preset", ["sine-oracle", "sine-snail"])
def test_oracle_and_snail_save_and_resume_like_every_run(tmp_path, preset):
    over = ["outer.iterations=6", "checkpoint_every=2", "eval.tasks=20", "model.hidden=[20,20]"
            if preset == "sine-oracle" else "model.filters=4"]
    whole = runner.train(preset, tmp_path / "whole", overrides=over, progress=False)
    cut = runner.train(preset, tmp_path / "cut", overrides=over, progress=False, stop_after=3)
    runner.train(None, cut, resume=True, progress=False)
    a = torch.load(whole / "checkpoint.pt", weights_only=False)
    b = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert a["iteration"] == b["iteration"] == 6
    for k, v in a["module"].items():
        assert torch.equal(v, b["module"][k]), k
    assert (whole / "metrics.jsonl").read_text() == (cut / "metrics.jsonl").read_text()
    assert (whole / "eval.json").exists() and (cut / "eval.json").exists()


# --- the experiments (sweep specs): the --quick code path, tiny in the default suite ---------------------
import json  # noqa: E402

from metagrad.experiments import specs, sweep  # noqa: E402


def _reproduce(name, out, tiny=True, **kw):
    over = ["outer.iterations=3", "eval.tasks=8"] if tiny else []
    return sweep.run(specs.get(name), out, quick=True, overrides=over, log=lambda m: None, **kw)


def test_universality_sine_experiments_share_their_runs_and_draw_their_figures(tmp_path, monkeypatch):
    rows = _reproduce("universality-steps", tmp_path / "steps")
    assert {r["model"] for r in rows} == {"MAML", "oracle", "SNAIL"} and len(rows) == 18
    snail = [r["mean"] for r in rows if r["model"] == "SNAIL" and r["setting"]["tasks"] == "in"]
    assert len(set(snail)) == 1                                   # no steps: flat
    summary = json.loads((tmp_path / "universality-sine-quick" / "cells" / "sine-MAML_s0.json").read_text())
    assert len(summary["evals"]["in-s50"]["curve"]) == 51 and len(summary["evals"]["in-s50"]["curve_ci95"]) == 51
    res = json.loads((tmp_path / "steps" / "results.json").read_text())
    assert not res["partial"] and "MAML out: after 50 steps vs after its 5 training steps" in res["claims"]
    assert (tmp_path / "steps" / "steps.png").stat().st_size > 10_000
    monkeypatch.setattr(sweep, "train_runs", lambda *a, **k: pytest.fail("the ood experiment retrained a cell"))
    rows = _reproduce("universality-ood", tmp_path / "ood")   # a sibling folder: the same runs
    assert len(rows) == 3 * (10 + 9) and (tmp_path / "ood" / "ood.png").stat().st_size > 10_000
    claims = json.loads((tmp_path / "ood" / "results.json").read_text())["claims"]
    assert "MAML below SNAIL out of distribution (amplitude)" in claims
    assert (tmp_path / "steps" / "table.md").read_text().startswith("# universality-steps")


def test_universality_depth_tabulates_maml_and_oracle_with_std_over_runs(tmp_path):
    rows = _reproduce("universality-depth", tmp_path, seeds=2, only=["depth=1,2"])
    assert [(r["model"], r["setting"]["hidden_layers"]) for r in rows] == [("MAML", 1), ("MAML", 2), ("oracle", 1), ("oracle", 2)]
    assert all(r["std_runs"] is not None and len(r["run_means"]) == 2 for r in rows)
    assert (tmp_path / "depth.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["universality-steps", "universality-ood", "universality-depth"])
def test_universality_quick_runs(tmp_path, name):
    rows = _reproduce(name, tmp_path / name, tiny=False)
    assert rows and all(r["mean"] is not None for r in rows)
    assert json.loads((tmp_path / name / "results.json").read_text())["claims"]


def test_snail_on_omniglot_reads_conv4_features(tmp_path):
    over = ["outer.iterations=2", "outer.meta_batch=4", "eval.tasks=10", "eval.every=0", "eval.batch=10"]
    run = runner.train("omniglot-snail", tmp_path / "o", overrides=over, progress=False)
    res = json.loads((run / "eval.json").read_text())
    assert res["metric"] == "accuracy" and 0.0 <= res["mean"] <= 1.0 and res["curve"][0] == res["curve"][-1]


def test_eval_on_support_and_an_untrained_initialisation(tmp_path):
    from metagrad.experiments.config import Config
    from metagrad.experiments.train_runs import train_runs
    cfg = Config.from_dict({**get_preset("sine-maml-quick").to_dict(), "eval": {"tasks": 20, "steps": 3}})
    on_support = cfg.override(["eval.on=support"])
    test = build(on_support, "test")[1].sample(2, torch.Generator().manual_seed(0))
    assert torch.equal(test.query_x, test.support_x) and torch.equal(test.query_y, test.support_y)
    [init] = train_runs(cfg, [0], {"test": [], "train": ["eval.on=support"]}, trainer="init", log=lambda m: None)
    assert init["train"]["iterations"] == 0
    algo = build(cfg)[0]
    fresh = algo.adaptation_curve(build(cfg, "test")[1].sample(20, torch.Generator().manual_seed(cfg.eval["seed"])), 3)
    assert init["evals"]["test"]["mean"] == pytest.approx(float(fresh[:, -1].mean()), rel=1e-5)   # the seed's init
    assert init["evals"]["train"]["curve"][-1] < init["evals"]["train"]["curve"][0]   # fits its own support set
    with pytest.raises(ConfigError, match="eval.on must be query or support"):
        cfg.override(["eval.on=both"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["universality-omniglot-ood", "universality-finetune"])
def test_universality_omniglot_quick_runs(tmp_path, name):
    rows = _reproduce(name, tmp_path / name, tiny=False)
    assert rows and all(r["mean"] is not None and r["metric"] == "accuracy" for r in rows)
    assert json.loads((tmp_path / name / "results.json").read_text())["claims"]


def test_committed_universality_tables_are_the_reports_of_their_records(tmp_path):
    import shutil
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "reproductions"
    shutil.copytree(root / "universality-sine", tmp_path / "universality-sine", ignore=shutil.ignore_patterns("*.pt", ".*"))
    for name in ("universality-steps", "universality-ood"):
        sweep.report(specs.get(name), tmp_path / name)
        assert (tmp_path / name / "table.md").read_text() == (root / name / "table.md").read_text()


def test_the_omniglot_figures_test_table3s_maml_runs_not_new_ones():
    """000's Omniglot MAML (5-way 1 step, 20-way 5 steps) is 001 Table 3's MAML at the same settings: the
    cells share a config, and each spec names the others' records, so one trained run serves all three
    (whichever record trains it first; two started at once would each train it)."""
    from metagrad.experiments.specs.images import OMNIGLOT_TABLE3, _omni_cells
    from metagrad.experiments.specs.universality_omniglot import FINETUNE, OMNIGLOT_OOD, _cells, _ft_cells
    table3 = {c.id: sweep._identity(sweep._cell_config(c, [])) for c in _omni_cells({})}
    for c in [*_cells({}), *_ft_cells({})]:
        if c.labels["model"] == "MAML":
            way = c.config["task"]["n_way"]
            assert sweep._identity(sweep._cell_config(c, [])) == table3[f"MAML_{way}way"], c.id
    assert OMNIGLOT_TABLE3.name in OMNIGLOT_OOD.reuse and OMNIGLOT_TABLE3.name in FINETUNE.reuse
    assert {OMNIGLOT_OOD.name, FINETUNE.name} <= set(OMNIGLOT_TABLE3.reuse)   # whichever trains first serves all
