"""Bad input is refused where it enters, in one line that names the value (issue 35, item 6).

Property-based (hypothesis): random dotted config overrides either build a config (and its task,
model and learner) or raise ``ConfigError``, never another exception; random ``TaskBatch``
shapes, dtypes and values either build a batch or raise a one-line ``TaskBatch:`` error exactly
when a documented rule is broken. Then the named cases of the issue: MSE targets ``[B, K]``
against predictions ``[B, K, 1]``, each missing or damaged data file named, damaged caches
rebuilt. ``docs/bad_inputs.md`` tabulates every bad input tried and what it gives now.
"""
from __future__ import annotations

import inspect
import json
import math
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import metagrad as mg
from metagrad.batch import TaskBatch
from metagrad.experiments import registry
from metagrad.experiments.config import Config, ConfigError, parse_value
from metagrad.losses import mse
from metagrad.tasks import images as im
from metagrad.tasks import omniglot as om

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
    return msg


# --- configs ------------------------------------------------------------------------------

def _is_pos(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _is_int(lo: int) -> Callable[[Any], bool]:
    return lambda v: not isinstance(v, bool) and isinstance(v, int) and v >= lo


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


# key -> whether a parsed value is valid there (the documented rules of Config.validate)
RULES: dict[str, Callable[[Any], bool]] = {
    "inner.lr": _is_pos, "outer.lr": _is_pos, "inner.steps": _is_int(0), "outer.iterations": _is_int(1),
    "outer.meta_batch": _is_int(1), "outer.clip_norm": _optional(_is_pos), "inner.grad_clip": _optional(_is_pos),
    "inner.hf_delta": _optional(_is_pos), "eval.tasks": _is_int(1), "eval.batch": _is_int(1),
    "eval.seed": _is_int(0), "seed": _is_int(0), "log_every": _is_int(1), "checkpoint_every": _is_int(1),
    "task.k_shot": _is_int(1), "task.k_query": _is_int(1),
}
def _finite(v: Any) -> bool:
    """No NaN or infinity anywhere in ``v`` (what ``Config`` checks of every value it reads)."""
    if isinstance(v, float):
        return math.isfinite(v)
    return all(_finite(x) for x in (v.values() if isinstance(v, dict) else v)) if isinstance(v, (list, dict)) else True


# keys the model's builder checks (a ``MetagradError`` when the config is built, not when it is read)
BUILD_RULES: dict[str, Callable[[Any], bool]] = {
    "model.hidden": lambda v: isinstance(v, list) and all(_is_int(1)(h) for h in v),
}
UNKNOWN = ["inner.lrr", "outer.foo", "foo", "task.ways", "a.b.c", "inner", ".lr", "=1"]


def _json_number(x: float) -> str:
    return json.dumps(x)      # NaN -> "NaN", inf -> "Infinity", as a user would type them


VALUES = st.one_of(
    st.integers(-3, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(_json_number),
    st.sampled_from(["1e400", "-1e400", "0", "0.0", "-0.01", "true", "false", "null", "nan", "inf", "[1, 2]",
                     "{}", "\"0.1\"", "", "1e-300", "5", "[]", "[0]", "[8, 8]", "[8, true]", "[2.5]", "[\"8\"]"]),
    st.text(alphabet="abc019.-e", max_size=6),
)
ASSIGNMENT = st.tuples(st.sampled_from(sorted(RULES) + sorted(BUILD_RULES) + UNKNOWN), VALUES)


def _build_parts(cfg: Config) -> None:
    """Build what a valid config names (task, model, learner) and run the model on a batch."""
    task = registry.build("task", registry.TASKS, cfg.task["name"], cfg.section_options("task"), split="train")
    model = registry.build("model", registry.MODELS, cfg.model["name"], cfg.section_options("model"), task)
    registry.build("inner", registry.LEARNERS, cfg.inner["learner"], cfg.learner_options(), model)
    b = task.sample(2, torch.Generator().manual_seed(0))
    assert torch.isfinite(mse(model(b.query_x[0]), b.query_y[0]))


@FAST
@given(st.lists(ASSIGNMENT, min_size=1, max_size=3))
def test_random_overrides_build_or_raise_config_error(assignments: list[tuple[str, str]]) -> None:
    texts = [f"{k}={v}" if not k.startswith("=") else f"{k}{v}" for k, v in assignments]
    final = dict(assignments)                 # a later assignment of a key replaces an earlier one
    read = {k: v for k, v in final.items() if k not in BUILD_RULES}
    valid = (all(k in RULES or k in BUILD_RULES for k, _ in assignments)
             and all(RULES[k](parse_value(v)) for k, v in read.items())
             and all(_finite(parse_value(v)) for k, v in final.items() if k in BUILD_RULES))   # read: any number
    try:
        cfg = Config().override(texts)
    except ConfigError as e:
        _one_line(e)
        assert not valid, f"{texts} refused: {e}"
        return
    assert valid, f"{texts} accepted"
    builds = all(BUILD_RULES[k](parse_value(v)) for k, v in final.items() if k in BUILD_RULES)
    try:
        _build_parts(cfg)
    except mg.MetagradError as e:
        _one_line(e)
        assert not builds, f"{texts} refused when built: {e}"
        return
    assert builds, f"{texts} built"


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True)
                    | st.text(max_size=4), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                    max_leaves=8)


