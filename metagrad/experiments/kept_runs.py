"""Trained runs kept beside their summaries and found again by config: evaluations without training.

A sweep keeps each meta-trained run (``train_runs(..., keep=)``: the tested state, the final one, what
``fit`` reported) as ``cells/CELL_sSEED.run.pt`` beside its summary ``cells/CELL_sSEED.json``; both
name the config they were made under. Two uses:

* a summary that lacks an evaluation its cell now asks for gets it from the kept run, not by
  training the run again;
* a cell of a record its spec names (``Spec.reuse``: sibling folders of its output) with the same
  config and seed is tested from the kept run: 000's Omniglot figures (``universality-omniglot-ood``,
  ``universality-finetune``) test the very runs of 001's Table 3 MAML cells, CPU-days of training.

A run is matched on the whole config identity (every setting that changes what is trained, those of
evaluation included), never on names, so one is reused only where training again would remake it.
Kept runs are not committed (``*.pt``): a clean checkout has the summaries, which are all a table needs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from .config import Config
from .train_runs import Trained, test_runs

__all__ = ["kept_path", "find_kept", "test_kept"]


def kept_path(summary: Path) -> Path:
    """Where the run behind ``cells/CELL_sSEED.json`` is kept: ``cells/CELL_sSEED.run.pt``."""
    return summary.with_name(summary.stem + ".run.pt")


def find_kept(records: Sequence[Path], identity: Mapping[str, Any], seed: int, schema: int,
              not_identity: Sequence[str]) -> Optional[Path]:
    """A kept run of ``seed`` made under ``identity`` in one of the record folders ``records`` (in
    their ``cells/``), found through the summaries (small JSON files) beside the kept runs."""
    for summary in (p for r in records for p in sorted((r / "cells").glob(f"*_s{seed}.json"))):
        kept = kept_path(summary)
        if not kept.exists():
            continue
        try:
            d = json.loads(summary.read_text())
        except (OSError, ValueError):   # being written by another job, or not a summary
            continue
        if d.get("schema") == schema and d.get("seed") == seed and \
                Config.stored_identity(d.get("config"), not_identity) == identity:
            return kept
    return None


def test_kept(kept: Path, cfg: Config, seed: int, evals: Mapping[str, Sequence[str]], measures: Sequence[str],
              have: Optional[dict[str, Any]], log: Callable[[str], None]) -> dict[str, Any]:
    """The summary of the run kept at ``kept``: ``have``'s (the summary made when it was trained, if
    this record has it) with the evaluations it lacks tested now, or all of them for another record's run."""
    todo = {k: v for k, v in evals.items() if have is None or k not in have.get("evals", {})}
    log(f"testing the kept run {kept} ({', '.join(todo) or 'measures only'}): no training")
    (new,) = test_runs(cfg, [seed], [Trained.load(kept)], todo, measures)
    if have is None:
        new["train"]["kept_run"] = str(kept)
        return new
    return {**new, "train": have["train"], "evals": {**have["evals"], **new["evals"]}}
