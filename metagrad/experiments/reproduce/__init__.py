"""Paper reproductions: one module per table, each with ``NAME``, ``DESCRIPTION`` and
``run(out: Path, quick: bool = False, seeds: int | None = None) -> list[dict]``.

``EXPERIMENTS`` maps the name used by ``metagrad reproduce NAME`` to its module path.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXPERIMENTS", "load"]

# name -> module under metagrad.experiments.reproduce (imported lazily: each may be heavy)
EXPERIMENTS: dict[str, str] = {}
EXPERIMENTS.update({"turtle-table6": "turtle_table6", "turtle-order": "turtle_order"})


def load(name: str) -> ModuleType:
    """Import the module of experiment ``name`` (one-line error for an unknown name)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"reproduce: unknown experiment {name!r}; choose one of {', '.join(sorted(EXPERIMENTS)) or '(none yet)'}")
    return importlib.import_module(f"metagrad.experiments.reproduce.{EXPERIMENTS[name]}")