@FAST
@given(st.dictionaries(st.sampled_from(["task", "model", "inner", "outer", "eval", "seed", "dtype", "vectorize",
                                        "compile", "threads", "name", "bogus"]), JSON, max_size=4))
def test_random_config_files_load_or_raise_config_error(d: dict[str, Any]) -> None:
    try:
        Config.from_dict(d)
    except ConfigError as e:
        _one_line(e)


@pytest.mark.parametrize("override, message", [
    ("inner.lr=0", "inner.lr must be a positive finite number, got 0"),
    ("inner.lr=-0.01", "inner.lr must be a positive finite number, got -0.01"),
    ("inner.lr=NaN", "inner.lr is nan; NaN and infinity are not allowed"),
    ("outer.lr=Infinity", "outer.lr is inf"),
    ("outer.lr=1e400", "outer.lr is inf"),
    ("outer.iterations=0", "outer.iterations must be an integer >= 1, got 0"),
    ("task.amplitude=[0.1, NaN]", r"task.amplitude\[1\] is nan"),
    ("task.k_shot=0", "task.k_shot must be an integer >= 1, got 0"),
    ("inner.learner=[1]", r"unknown inner.learner \[1\]"),
    ("eval.seed=-1", "eval.seed must be an integer >= 0"),
])
def test_named_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        Config().override([override])
    _one_line(e.value)


def test_learner_rates_checked_for_every_learner() -> None:
    for learner in ("sgd", "meta_sgd", "tnet", "mtnet"):
        with pytest.raises(ConfigError, match="inner.lr must be a positive finite number"):
            Config().override([f"inner.learner={learner}", "inner.lr=0"])
    with pytest.raises(ConfigError, match="inner.lr_init must be a positive finite number or null, got -1"):
        Config().override(["inner.learner=turtle", "inner.lr_init=-1"])
    Config().override(["inner.learner=meta_sgd", "inner.lr_init=uniform"])      # a name, checked by MetaSGD


# --- TaskBatch ----------------------------------------------------------------------------

def _expected_error(t: dict[str, Optional[torch.Tensor]]) -> bool:
    """Whether the documented rules refuse these tensors (the oracle of the property test)."""
    main = [t[k] for k in ("support_x", "support_y", "query_x", "query_y")]
    if any(v.dim() < 2 for v in main) or (t["task_params"] is not None and t["task_params"].dim() < 1):
        return True
    present = [v for v in t.values() if v is not None]
    if len({v.shape[0] for v in present}) != 1 or present[0].shape[0] == 0:
        return True
    for a, b in (("support_x", "query_x"), ("support_y", "query_y")):
        if t[a].dtype != t[b].dtype or t[a].shape[2:] != t[b].shape[2:]:
            return True
    for a, b in (("support_x", "support_y"), ("query_x", "query_y")):
        if t[a].shape[1] != t[b].shape[1] or t[a].shape[1] == 0:
            return True
    return any(v.is_floating_point() and not bool(torch.isfinite(v).all()) for v in present)


