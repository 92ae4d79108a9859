"""``metagrad.plotting``: what a plot draws, and that a failed save leaves nothing behind."""
from __future__ import annotations

import pytest

from metagrad import plotting


def test_plot_lines_draws_each_nonempty_line_with_its_style(tmp_path, monkeypatch):
    saved = {}
    real_save = plotting.save_figure

    def spy(fig, path):
        ax = fig.axes[0]
        saved["lines"] = {ln.get_label(): ln for ln in ax.get_lines()}
        saved["yscale"] = ax.get_yscale()
        real_save(fig, path)
    monkeypatch.setattr(plotting, "save_figure", spy)
    out = tmp_path / "sub" / "lines.png"
    plotting.plot_lines({"a": [(2, 1.0), (1, 3.0)], "b": [], "c": [(1, 0.5)]}, out, "x", "y", logy=True,
                        styles={"c": {"color": "C3", "linestyle": "--", "marker": "s"}})
    lines = saved["lines"]
    assert set(lines) == {"a", "c"}                       # the empty line is skipped
    assert list(lines["a"].get_xdata()) == [1, 2]         # points sorted by x
    assert lines["c"].get_linestyle() == "--" and lines["c"].get_marker() == "s"
    assert lines["a"].get_marker() == "o" and saved["yscale"] == "log"
    assert out.stat().st_size > 1000 and [p.name for p in out.parent.iterdir()] == ["lines.png"]


def test_save_figure_leaves_no_file_when_saving_fails(tmp_path, monkeypatch):
    plt = plotting.pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])

    def broken(path, **kw):
        open(path, "wb").write(b"half")                   # a partial write, then the crash
        raise OSError("disk full")
    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plotting.save_figure(fig, tmp_path / "plot.png")
    assert list(tmp_path.iterdir()) == []


def test_training_plot_reads_the_wall_clock_from_timing_and_labels_validation(tmp_path, monkeypatch):
    import json
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"iteration": 100, "loss": 4.0, "val_mse": 3.5}, {"iteration": 200, "loss": 2.0, "val_mse": 2.5}]))
    (tmp_path / "timing.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"iteration": 100, "train_seconds": 300.0}, {"iteration": 200, "train_seconds": 600.0}]))
    seen = {}
    real_save = plotting.save_figure

    def spy(fig, path):
        ax = fig.axes[0]
        seen["labels"] = [t.get_text() for t in ax.get_legend().get_texts()]
        seen["top_label"] = ax.child_axes[0].get_xlabel()   # 600 s in all: minutes
        real_save(fig, path)
    monkeypatch.setattr(plotting, "save_figure", spy)
    plotting.plot_training(tmp_path / "metrics.jsonl", tmp_path / "training.png", "run")
    assert seen["labels"] == ["meta-training loss", "validation (mse)"]
    assert seen["top_label"] == "training time (min, at the run's mean pace)"
    assert (tmp_path / "training.png").stat().st_size > 1000


def test_figure_legend_has_every_panels_labels_once():
    # 000 Fig. 4's 20-way panel had no MAML line yet; a legend of the first panel alone left MAML out
    plt = plotting.pyplot()
    fig, axes = plt.subplots(1, 2, layout="constrained")
    axes[0].plot([0, 1], label="random, test")
    axes[1].plot([0, 1], label="MAML, test")
    axes[1].plot([1, 0], label="random, test")
    plotting.figure_legend(fig, axes, ncol=2)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["random, test", "MAML, test"]
    plt.close(fig)
