"""Paper tables as data: one ``sweep.Spec`` per experiment, run by ``metagrad reproduce NAME``.

``SPECS`` maps each name to the module that defines it (imported lazily); ``get(name)`` returns
the ``Spec`` with a one-line error listing the names for an unknown one.
"""
from __future__ import annotations

import importlib

from ...errors import ConfigError, did_you_mean

__all__ = ["SPECS", "get"]

# name -> (module under metagrad.experiments.specs, attribute)
SPECS: dict[str, tuple[str, str]] = {
    "mtnet-table1": ("mtnet", "TABLE1"),
    "turtle-table6": ("turtle", "TABLE6"),
    "turtle-order": ("turtle", "ORDER"),
    "mtnet-table2": ("mtnet", "TABLE2"),
    "mtnet-polynomial": ("mtnet", "POLYNOMIAL"),
    "omniglot-table3": ("images", "OMNIGLOT_TABLE3"),
    "miniimagenet-table3": ("images", "MINIIMAGENET_TABLE3"),
    "turtle-images": ("images", "TURTLE_IMAGES"),
    "maml-convergence": ("convergence", "CONVERGENCE"),
    "maml-convergence-sine": ("convergence_sine", "CONVERGENCE_SINE"),
    "universality-steps": ("universality", "STEPS"),
    "universality-ood": ("universality", "OOD"),
    "universality-depth": ("universality", "DEPTH"),
    "universality-omniglot-ood": ("universality_omniglot", "OMNIGLOT_OOD"),
    "universality-finetune": ("universality_omniglot", "FINETUNE"),
}


def get(name: str):   # -> sweep.Spec (imported lazily: the sweep imports torch-heavy modules)
    """The ``Spec`` of experiment ``name``."""
    if name not in SPECS:
        raise ConfigError(f"reproduce: unknown experiment {name!r}{did_you_mean(name, SPECS)}; choose one of {', '.join(sorted(SPECS))}")
    module, attr = SPECS[name]
    return getattr(importlib.import_module(f"metagrad.experiments.specs.{module}"), attr)