@st.composite
def task_tensors(draw: st.DrawFn) -> dict[str, Optional[torch.Tensor]]:
    """A consistent batch, then 0-2 mutations (shape, dtype, count or value) of random fields."""
    b, ks, kq = draw(st.integers(0, 3)), draw(st.integers(0, 4)), draw(st.integers(0, 4))
    feat = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    classify = draw(st.booleans())
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    shapes = {"support_x": (b, ks, *feat), "query_x": (b, kq, *feat),
              "support_y": (b, ks) if classify else (b, ks, 1), "query_y": (b, kq) if classify else (b, kq, 1),
              "task_params": (b, 3)}
    dtypes = {k: (torch.int64 if classify and k.endswith("_y") else dtype) for k in shapes}
    has_params = draw(st.booleans())
    for _ in range(draw(st.integers(0, 2))):
        k = draw(st.sampled_from(sorted(shapes)))
        kind = draw(st.sampled_from(["dim", "count", "dtype", "drop"]))
        s = list(shapes[k])
        if kind == "dim" and s:
            i = draw(st.integers(0, len(s) - 1))
            s[i] = draw(st.integers(0, 4))
        elif kind == "count":
            s = s[:draw(st.integers(0, len(s)))]
        elif kind == "dtype":
            dtypes[k] = draw(st.sampled_from([torch.float32, torch.float64, torch.int64]))
        elif kind == "drop" and k == "task_params":
            has_params = False
        shapes[k] = tuple(s)
    out: dict[str, Optional[torch.Tensor]] = {}
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    for k, s in shapes.items():
        if dtypes[k] == torch.int64:
            out[k] = torch.randint(0, 5, s, generator=g)
        else:
            out[k] = torch.randn(s, generator=g, dtype=dtypes[k]) * draw(st.sampled_from([1.0, 1e30]))
            if out[k].numel() and draw(st.integers(0, 4)) == 0:
                out[k].view(-1)[draw(st.integers(0, out[k].numel() - 1))] = draw(
                    st.sampled_from([math.nan, math.inf, -math.inf, 3e38]))
    if not has_params:
        out["task_params"] = None
    return out


@settings(max_examples=200, deadline=None)
@given(task_tensors())
def test_task_batch_builds_exactly_when_the_rules_hold(t: dict[str, Optional[torch.Tensor]]) -> None:
    refuse = _expected_error(t)
    try:
        batch = TaskBatch(**t)
    except (ValueError, TypeError) as e:
        assert _one_line(e).startswith("TaskBatch"), e
        assert refuse, f"refused a valid batch: {e}"
        return
    assert not refuse, "accepted a batch that breaks a rule"
    n = batch.n_tasks
    assert n == t["support_x"].shape[0] and [batch[i].n_tasks for i in range(-n, n)] == [1] * (2 * n)
    assert torch.equal(batch[-1].query_x, t["query_x"][-1:]) and TaskBatch.cat([batch, batch]).n_tasks == 2 * n


def test_task_batch_bad_index_and_cat() -> None:
    b = mg.tasks.Sinusoid().sample(3, torch.Generator().manual_seed(0))
    with pytest.raises(IndexError, match="task 3 is out of range for a batch of 3 tasks"):
        b[3]
    with pytest.raises(TypeError, match="index with an int or a slice, got str"):
        b["0"]
    with pytest.raises(ValueError, match="no batches given"):
        TaskBatch.cat([])
    with pytest.raises(ValueError, match="0 tasks"):
        b[3:]


# --- losses -------------------------------------------------------------------------------

def test_mse_refuses_targets_that_would_broadcast() -> None:
    with pytest.raises(ValueError, match=r"predictions have shape \(10, 1\) but targets have shape \(10,\)"):
        mse(torch.zeros(10, 1), torch.zeros(10))
    # the same through MAML: sine targets [B, K] against the MLP's [B, K, 1] predictions
    b = mg.tasks.Sinusoid(k_shot=5, k_query=5).sample(4, torch.Generator().manual_seed(0))
    flat = TaskBatch(b.support_x, b.support_y[..., 0], b.query_x, b.query_y[..., 0])
    algo = mg.MAML(mg.models.MLP([1, 8, 1]), inner_lr=0.01, inner_steps=1)
    with pytest.raises(ValueError, match=r"\(5, 1\) but targets have shape \(5,\)") as e:
        algo.meta_loss(flat)
    _one_line(e.value)
    assert torch.isfinite(algo.meta_loss(b))


