"""Trained runs kept beside their summaries and found again by config: evaluations without training.

A sweep keeps each meta-trained run (``train_runs(..., keep=)``: the tested state, the final one, what
``fit`` reported) as ``cells/CELL_sSEED.run.pt`` beside its summary ``cells/CELL_sSEED.json``; both
name the config they were made under. Two uses:

* a summary that lacks an evaluation its cell now asks for gets it from the kept run, not by
  training the run again;
* a cell of a record its spec names (``Spec.reuse``: sibling folders of its output) with the same
  config and seed is tested from the kept run: 000's Omniglot figures (``universality-omniglot-ood``,
  ``universality-finetune``) test the very runs of 001's Table 3 MAML cells, CPU-days of training;
  where that record's summary already has every evaluation the cell asks for, the summary itself is
  taken (``find_summary``; no kept run needed, so a clean checkout has it): 004 Fig. 11's so-MAML
  cells are Table 6's.
* a run of such a cell cut off in training in the other record (``find_training``: its resume point)
  is left to that record to continue, and tested here once it is done, never trained twice.

A run is matched on the whole config identity (every setting that changes what is trained, those of
evaluation included), never on names, so one is reused only where training again would remake it.
Under ``reproductions/`` kept runs are committed with their record (``.gitignore``), so a record tested
in a later session, on a fresh checkout, still finds the runs it reuses; elsewhere they stay out of git.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from .config import Config
from .train_runs import BASELINES, Trained, test_runs

__all__ = ["kept_path", "find_kept", "find_summary", "find_training", "test_kept", "trainer_of"]


def kept_path(summary: Path) -> Path:
    """Where the run behind ``cells/CELL_sSEED.json`` is kept: ``cells/CELL_sSEED.run.pt``."""
    return summary.with_name(summary.stem + ".run.pt")


def trainer_of(summary: Mapping[str, Any]) -> str:
    """How a summary's run was made: ``"meta"`` (``fit``) or a baseline of ``train_runs.BASELINES``.
    Summaries written before they recorded it name a baseline only in their ``model`` label (004's
    Finetuning cell shares so-MAML T=1's config: the config alone does not tell them apart)."""
    if "trainer" in summary:
        return summary["trainer"]
    model = summary.get("labels", {}).get("model")
    return model if model in BASELINES else "meta"


def _matching(records: Sequence[Path], identity: Mapping[str, Any], seed: int, schema: int,
              not_identity: Sequence[str], trainer: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(path, summary)`` of every run summary of ``seed`` made by ``trainer`` under ``identity`` in the
    ``cells/`` of the record folders ``records``."""
    for summary in (p for r in records for p in sorted((r / "cells").glob(f"*_s{seed}.json"))):
        try:
            d = json.loads(summary.read_text())
        except (OSError, ValueError):   # being written by another job, or not a summary
            continue
        if d.get("schema") == schema and d.get("seed") == seed and trainer_of(d) == trainer and \
                Config.stored_identity(d.get("config"), not_identity) == identity:
            yield summary, d


def find_kept(records: Sequence[Path], identity: Mapping[str, Any], seed: int, schema: int,
              not_identity: Sequence[str], trainer: str = "meta") -> Optional[Path]:
    """A kept run of ``seed`` made under ``identity`` in one of the record folders ``records`` (in
    their ``cells/``), found through the summaries (small JSON files) beside the kept runs."""
    return next((kept_path(p) for p, _ in _matching(records, identity, seed, schema, not_identity, trainer)
                 if kept_path(p).exists()), None)


def find_summary(records: Sequence[Path], identity: Mapping[str, Any], seed: int, schema: int,
                 not_identity: Sequence[str], complete: Callable[[dict[str, Any]], bool],
                 trainer: str = "meta") -> Optional[tuple[Path, dict[str, Any]]]:
    """A finished summary of ``seed`` made under ``identity`` in one of ``records`` with every evaluation
    a cell asks for (``complete``): the same run, already trained and tested for another table (004
    Fig. 11's so-MAML cells are Table 6's), so nothing is trained or tested again."""
    return next(((p, d) for p, d in _matching(records, identity, seed, schema, not_identity, trainer)
                 if complete(d)), None)


def find_training(records: Sequence[Path], identity: Mapping[str, Any], seed: int,
                  not_identity: Sequence[str]) -> Optional[Path]:
    """The resume point (``cells/CELL_sSEEDS.partial.pt``) of a run of ``seed`` under ``identity`` in
    training in one of ``records``: the same run, cut off while another record trained it. That record
    continues it and this one tests it when it is done, rather than training a second copy (a
    checkpoint's ``key`` names its config and seeds; read with ``mmap``, its tensors stay on disk)."""
    import torch
    for part in (p for r in records for p in sorted((r / "cells").glob("*.partial.pt"))):
        try:
            key = torch.load(part, map_location="cpu", weights_only=False, mmap=True).get("key", {})
        except Exception:   # being written, or damaged: its own record says so
            continue
        if seed in key.get("seeds", ()) and Config.stored_identity(key.get("config"), not_identity) == identity:
            return part
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
