"""Experiment configs: a frozen dataclass of sections, dotted overrides that reject unknown keys.

A config is plain data (nanoGPT / flax-examples style)::

    {"name": "sine-maml",
     "algorithm": "maml",                                    # or "oracle", "blackbox" (registry.ALGORITHMS)
     "task":  {"name": "sine", "k_shot": 10, ...},          # keys of the task builder
     "model": {"name": "mlp", "hidden": [40, 40]},           # keys of the model builder
     "inner": {"learner": "sgd", "lr": 0.01, "steps": 1, "mode": "second_order", ...},
     "outer": {"optimizer": "adam", "lr": 0.001, "meta_batch": 25, "iterations": 70000},
     "eval":  {"tasks": 600, "steps": None, "batch": 100, "seed": 12345},
     "seed": 0, "dtype": "float32", "vectorize": "auto", "compile": False, "threads": None,
     "imports": []}                                          # the user's modules (plugins.py)

``threads`` sets ``torch.set_num_threads`` for the run (``None`` keeps torch's default). Small
workloads such as sine regression run fastest on one thread, and much faster than with several
when other processes compete for the cores (OpenMP threads then wait on each other).

``task``, ``model`` and the learner part of ``inner`` accept exactly the keyword parameters of
the builder their ``name`` (or ``learner``) selects in ``registry``; every other section has a
fixed key set. ``Config.override(["inner.steps=5", "task.k_shot=5"])`` returns a new config;
values are parsed as JSON (``5``, ``0.1``, ``true``, ``null``, ``[1, 2]``), else kept as strings.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from ..errors import ConfigError, did_you_mean
from . import registry
from .plugins import is_file_entry, load_imports, normalise_imports

__all__ = ["Config", "ConfigError", "INNER_KEYS", "OUTER_DEFAULTS", "EVAL_DEFAULTS", "parse_value"]




INNER_KEYS: dict[str, Any] = {"learner": "sgd", "steps": 1, "mode": "second_order", "grad_clip": None,
                              "hf_delta": None, "hf_rho": None}
OUTER_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3, "meta_batch": 25, "iterations": 70000,
                                  "clip_norm": None, "hvp_batch": False,
                                  "beta_tasks": None, "beta_shots": None,
                                  "adaptive_L": None, "adaptive_rho": None, "adaptive_c": None,
                                  "schedule": "constant", "nonfinite": "raise", "explode": 1e6,
                                  "clip_value": None, "clip_scope": "all"}
EVAL_DEFAULTS: dict[str, Any] = {"tasks": 600, "steps": None, "batch": 100, "seed": 12345,
                                 "every": 0, "val_tasks": 100, "test_state": "best", "measure": None, "on": "query"}
_OPTIMIZERS = ("adam", "sgd")
_DTYPES = ("float32", "float64")


def parse_value(text: str) -> Any:
    """Parse an override value: JSON when it parses (numbers, booleans, null, lists), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass(frozen=True)