# --- data files ---------------------------------------------------------------------------

@pytest.fixture
def omniglot_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A miniature Omniglot in the .npz form: 2 + 1 characters of 20 drawings, 105x105."""
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "omniglot"
    folder.mkdir()
    g = np.random.default_rng(0)
    for part, n in (("images_background", 2), ("images_evaluation", 1)):
        np.savez(folder / f"{part}.npz", images=g.random((n, 20, 105, 105)) > 0.1)
    return tmp_path


def test_each_missing_omniglot_part_is_named(omniglot_root: Path) -> None:
    folder = omniglot_root / "omniglot"
    (folder / "images_evaluation.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no images_evaluation.npz, images_evaluation.zip or "
                                                r"images_evaluation/ \(found images_background.npz\)") as e:
        om.load_omniglot(root=omniglot_root, image_size=7)
    assert "no images_background" not in _one_line(e.value)
    (folder / "images_evaluation.zip").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="has images_background.npz but no images_evaluation.npz"):
        om.load_omniglot(root=omniglot_root, image_size=7)
    (folder / "images_evaluation.zip").unlink()
    (folder / "images_background.npz").rename(folder / "x.npz")
    (folder / "images_evaluation").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no images_background.npz, images_background.zip or "
                                                r"images_background/ \(found images_evaluation/\)"):
        om.load_omniglot(root=omniglot_root, image_size=7)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no images key", "wrong shape"])
def test_a_damaged_omniglot_archive_is_named(omniglot_root: Path, damage: str) -> None:
    path = omniglot_root / "omniglot" / "images_evaluation.npz"
    if damage == "garbage":
        path.write_bytes(b"not an archive at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "no images key":
        np.savez(path, pictures=np.zeros((1, 20, 105, 105), bool))
    else:
        np.savez(path, images=np.zeros((1, 20, 50), bool))
    with pytest.raises(ValueError, match="images_evaluation.npz") as e:
        om.load_omniglot(root=omniglot_root, image_size=7)
    _one_line(e.value)


def test_a_damaged_zip_release_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "omniglot"
    folder.mkdir()
    for part in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(folder / f"{part}.zip", "w") as z:
            z.writestr(f"{part}/A/character01/0001_01.png", b"png?")
    (folder / "images_background.zip").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(ValueError, match="images_background.zip is damaged or not a zip archive") as e:
        om.load_omniglot(root=tmp_path, image_size=7)
    _one_line(e.value)
    (folder / "images_background.zip").unlink()
    (folder / "images_background").mkdir()
    with pytest.raises(ValueError, match="0001_01.png in .*images_evaluation.zip is not a readable PNG"):
        om.load_omniglot(root=tmp_path, image_size=7)


def test_a_damaged_alphabets_csv_is_named(omniglot_root: Path) -> None:
    (omniglot_root / "omniglot" / "alphabets.csv").write_text("name,first\nA,x\n")
    with pytest.raises(ValueError, match="alphabets.csv is damaged") as e:
        om.load_omniglot(root=omniglot_root, image_size=7)
    _one_line(e.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_cache_is_rebuilt(omniglot_root: Path, damage: str) -> None:
    first, groups = om.load_omniglot(root=omniglot_root, image_size=7)
    (cache,) = (omniglot_root / "cache").glob("omniglot-7-*.npz")
    data = cache.read_bytes()
    cache.write_bytes({"truncated": data[:len(data) // 2], "garbage": b"\x00" * 100, "empty": b""}[damage])
    om._load.cache_clear()
    again, _ = om.load_omniglot(root=omniglot_root, image_size=7)
    assert torch.equal(first, again)
    with np.load(cache) as z:                # rewritten whole
        assert np.array_equal(z["images"], first.numpy())


def test_a_damaged_miniimagenet_pickle_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAGRAD_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "miniimagenet"
    folder.mkdir()
    blob = pickle.dumps({"image_data": np.zeros((6, 84, 84, 3), np.uint8), "class_dict": {"a": [0, 1, 2]}})
    (folder / "mini-imagenet-cache-train.pkl").write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match="mini-imagenet-cache-train.pkl is damaged") as e:
        im.load_miniimagenet("train", root=tmp_path)
    _one_line(e.value)


def test_a_damaged_image_and_split_file_are_named(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    Image.new("RGB", (20, 20), (255, 0, 0)).save(good)
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="bad.jpg is not a readable image") as e:
        im.read_images([good, bad], 8)
    _one_line(e.value)
    split = tmp_path / "split.json"
    split.write_text("{\"train\": [")
    with pytest.raises(ValueError, match="split.json is not valid JSON"):
        im.cub_split(["a", "b"], split_file=split)


@pytest.mark.parametrize("argv, hint", [
    (["train", "sine-mam"], "unknown preset 'sine-mam' (did you mean 'sine-maml'?); choose one of"),
    (["train", "Sine-MAML"], "unknown preset 'Sine-MAML' (did you mean 'sine-maml'?); choose one of"),   # case alone
    (["train", "sine-maml", "--set", "outer.iteration=3"], "unknown key outer.iteration (did you mean 'iterations'?)"),
    (["train", "sine-maml", "--set", "model.hiden=[3]"], "unknown key model.hiden for name 'mlp' (did you mean 'hidden'?)"),
    (["train", "sine-maml", "--set", "task.name=omniglott"], "unknown task.name 'omniglott' (did you mean 'omniglot'?)"),
    (["reproduce", "universality-dept"], "unknown experiment 'universality-dept' (did you mean 'universality-depth'?)"),
    (["train", "zzz"], "unknown preset 'zzz'; choose one of"),   # nothing close: no guess
])
def test_a_mistyped_name_is_answered_with_the_name_meant(argv, hint, capsys):
    from metagrad.cli import main as cli_main
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert hint in err and err.count("\n") == 1, err


def test_a_later_assignment_replaces_an_earlier_dict_and_sections_stay_refused() -> None:
    """``seed={}`` then ``seed=0`` is ``seed=0`` (hypothesis found ``seed`` refused as a section once a
    dict had been assigned to it); assigning to a section itself is still refused, naming it."""
    assert Config().override(["seed={}", "seed=0"]).seed == 0
    with pytest.raises(ConfigError, match="unknown config key 'task'"):
        Config().override(["task=0"])


@pytest.mark.parametrize("make, shown", [
    (lambda: Config.from_dict({"inner": {"\n": None}}), r"unknown key inner.\n for learner 'sgd'"),
    (lambda: Config().override(["inner.a\tb=1"]), r"inner.a\tb"),
])
def test_a_name_with_a_line_break_is_shown_escaped_in_one_line(make, shown) -> None:
    """A key holding a line break or a tab (hypothesis found ``{"inner": {"\\n": None}}``) is named
    as ``repr`` would write it, so the error stays one line."""
    with pytest.raises(ConfigError) as e:
        make()
    assert shown in _one_line(e.value)


def test_every_error_kind_is_one_line() -> None:
    from metagrad import errors
    for kind in (errors.ConfigError, errors.InputError, errors.MissingKeyError, errors.MissingFileError,
                 errors.RunError, errors.DeviceError):
        assert str(kind("no folder /data/a\nb\r\x1b[2J")) == r"no folder /data/a\nb\r\x1b[2J", kind


_SINE = mg.tasks.Sinusoid(k_shot=5, k_query=5)


def _fit(**given: Any) -> Any:
    algo = mg.MAML(mg.models.MLP([1, 4, 1]))
    parts = {"stream": mg.SampledStream(_SINE, meta_batch=2, seed=0), "optimizer": torch.optim.Adam(algo.parameters())}
    return mg.fit(algo, **{"iterations": 2, **parts, **given})


@pytest.mark.parametrize("call, error, message", [
    (lambda: mg.MAML("mlp"), TypeError, "MAML: model must be a torch.nn.Module, e.g. mg.models.MLP([1, 40, 40, 1]); got str"),
    (lambda: mg.MAML(None), TypeError, "MAML: model must be a torch.nn.Module, e.g. mg.models.MLP([1, 40, 40, 1]); got NoneType"),
    (lambda: mg.MAML(mg.models.MLP([1, 4, 1]), inner_lr="0.1"), ValueError, "MAML: inner_lr must be a finite positive number, got '0.1'"),
    (lambda: mg.evaluate(mg.MAML(mg.models.MLP([1, 4, 1])), (_SINE, 0, 1)), ValueError, "evaluate: n_tasks must be an integer >= 1, got 0"),
    (lambda: mg.evaluate(mg.MAML(mg.models.MLP([1, 4, 1])), (_SINE, 10, -1)), ValueError, "evaluate: seed must be an integer >= 0, got -1"),
    (lambda: mg.evaluate(mg.MAML(mg.models.MLP([1, 4, 1])), _SINE), TypeError,
     "evaluate: tasks must be a TaskBatch or (distribution, n_tasks, seed), e.g. (mg.tasks.Sinusoid(k_shot=10, k_query=10), 600, 0); got Sinusoid"),
    (lambda: mg.evaluate(mg.MAML(mg.models.MLP([1, 4, 1])), (_SINE, 10, 1), steps=-1), ValueError, "evaluate: steps must be an integer >= 0, got -1"),
    (lambda: mg.evaluate(mg.MAML(mg.models.MLP([1, 4, 1])), (_SINE, 10, 1), chunk=0), ValueError, "evaluate: chunk must be an integer >= 1, got 0"),
    (lambda: mg.MAML(mg.models.MLP([1, 4, 1])).predict({"x": torch.zeros(1)}, torch.zeros(3, 1)), ValueError,
     "MAML.predict: params has 1 key(s) the model does not have, e.g. 'x'; pass the dict adapt() returns (keys as in "
     "model.named_parameters(): net.0.weight, net.0.bias, net.2.weight, ...)"),
    (lambda: _fit(stream=_SINE), TypeError, "fit: stream must be a TaskStream (next, state_dict, load_state_dict), e.g. "
     "mg.SampledStream(task, meta_batch=25, seed=0); got Sinusoid"),
    (lambda: mg.evaluate(mg.MAML(mg.models.MLP([1, 4, 1])), (_SINE, 10, 1), dtype="float64"), TypeError,
     "evaluate: dtype must be a torch.dtype such as torch.float64, got 'float64'"),
    (lambda: mg.MAML(mg.models.MLP([1, 4, 1]), inner_lr=None, learn_inner_lr=True), ValueError,
     "MAML: inner_lr must be a finite number, got None"),
    (lambda: mg.learners.SGD(lr=None), ValueError, "SGD: lr must be a finite positive number, got None"),
    (lambda: mg.learners.MetaSGD(lr_range=("a", 1)), ValueError,
     "MetaSGD: lr_range must be (low, high) with 0 <= low < high, got ('a', 1)"),
    (lambda: mg.learners.TNet(inner=None), TypeError, "TNet: inner must be an update rule such as SGD(lr=0.4), got NoneType"),
    (lambda: mg.learners.Turtle(activation=[1, 2]), ValueError,
     "Turtle: unknown activation [1, 2]; choose one of relu, tanh, sigmoid, linear"),
    (lambda: mg.MAML(mg.models.MLP([1, 4, 1]), mode="hessian_free", hf_delta="x"), ValueError,
     "HessianFree: delta must be a finite positive number, got 'x'"),
    (lambda: _fit(stop_after="x"), ValueError, "fit: stop_after must be an integer >= 1, got 'x'"),
    (lambda: _fit(deadline="soon"), ValueError, "fit: deadline must be a time.time() value, e.g. time.time() + 3600, got 'soon'"),
    (lambda: _fit(optimizer=None), TypeError, "fit: optimizer must be a torch.optim.Optimizer, e.g. "
     "torch.optim.Adam(algo.parameters(), lr=1e-3); got NoneType"),
    (lambda: mg.MAML(mg.models.MLP([1, 4, 1]), learner="sgd"), TypeError, "MAML: learner must be an update rule (a "
     "metagrad Learner), e.g. mg.learners.MetaSGD(lr=0.01); got str"),
    (lambda: mg.Population([mg.MAML(mg.models.MLP([1, 4, 1])), 2]), TypeError, "Population: members must be mg.MAML, "
     "e.g. [mg.MAML(make_model(seed)) for seed in seeds]; got int"),
    (lambda: mg.TaskBatch.cat([_SINE.sample(3, torch.Generator()), mg.tasks.Sinusoid(k_shot=4, k_query=5).sample(2, torch.Generator())]),
     ValueError, "TaskBatch.cat: batch 1 has support_x of shape (2, 4, 1) but batch 0 has (3, 5, 1); only the task "
     "counts (the first sizes) may differ"),
])
def test_api_arguments_are_checked_where_they_enter(call, error, message) -> None:
    """Before: ``MAML("mlp")`` an ``AttributeError`` about ``named_parameters``; ``evaluate`` of 0 tasks
    ``torch.cat``'s "expected a non-empty list of Tensors"."""
    with pytest.raises(error) as e:
        call()
    assert isinstance(e.value, mg.MetagradError) and _one_line(e.value) == message


