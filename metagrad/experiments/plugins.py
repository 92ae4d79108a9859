"""A config's ``imports``: the user's own modules, imported before the config is checked.

A task family, model or update rule of one's own reaches the command line by registering it
(``registry.register_task`` / ``register_model`` / ``register_learner``) in a module that the config
names::

    # my_tasks.py
    from metagrad.experiments import registry
    registry.register_task("linear", lambda k_shot=10, k_query=10, split="train": Linear(k_shot, k_query))

    # my.json: {"imports": ["my_tasks.py"], "task": {"name": "linear", "k_shot": 5}, ...}
    metagrad train my.json            # or: metagrad train sine-maml --set imports='["my_tasks.py"]' ...

An entry is a ``.py`` file (relative to the config file that names it, or to the working directory for
``--set``; recorded as an absolute path, so ``--resume`` and ``metagrad eval`` find it from any working
directory) or a dotted module name (searched on ``sys.path`` and the working
directory). Each is imported once per process. A missing one is a one-line ``ConfigError``; an
exception raised by the module itself is a bug in it and keeps its traceback.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError

__all__ = ["normalise_imports", "load_imports", "is_file_entry"]

_LOADED: dict[str, Any] = {}


def is_file_entry(entry: str) -> bool:
    """Whether an ``imports`` entry is a file path (else a dotted module name)."""
    return entry.endswith(".py") or os.sep in entry or "/" in entry


def normalise_imports(imports: Any) -> list[str]:
    """``imports`` checked (a list of strings) with file entries made absolute."""
    if not isinstance(imports, (list, tuple)) or not all(isinstance(e, str) and e for e in imports):
        raise ConfigError(f"config: imports must be a list of module names or .py paths, got {imports!r}")
    return [str(Path(e).expanduser().resolve()) if is_file_entry(e) else e for e in imports]


def load_imports(imports: Sequence[str]) -> None:
    """Import every entry of ``imports`` not imported yet in this process (see the module docstring)."""
    for entry in imports:
        if entry in _LOADED:
            continue
        if is_file_entry(entry):
            path = Path(entry)
            if not path.is_file():
                raise ConfigError(f"config: imports: no such file {entry!r} (a .py file that registers tasks, models "
                                  "or learners; relative paths are taken from the config file's folder, or the working directory for --set)")
            name = f"metagrad_user_{path.stem}_{abs(hash(str(path))) % 10 ** 8}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            cwd = os.getcwd()
            added = cwd not in sys.path
            if added:   # `metagrad` as a console script does not search the working directory
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(entry)
            except ModuleNotFoundError as e:
                if e.name is None or not entry.startswith(e.name.split(".")[0]):
                    raise   # the module exists and itself imports something missing: its bug, its traceback
                raise ConfigError(f"config: imports: no module named {entry!r} (a module on sys.path or in the "
                                  "working directory, or a .py file path)") from None
            finally:
                if added:
                    sys.path.remove(cwd)
        _LOADED[entry] = module
