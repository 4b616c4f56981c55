"""Finished run folders as the analysis reads them: the config, the best head, the base head and the heads
kept at the evaluation steps (`keep_checkpoints`), every file checked against the run's manifest.

A run is read through `train.run_folder.load_trained_run` (config.json, splits.json, best_head.safetensors),
plus metrics.json (the marker of a complete run) and checkpoints/step-NNNNNN.safetensors. The data a run was
trained on is rebuilt with `train.prepare.prepare_data` from its own config (the embedding cache serves it)
and shared between runs that agree on `prepare.data_key`; its splits must be those of the run's splits.json.
The base head W0 is the kept step-0 head when there is one, otherwise the config's head built afresh (exact
for the linear, subspace and adapter heads, which start at the zero-shot encoder deterministically).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from ..data.splits import QuerySplits
from ..train.checkpoint import CheckpointError
from ..train.config import TrainConfig
from ..train.prepare import EncodedCollection, PreparedData, data_key, prepare_data
from ..train.config import ConfigError
from ..train.methods import METHODS
from ..train.run_folder import (BEST_HEAD, CONFIG, KEPT_DIR, METRICS, SPLITS, TrainedRun, load_trained_run,
                                 read_manifest, read_verified)
from ..train.trainer import make_head

log = logging.getLogger(__name__)
KEPT_NAME = re.compile(r"^step-(\d{6})\.safetensors$")
State = dict[str, torch.Tensor]


@dataclass
class Run:
    """One finished run: `best` the selected head's state, `base` W0's, `kept` {step: state} (may be empty)."""

    path: Path
    label: str
    config: TrainConfig
    metrics: dict[str, Any]
    splits: QuerySplits
    best: State
    base: State
    kept: dict[int, State] = field(default_factory=dict)
    data: PreparedData | None = None
    solution_step: int | None = None  # the step of `best`: metrics.json's best_step, or the last kept step


    def head(self, state: State) -> nn.Module:
        """A fresh head of this run's kind (on the data's device) holding `state`."""
        module = make_head(self.config, self.data.doc_emb)
        module.load_state_dict({k: v.to(self.data.doc_emb.device) for k, v in state.items()})
        return module

    @property
    def param_names(self) -> tuple[str, ...]:
        """The learned parameters (the head's buffers, such as a frozen basis, are not)."""
        return tuple(name for name, _ in make_head(self.config, self.data.doc_emb[:2]).named_parameters())


def _load_state(folder: Path, name: str, manifest: dict[str, list[str]] | None) -> State:
    raw = read_verified(folder, name, manifest)
    try:
        return load_safetensors(raw)
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{folder / name}: corrupt or truncated safetensors ({error})") from None


def kept_states(folder: Path) -> dict[int, State]:
    """{step: head state} of checkpoints/ (verified against the manifest); {} without kept checkpoints."""
    kept_dir = folder / KEPT_DIR
    if not kept_dir.is_dir():
        return {}
    manifest = read_manifest(folder)
    states = {}
    for path in sorted(kept_dir.iterdir()):
        match = KEPT_NAME.match(path.name)
        if match:
            states[int(match.group(1))] = _load_state(folder, f"{KEPT_DIR}/{path.name}", manifest)
    return states


def _without_foreign_sections(folder: Path, error: ConfigError) -> TrainedRun:
    """`load_trained_run` for a config.json whose sections of *other* methods no longer load (a method
    renamed a field after the run was written): those sections cannot change the run's numbers
    (`TrainConfig.result_fields`), so they are dropped, with a warning; anything else re-raises `error`."""
    manifest = read_manifest(folder)
    values = json.loads(read_verified(folder, CONFIG, manifest).decode("utf-8"))
    method = values.get("method") if isinstance(values, dict) else None
    if method not in METHODS:
        raise error
    own = set(METHODS.get(method).sections)
    kept = {k: v for k, v in values.items() if not (isinstance(v, dict) and k not in own)}
    try:
        config = TrainConfig.from_dict(kept, source=str(folder / CONFIG))
    except ConfigError:
        raise error from None
    log.warning("%s; read without the sections %s that method %s does not use", error,
                ", ".join(sorted(set(values) - set(kept))), method)
    splits = QuerySplits.from_json(read_verified(folder, SPLITS, manifest).decode("utf-8"))
    return TrainedRun(folder, config, splits, _load_state(folder, BEST_HEAD, manifest))


def read_run(folder: str | Path) -> Run:
    """The verified files of a complete run folder (data not attached yet: see `attach_data`); a
    `CheckpointError` naming the file for a folder that is not a complete run."""
    folder = Path(folder)
    try:
        trained = load_trained_run(folder)
    except ConfigError as error:
        trained = _without_foreign_sections(folder, error)
    manifest = read_manifest(folder)
    metrics_path = folder / METRICS
    if not metrics_path.is_file():
        raise CheckpointError(f"{metrics_path}: missing; the run did not finish (resume it with `eggroll-ndcg "
                              f"train --config {folder / 'config.json'}`)")
    try:
        metrics = json.loads(read_verified(folder, METRICS, manifest).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{metrics_path}: corrupt JSON ({error})") from None
    if not isinstance(metrics, dict) or "val/ndcg@10" not in metrics:
        raise CheckpointError(f"{metrics_path}: not the metrics of a finished run (no val/ndcg@10)")
    kept = kept_states(folder)
    config = trained.config
    return Run(path=folder, label=f"{config.method}-seed{config.seed}", config=config, metrics=metrics,
               splits=trained.splits, best=trained.head_state, base=kept.get(0, {}), kept=kept,
               solution_step=metrics.get("best_step"))


def use_last_kept(run: Run) -> None:
    """Make the last kept checkpoint the run's analysed solution (`AnalysisOptions.solution = "last"`); a
    ConfigError naming the folder when the run kept none."""
    if not run.kept:
        raise ConfigError(f"{run.path}: no kept checkpoints to take the last head from (train it with "
                          "--keep-checkpoints)")
    run.solution_step = max(run.kept)
    run.best = run.kept[run.solution_step]


def attach_data(runs: list[Run], *, device: str = "cpu", progress: bool = False,
                encoded: EncodedCollection | None = None) -> None:
    """Rebuild each run's `PreparedData` (shared by runs with the same `data_key`; `encoded`: embeddings made
    elsewhere, as `prepare_data` takes them), check its splits against the run's splits.json and its head
    shapes, and fill in the base head when no step-0 head was kept."""
    cache: dict[tuple, PreparedData] = {}
    for run in runs:
        config = run.config.replace(device=device, output_dir=None)
        key = data_key(config)
        if key not in cache:
            cache[key] = prepare_data(config, encoded=encoded, progress=progress)
        run.data = cache[key]
        if any(tuple(getattr(run.data.splits, s)) != tuple(getattr(run.splits, s)) for s in ("train", "val", "test")):
            raise CheckpointError(f"{run.path / 'splits.json'}: the splits rebuilt from config.json differ from "
                                  "the run's; the collection changed since the run was trained")
        fresh = make_head(run.config, run.data.doc_emb)
        expected = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
        if {k: tuple(v.shape) for k, v in run.best.items()} != expected:
            raise CheckpointError(f"{run.path / 'best_head.safetensors'}: its shapes do not fit the run's "
                                  f"{run.config.head!r} head on {run.config.encoder!r} embeddings")
        if not run.base:
            run.base = {k: v.detach().cpu().clone() for k, v in fresh.state_dict().items()}


def unique_labels(runs: list[Run]) -> None:
    """Make run labels unique (method-seedN, then the folder name when two runs share one)."""
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
    for run in runs:
        if seen[run.label] > 1:
            run.label = f"{run.label}({run.path.name})"