def test_a_checkpoint_path_that_cannot_be_written_is_refused_before_training(tmp_path) -> None:
    """Before: a file on the checkpoint's path gave ``FileExistsError`` from ``mkdir`` at the first save."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(mg.MetagradError, match=f"fit: cannot write the checkpoint '{tmp_path}/afile/x.pt': "
                                                f"'{tmp_path}/afile' is a file, not a folder$"):
        _fit(checkpoint=tmp_path / "afile" / "x.pt")
    with pytest.raises(mg.MetagradError, match="is a folder; give a file path such as runs/x.pt$"):
        _fit(checkpoint=tmp_path)
    assert _fit(checkpoint=tmp_path / "new" / "x.pt").stopped is None and (tmp_path / "new" / "x.pt").is_file()


@pytest.mark.parametrize("override, message", [
    ("model.hidden=40", "model: mlp hidden must be a list of layer widths, e.g. [40, 40], got 40"),
    ("model.hidden=[40, true]", "model: mlp hidden must be a list of layer widths, e.g. [40, 40], got [40, True]"),
])
def test_mlp_widths_must_be_a_list(override: str, message: str) -> None:
    """Before: ``TypeError: Value after * must be an iterable, not int`` (a traceback in the CLI)."""
    with pytest.raises(mg.MetagradError) as e:
        _build_parts(Config().override([override]))
    assert _one_line(e.value) == message


def test_an_mlp_on_an_image_task_names_the_model_to_use() -> None:
    """Before: an ``nn.Linear(1, 40)`` was built and the first batch failed in ``matmul`` (a traceback)."""
    task = mg.tasks.EpisodicImages(torch.zeros(6, 4, 1, 8, 8), n_way=3, k_shot=1, k_query=1)
    with pytest.raises(mg.MetagradError) as e:
        registry.build("model", registry.MODELS, "mlp", {}, task)
    assert _one_line(e.value) == "model: mlp takes vector inputs, but this task gives images of shape (1, 8, 8); " \
                                 "use model.name=conv4"
    assert registry.build("model", registry.MODELS, "conv4", {"hidden": 4}, task)(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


_FIT_VALUES = st.sampled_from([None, 0, -1, 1, 2, 0.5, 1e-9, 1e9, math.nan, math.inf, "x", True, 3.0])


@FAST
@given(st.fixed_dictionaries({}, optional={k: _FIT_VALUES for k in (
    "iterations", "log_every", "val_every", "clip_norm", "clip_value", "explode", "checkpoint_every",
    "checkpoint_every_s", "stop_after")} | {"nonfinite": st.sampled_from(["raise", "stop", "skip", "x", None])}),
    st.booleans(), st.booleans())
def test_random_fit_arguments_train_or_raise_one_line(kwargs: dict[str, Any], checkpoint: bool, validate: bool) -> None:
    """``fit``'s keyword arguments, right or wrong, train (at most 5 iterations here) or raise a one-line
    ``MetagradError`` before training; never another exception."""
    kwargs = {"iterations": 2, **kwargs}
    if _is_int(6)(kwargs["iterations"]) or (isinstance(kwargs["iterations"], float) and kwargs["iterations"] > 5):
        kwargs["iterations"] = 5
    extra: dict[str, Any] = {"validate": (lambda m: 1.0)} if validate else {}
    with tempfile.TemporaryDirectory() as d:
        if checkpoint:
            extra["checkpoint"] = Path(d) / "c.pt"
        try:
            _fit(**kwargs, **extra)
        except mg.MetagradError as e:
            _one_line(e)


_EVAL_VALUES = st.sampled_from([None, 0, -1, 1, 2, 0.5, 1e9, math.nan, "x", True, 3.0, 7])


@FAST
@given(st.one_of(st.tuples(st.sampled_from([_SINE, None, "sine"]), _EVAL_VALUES, _EVAL_VALUES), st.just(_SINE),
                 st.lists(_EVAL_VALUES, max_size=3)),
       _EVAL_VALUES, _EVAL_VALUES, st.sampled_from([torch.float32, torch.float64, "x"]))
def test_random_evaluate_arguments_evaluate_or_raise_one_line(tasks: Any, steps: Any, chunk: Any, dtype: Any) -> None:
    """``evaluate``'s arguments, right or wrong (counts capped at 50 tasks and 10 steps here), give
    numbers or a one-line ``MetagradError``; never another exception."""
    steps = 10 if _is_int(11)(steps) or (isinstance(steps, float) and steps > 10) else steps
    if isinstance(tasks, tuple) and (_is_int(51)(tasks[1]) or (isinstance(tasks[1], float) and tasks[1] > 50)):
        tasks = (tasks[0], 50, tasks[2])
    try:
        res = mg.evaluate(mg.MAML(mg.models.MLP([1, 4, 1])), tasks, steps, chunk=chunk, dtype=dtype)
    except mg.MetagradError as e:
        _one_line(e)
        return
    assert math.isfinite(res["mean"]) and res["n_tasks"] == tasks[1]


@FAST
@given(st.fixed_dictionaries({}, optional={
    **{k: _FIT_VALUES for k in ("inner_lr", "inner_steps", "grad_clip", "hf_delta", "hf_rho")},
    "mode": st.sampled_from(["second_order", "first_order", "hessian_free", "x", None]), "learn_inner_lr": st.booleans(),
    "hf_one_sided": st.booleans(), "vectorize": st.sampled_from([True, False, "auto", "x", None]),
    "loss": st.sampled_from(["mse", "cross_entropy", "x", None])}))
def test_random_maml_settings_train_a_step_or_raise_one_line(kwargs: dict[str, Any]) -> None:
    """``mg.MAML``'s settings, right or wrong (at most 3 inner steps here), give a meta-gradient and an
    adaptation curve or a one-line ``MetagradError``; never another exception."""
    if _is_int(4)(kwargs.get("inner_steps")) or (isinstance(kwargs.get("inner_steps"), float) and kwargs["inner_steps"] > 3):
        kwargs["inner_steps"] = 3
    batch = _SINE.sample(2, torch.Generator().manual_seed(0))
    try:
        algo = mg.MAML(mg.models.MLP([1, 4, 1]), **kwargs)
        algo.meta_loss(batch).backward()
        algo.adaptation_curve(batch)
    except mg.MetagradError as e:
        _one_line(e)


_LEARNER_VALUES = st.sampled_from([None, 0, -1, 1, 2, 0.5, 1e9, math.nan, math.inf, "x", True, 0.01, (0.1, 0.01),
                                   [1, 2], "uniform", "constant"])


@FAST
@given(st.sampled_from(["SGD", "MetaSGD", "TNet", "MTNet", "Turtle", "LSTMMetaLearner"]).flatmap(
    lambda name: st.tuples(st.just(name), st.fixed_dictionaries({}, optional={
        k: _LEARNER_VALUES for k in inspect.signature(getattr(mg.learners, name)).parameters if k != "name"}))))
def test_random_learner_settings_train_a_step_or_raise_one_line(rule: tuple[str, dict[str, Any]]) -> None:
    """Each update rule's settings, right or wrong, give a meta-gradient through ``mg.MAML`` or a
    one-line ``MetagradError`` when the rule is built; never another exception."""
    name, kwargs = rule
    model = mg.models.MLP([1, 4, 1])
    try:
        learner = getattr(mg.learners, name)(**kwargs)
    except mg.MetagradError as e:
        _one_line(e)
        return
    algo = mg.MAML(mg.models.to_tnet(model) if name in ("TNet", "MTNet") else model, learner=learner)
    algo.meta_loss(_SINE.sample(2, torch.Generator().manual_seed(0))).backward()