class Config:
    """A whole experiment: task, model, inner loop, meta-optimiser, evaluation and seed."""

    name: str = "custom"
    algorithm: str = "maml"   # registry.ALGORITHMS: "maml", "oracle" (000's task-conditioned model), "blackbox"
    task: dict = field(default_factory=lambda: {"name": "sine"})
    model: dict = field(default_factory=lambda: {"name": "mlp"})
    inner: dict = field(default_factory=lambda: dict(INNER_KEYS))
    outer: dict = field(default_factory=lambda: dict(OUTER_DEFAULTS))
    eval: dict = field(default_factory=lambda: dict(EVAL_DEFAULTS))
    seed: int = 0
    dtype: str = "float32"
    vectorize: Any = "auto"
    compile: bool = False
    log_every: int = 100
    checkpoint_every: int = 1000
    threads: Any = None
    device: str = "cpu"
    imports: list = field(default_factory=list)   # the user's modules that register names (plugins.py)

    # -- construction -----------------------------------------------------------------------
    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Config":
        """Build and validate a config from a (possibly partial) nested dict."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"config: expected a mapping, got {type(d).__name__}")
        top = {f.name for f in fields(Config)}
        bad = [k for k in d if k not in top]
        if bad:
            raise ConfigError(f"config: unknown key {bad[0]!r}{did_you_mean(bad[0], top)}; valid keys: {', '.join(sorted(top))}")
        d = copy.deepcopy(dict(d))
        if "imports" in d:
            d["imports"] = normalise_imports(d["imports"])
        for sec, defaults in (("inner", INNER_KEYS), ("outer", OUTER_DEFAULTS), ("eval", EVAL_DEFAULTS)):
            if sec in d and not isinstance(d[sec], Mapping):
                raise ConfigError(f"config: section {sec!r} must be a mapping, got {d[sec]!r}")
            d[sec] = {**defaults, **d.get(sec, {})}
        cfg = Config(**d)
        cfg.validate()
        return cfg

    @staticmethod
    def load(path: str | Path) -> "Config":
        """Read a JSON config file (e.g. a run's ``config.json``); relative ``.py`` paths in its ``imports``
        are taken from the file's folder."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            if isinstance(d, dict) and isinstance(d.get("imports"), list):   # files: beside the config file
                d["imports"] = [str(path.parent / e) if isinstance(e, str) and is_file_entry(e) else e
                                for e in d["imports"]]
            return Config.from_dict(d)
        except FileNotFoundError:
            raise ConfigError(f"config: no such file {str(path)!r}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"config: {str(path)!r} is not valid JSON ({e.msg} at line {e.lineno})") from None

    def summary(self) -> str:
        """What the config trains, in one line (``metagrad list``), e.g. ``maml: sgd, 1 step of 0.4, second
        order | conv4 | omniglot 5-way 1-shot | adam 0.001, meta-batch 32, 60,000 iterations``."""
        t, i, o = self.task, self.inner, self.outer
        task = " ".join([t["name"], *([f"{t['n_way']}-way"] if "n_way" in t else []),
                         *([f"{t['k_shot']}-shot"] if "k_shot" in t else []),
                         *([f"degree {t['degree']}"] if "degree" in t else [])])
        algo = self.algorithm
        if self.algorithm == "maml":
            rate = f" of {i['lr']:g}" if "lr" in i else ""
            algo += f": {i['learner']}, {i['steps']} step{'' if i['steps'] == 1 else 's'}{rate}, {i['mode'].replace('_', ' ')}"
            if i["learner"] == "lstm" and i["mode"] != "first_order" and not i.get("second_order", False):
                algo += " (the rule's gradient inputs detached, as Ravi & Larochelle)"   # LSTMMetaLearner's default
        return (f"{algo} | {self.model['name']} | {task} | {o['optimizer']} {o['lr']:g}, meta-batch {o['meta_batch']}, "
                f"{o['iterations']:,} iterations")

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))

    def identity(self, ignore: Iterable[str] = ()) -> dict[str, Any]:
        """The settings that define what a run computes, as plain JSON data: ``to_dict()`` less
        the settings that apply to nothing (002's adaptive step's, when it is off) and the keys in
        ``ignore`` (``"seed"``, ``"outer.lr"``, or ``"eval."`` for a whole section)."""
        d = self.to_dict()
        if not d["imports"]:   # none: the identity of every config from before imports existed
            d.pop("imports")
        if d["outer"].get("adaptive_L") is None:   # 002's adaptive step is off: its settings change nothing
            for k in ("adaptive_rho", "adaptive_c"):
                d["outer"].pop(k, None)
        for k in ignore:
            sec, dot, name = k.partition(".")
            if not (dot and name):
                d.pop(sec, None)
            elif isinstance(d.get(sec), dict):
                d[sec].pop(name, None)
        return json.loads(json.dumps(d))

    @staticmethod
    def stored_identity(stored: Any, ignore: Iterable[str] = ()) -> Optional[dict[str, Any]]:
        """An identity saved earlier (a checkpoint's key, a cached run's config) in today's form:
        settings added since it was written take their defaults, which by rule change nothing, so a
        new config key never orphans a checkpoint or a committed record. ``None`` if it no longer
        parses (a removed key: the run is not today's)."""
        try:
            return Config.from_dict(stored).identity(ignore)
        except (ConfigError, TypeError):
            return None

    def override(self, assignments: Iterable[str]) -> "Config":
        """Apply dotted ``key=value`` assignments; unknown keys raise ``ConfigError`` naming them."""
        d = self.to_dict()
        # the sections of the config itself: an earlier assignment of a dict to a setting does not make one
        sections = {k for k, v in d.items() if isinstance(v, dict)}
        for a in assignments:
            if "=" not in a:
                raise ConfigError(f"override: expected key=value, got {a!r}")
            key, text = a.split("=", 1)
            parts = key.strip().split(".")
            value = parse_value(text)
            if len(parts) == 1:
                if parts[0] not in d or parts[0] in sections:
                    raise ConfigError(f"override: unknown config key {key!r}")
                d[parts[0]] = value
            elif len(parts) == 2 and isinstance(d.get(parts[0]), dict):
                d[parts[0]][parts[1]] = value
            else:
                raise ConfigError(f"override: unknown config key {key!r}")
        return Config.from_dict(d)

    # -- validation -----------------------------------------------------------------------
    def validate(self) -> None:
        """Check every key against its builder or default set, the simple types and the ranges.

        Every number anywhere must be finite (NaN and infinity are refused, naming the key);
        learning rates (``outer.lr``, ``inner.lr`` and the learner's ``lr_init``) must be
        positive; ``outer.iterations`` at least 1.
        """
        for f in fields(self):
            _check_finite(f.name, getattr(self, f.name))
        load_imports(self.imports)   # before the names they register are looked up
        if self.algorithm not in registry.ALGORITHMS:
            raise ConfigError(f"config: unknown algorithm {self.algorithm!r}{did_you_mean(self.algorithm, registry.ALGORITHMS)}; choose one of {', '.join(registry.ALGORITHMS)}")
        _check_section("task", self.task, registry.TASKS, "name")
        _check_section("model", self.model, registry.MODELS, "name", skip=("task",))
        _check_section("inner", self.inner, registry.LEARNERS, "learner", skip=("model",), common=INNER_KEYS)
        for sec, defaults in (("outer", OUTER_DEFAULTS), ("eval", EVAL_DEFAULTS)):
            values = getattr(self, sec)
            bad = [k for k in values if k not in defaults]
            if bad:
                raise ConfigError(f"config: unknown key {sec}.{bad[0]}{did_you_mean(bad[0], defaults)}; valid keys: {', '.join(defaults)}")
        for k in ("k_shot", "k_query", "n_way"):
            if k in self.task:
                _int("task." + k, self.task[k], 1)
        _int("inner.steps", self.inner["steps"], 0)
        if "lr" in self.inner:
            _pos("inner.lr", self.inner["lr"])
        if not isinstance(self.inner.get("lr_init"), str):   # a number (TURTLE) or None; a name (Meta-SGD)
            _pos("inner.lr_init", self.inner.get("lr_init"), optional=True)
        if self.inner["mode"] not in ("second_order", "first_order", "hessian_free"):
            raise ConfigError(f"config: inner.mode must be second_order, first_order or hessian_free, "
                              f"got {self.inner['mode']!r}")
        for k in ("grad_clip", "hf_delta", "hf_rho"):
            _pos("inner." + k, self.inner[k], optional=True)
        if self.outer["optimizer"] not in _OPTIMIZERS:
            raise ConfigError(f"config: outer.optimizer must be one of {', '.join(_OPTIMIZERS)}, got {self.outer['optimizer']!r}")
        _pos("outer.lr", self.outer["lr"])
        _int("outer.meta_batch", self.outer["meta_batch"], 1)
        _int("outer.iterations", self.outer["iterations"], 1)
        _pos("outer.clip_norm", self.outer["clip_norm"], optional=True)
        hb = self.outer["hvp_batch"]
        if not isinstance(hb, bool):   # D_h: false, true (k_shot examples) or a size
            _int("outer.hvp_batch (false, true or D_h's examples per task)", hb, 1)
        if hb is not False and self.inner["mode"] == "first_order":
            raise ConfigError("config: outer.hvp_batch (002's D_h) is for inner.mode hessian_free or second_order; "
                              "first_order takes no Hessian-vector products")
        for k in ("beta_tasks", "beta_shots"):   # 002 eq. (17): B' tasks of D_beta examples (null: meta_batch, k_shot)
            if self.outer[k] is not None:
                _int("outer." + k, self.outer[k], 1)
        if self.outer["schedule"] not in ("constant", "cosine"):
            raise ConfigError(f"config: outer.schedule must be \"constant\" or \"cosine\", got {self.outer['schedule']!r}")
        for k in ("adaptive_L", "adaptive_rho"):   # a number, or "estimate" (metagrad.smoothness)
            if self.outer[k] != "estimate":
                _pos(f"outer.{k} (a number or \"estimate\")", self.outer[k], optional=True)
        _pos("outer.adaptive_c (null: 002's theorem constant for inner.mode)", self.outer["adaptive_c"], optional=True)
        if (self.outer["adaptive_L"] is None) != (self.outer["adaptive_rho"] is None):
            raise ConfigError("config: outer.adaptive_L and outer.adaptive_rho go together (002's adaptive "
                              "meta step size); set both or neither")
        if self.outer["nonfinite"] not in ("raise", "stop", "skip"):
            raise ConfigError(f"config: outer.nonfinite must be raise, stop or skip, got {self.outer['nonfinite']!r}")
        _pos("outer.explode", self.outer["explode"], optional=True)
        _pos("outer.clip_value", self.outer["clip_value"], optional=True)
        if self.outer["clip_scope"] not in ("all", "init", "init_per_task"):
            raise ConfigError(f"config: outer.clip_scope must be all, init or init_per_task (which meta-gradients "
                              f"outer.clip_value clamps), got {self.outer['clip_scope']!r}")
        if self.eval["measure"] is not None and self.eval["measure"] not in registry.CURVE_MEASURES:
            raise ConfigError(f"config: eval.measure must be null or one of {', '.join(registry.CURVE_MEASURES)}, "
                              f"got {self.eval['measure']!r}")
        if self.eval["on"] not in ("query", "support"):   # support: the training accuracy of 000 Fig. 4
            raise ConfigError(f"config: eval.on must be query or support, got {self.eval['on']!r}")
        if self.eval["test_state"] not in ("best", "final"):
            raise ConfigError(f"config: eval.test_state must be best or final, got {self.eval['test_state']!r}")
        if not isinstance(self.device, str):
            raise ConfigError(f"config: device must be a string such as cpu, cuda, cuda:1 or mps, got {self.device!r}")
        _int("eval.tasks", self.eval["tasks"], 1)
        _int("eval.batch", self.eval["batch"], 1)
        _int("eval.every", self.eval["every"], 0)
        _int("eval.val_tasks", self.eval["val_tasks"], 1)
        _int("eval.seed", self.eval["seed"], 0)
        if self.eval["steps"] is not None:
            _int("eval.steps", self.eval["steps"], 0)
        if self.dtype not in _DTYPES:
            raise ConfigError(f"config: dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        if self.vectorize not in (True, False, "auto"):
            raise ConfigError(f"config: vectorize must be true, false or \"auto\", got {self.vectorize!r}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"config: compile must be true or false, got {self.compile!r}")
        _int("seed", self.seed, 0)
        _int("log_every", self.log_every, 1)
        _int("checkpoint_every", self.checkpoint_every, 1)
        if self.threads is not None:
            _int("threads", self.threads, 1)

    def learner_options(self) -> dict[str, Any]:
        """The ``inner`` keys that belong to the learner's builder."""
        return {k: v for k, v in self.inner.items() if k not in INNER_KEYS}

    def section_options(self, sec: str) -> dict[str, Any]:
        """A task or model section without its ``name``."""
        return {k: v for k, v in getattr(self, sec).items() if k != "name"}


def _check_section(sec: str, values: Mapping[str, Any], table: Mapping[str, Any], name_key: str,
                   skip: tuple[str, ...] = (), common: Mapping[str, Any] | None = None) -> None:
    if not isinstance(values, Mapping):
        raise ConfigError(f"config: section {sec!r} must be a mapping, got {values!r}")
    name = values.get(name_key)
    if not isinstance(name, str) or name not in table:
        raise ConfigError(f"config: unknown {sec}.{name_key} {name!r}{did_you_mean(name, table)}; choose one of "
                          f"{', '.join(sorted(table))} (or register your own in a module the config's imports name)")
    keys = [name_key, *(common or {}), *registry.accepted_keys(table[name], skip=skip + ("split",))]
    bad = [k for k in values if k not in keys]
    if bad:
        raise ConfigError(f"config: unknown key {sec}.{bad[0]} for {name_key} {name!r}{did_you_mean(bad[0], keys)}; valid keys: {', '.join(dict.fromkeys(keys))}")


def _int(key: str, v: Any, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"config: {key} must be an integer >= {lo}, got {v!r}")


def _pos(key: str, v: Any, optional: bool = False) -> None:
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
        extra = " or null" if optional else ""
        raise ConfigError(f"config: {key} must be a positive finite number{extra}, got {v!r}")


def _check_finite(key: str, v: Any) -> None:
    """Refuse NaN and infinity anywhere in a value (``--set inner.lr=NaN`` parses as a float NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"config: {key} is {v!r}; NaN and infinity are not allowed, give a finite number")
    if isinstance(v, Mapping):
        for k, x in v.items():
            _check_finite(f"{key}.{k}", x)
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _check_finite(f"{key}[{i}]", x)
