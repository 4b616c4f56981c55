"""The run folder: every file a training run writes, the integrity manifest, and the resume rules.

Files: config.json, splits.json, log.jsonl (a JSON line per step and per evaluation), checkpoint/ (the
latest full state), best_head.safetensors, test_run.trec.gz (the top `run_depth` documents per test query,
a gzip-compressed TREC run: `zcat`, ir_measures and `metrics.read_run` read it), test_per_query.json,
metrics.json and manifest.json. Every file but the log is written atomically (temporary name, then rename), and metrics.json
is the last output renamed into place: it marks a complete run. `RunFolder(None)` is a run without a folder:
every write is skipped.

Integrity. `manifest.json` records the sha256 of every artifact of the folder (config.json, splits.json,
best_head.safetensors, test_run.trec.gz, test_per_query.json, metrics.json) as
`{"format": "eggroll-ndcg-run/1", "files": {NAME: [SHA256, ...]}, "sha256": SEAL}`; it is sealed JSON
(`atomic.sealed_json_bytes`), so a change to the manifest itself is detected too. The checkpoint carries its
own hashes (`train.checkpoint`: a sealed state.json holding the sha256 of tensors.safetensors). log.jsonl is
not hashed: it is an append-only diagnostic record that a resume rewrites up to its checkpoint.

A group of files is committed in four moves, so that the manifest matches the folder after a kill at any
point: (1) each file is written under its temporary name, (2) the manifest is rewritten listing for each file
both its current digest and the new one, (3) the files are renamed into place in order, (4) the manifest is
rewritten with only the new digests. A file whose bytes would not change is left alone. Checks accept any
digest listed for a file.

Verification: a resume (`load_resumable`) checks the manifest, every artifact present and the checkpoint;
`load_trained_run` (used by `eval --model`) checks config.json, splits.json and best_head.safetensors and
parses them. A mismatch, a missing file or a file that does not parse is a `CheckpointError` naming the
file. A folder written before manifests existed (no manifest.json) still resumes and evaluates, with a
warning that its files are unverified; a resume writes a manifest for it (a complete run then rewrites its
outputs, so the manifest covers everything). A folder that has a manifest must list every artifact it holds.

A complete run (metrics.json present, with a manifest) is not trained again: `load_complete` verifies the
folder and returns its metrics, so its checkpoint is no longer needed (`compare` drops it with
`drop_checkpoint` to save disk). Folders written before runs were compressed hold test_run.trec, which is
still verified.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .. import atomic
from ..atomic import write_text_atomic
from ..data.splits import QuerySplits
from ..metrics.trec import write_run
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "eggroll-ndcg-run/1"
CONFIG, SPLITS, BEST_HEAD = "config.json", "splits.json", "best_head.safetensors"
TEST_RUN, TEST_PER_QUERY, METRICS = "test_run.trec.gz", "test_per_query.json", "metrics.json"
ARTIFACTS = (CONFIG, SPLITS, BEST_HEAD, TEST_RUN, TEST_PER_QUERY, METRICS)
OLD_TEST_RUN = "test_run.trec"  # the uncompressed run of folders written before test_run.trec.gz
VERIFIED = ARTIFACTS + (OLD_TEST_RUN,)  # what `verify_run_folder` checks where present


def read_manifest(folder: str | Path) -> dict[str, list[str]] | None:
    """The `files` of `folder`'s manifest.json (name -> accepted sha256 digests), None when the folder has
    none (written before manifests); `CheckpointError` when it is damaged."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        body, _ = atomic.parse_sealed_json(path.read_bytes())
    except atomic.SealError as error:
        raise CheckpointError(f"{path}: {error}; the run folder's manifest was changed or damaged") from None
    files = body.get("files")
    if body.get("format") != MANIFEST_FORMAT or not isinstance(files, dict) or not all(
            isinstance(v, list) and all(isinstance(d, str) for d in v) for v in files.values()):
        raise CheckpointError(f"{path}: not an {MANIFEST_FORMAT} manifest")
    return files


def read_verified(folder: str | Path, name: str, manifest: dict[str, list[str]] | None) -> bytes:
    """The bytes of `folder/name`, checked against `manifest` (None: unverified). `CheckpointError` when the
    file is missing, not listed, or its sha256 is not the recorded one."""
    path = Path(folder) / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing from the run folder") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: a folder where the run's file should be") from None
    if manifest is not None:
        recorded = manifest.get(name)
        if recorded is None:
            raise CheckpointError(f"{path}: not recorded in {Path(folder) / MANIFEST}; the file was added or "
                                  "the manifest was changed")
        if atomic.sha256_bytes(data) not in recorded:
            raise CheckpointError(f"{path}: its sha256 differs from the one recorded in {MANIFEST}; the file was "
                                  "changed or damaged")
    return data


def verify_run_folder(folder: str | Path) -> dict[str, list[str]] | None:
    """Check the manifest and every artifact present against it (`CheckpointError` naming the file); returns
    the manifest's files, None for a folder written before manifests (with a warning). The checkpoint is
    checked by `load_checkpoint`."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        if any((folder / name).exists() for name in VERIFIED):
            _unverified_warning(folder, "its files are not verified; a resume adds one")
        return None
    for name in VERIFIED:
        if (folder / name).exists():
            read_verified(folder, name, manifest)
    return manifest


def _unverified_warning(folder: Path, what: str) -> None:
    log.warning("%s: no %s (written before run folders recorded hashes); %s", folder, MANIFEST, what)


@dataclass
class TrainedRun:
    """What `eval --model` reads from a finished run folder, verified."""

    path: Path
    config: TrainConfig
    splits: QuerySplits
    head_state: dict[str, torch.Tensor]


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: corrupt JSON ({error})") from None


RUN_IDENTITY_FIELDS = ("task", "encoder", "method", "head")


def load_trained_run(folder: str | Path) -> TrainedRun:
    """config.json, splits.json and best_head.safetensors of a run folder, each checked against the manifest
    (a folder without one loads with a warning) and parsed; one `CheckpointError` (or `ConfigError` for a
    config that no longer validates) naming the file for anything wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a run folder (no such folder)")
    manifest = read_manifest(folder)
    if manifest is None:
        _unverified_warning(folder, "its files are loaded unverified; resume it with "
                                    f"`eggroll-ndcg train --config {folder / CONFIG}` to add one")
    raw = {name: read_verified(folder, name, manifest) for name in (CONFIG, SPLITS, BEST_HEAD)}
    config_path, splits_path, head_path = folder / CONFIG, folder / SPLITS, folder / BEST_HEAD
    values = _parse_json(config_path, raw[CONFIG])
    missing = [name for name in RUN_IDENTITY_FIELDS if not isinstance(values, dict) or name not in values]
    if missing:  # a config.json written by `train` records every field; defaults must not stand in for these
        raise CheckpointError(f"{config_path}: not a training config written by `train` (no {', '.join(missing)})")
    try:
        config = TrainConfig.from_dict(values, source=str(config_path))
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{config_path}: not a training config ({error})") from None
    _parse_json(splits_path, raw[SPLITS])
    try:
        splits = QuerySplits.from_json(raw[SPLITS].decode("utf-8"))
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{splits_path}: not a splits file ({type(error).__name__}: {error})") from None
    try:
        head_state = load_safetensors(raw[BEST_HEAD])
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{head_path}: corrupt or truncated safetensors ({error})") from None
    return TrainedRun(folder, config, splits, head_state)


def differing_fields(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """The result-changing fields (`TrainConfig.result_fields`) whose values differ between a saved config
    (read through `TrainConfig`, so fields added later at their default do not count) and `config`;
    section fields are named `section.field`."""
    before, now = TrainConfig.from_dict(saved, source="saved config").result_fields(), config.result_fields()
    names = []
    for name in sorted(set(before) | set(now)):
        a, b = before.get(name), now.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            names += [f"{name}.{key}" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
        elif a != b:
            names.append(name)
    return names


class RunFolder:
    """The files of one run under `path` (None: no files)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.path / "checkpoint" if self.path is not None else None

    def _resumable_checkpoint(self) -> Path | None:
        folder = self.checkpoint_dir
        old = folder.with_name(folder.name + ".old")
        if not folder.exists() and old.is_dir():
            log.warning("%s is missing; resuming from the complete previous checkpoint %s", folder, old)
            return old
        return folder if folder.exists() else None

    def load_resumable(self, config: TrainConfig) -> dict[str, Any] | None:
        """The saved state to resume from, or None for a fresh run. A checkpoint left between its two renames
        (`checkpoint/` gone, a complete `checkpoint.old/` present) is used. The manifest, the artifacts present
        and the checkpoint are verified first (`CheckpointError` naming a damaged file). Raises `ConfigError`
        naming the differing fields when the checkpoint was written by a config with other results."""
        if self.path is None:
            return None
        folder = self._resumable_checkpoint()
        if folder is None:
            return None
        verify_run_folder(self.path)
        saved = load_checkpoint(folder)
        differ = differing_fields(saved["config"], config)
        if differ:
            raise ConfigError(f"{folder}: written by a config that differs in {', '.join(differ)}; "
                              "use another output_dir or the same settings")
        return saved

    def load_complete(self, config: TrainConfig) -> tuple[dict[str, Any], dict[str, dict[str, float]]] | None:
        """(metrics, test per-query values) of a complete run written by the same result fields, every
        artifact and the checkpoint (if kept) verified; None when the run is not complete, has no manifest, or was killed before its
        manifest's last rewrite (a resume then finishes it). `ConfigError` naming the differing fields as in
        `load_resumable`."""
        if self.path is None or not (self.path / METRICS).is_file():
            return None
        manifest = verify_run_folder(self.path)
        if manifest is None or any(len(digests) > 1 for digests in manifest.values()):
            return None
        checkpoint = self._resumable_checkpoint()
        if checkpoint is not None:  # not needed any more, but a damaged one is still reported
            load_checkpoint(checkpoint)
        saved = _parse_json(self.path / CONFIG, read_verified(self.path, CONFIG, manifest))
        differ = differing_fields(saved, config)
        if differ:
            raise ConfigError(f"{self.path / METRICS}: a complete run of a config that differs in "
                              f"{', '.join(differ)}; use another output_dir or the same settings")
        metrics = _parse_json(self.path / METRICS, read_verified(self.path, METRICS, manifest))
        per_query = _parse_json(self.path / TEST_PER_QUERY, read_verified(self.path, TEST_PER_QUERY, manifest))
        return metrics, per_query

    def drop_checkpoint(self) -> None:
        """Remove checkpoint/ (and a left-over checkpoint.old/) of a complete run; `load_complete` does not
        need them. Refused (`CheckpointError`) before metrics.json exists."""
        if self.path is None:
            return
        if not (self.path / METRICS).is_file():
            raise CheckpointError(f"{self.path}: not a complete run (no {METRICS}); its checkpoint is still needed")
        for folder in (self.checkpoint_dir, self.checkpoint_dir.with_name(self.checkpoint_dir.name + ".old")):
            shutil.rmtree(folder, ignore_errors=True)

    def start(self, config: TrainConfig, splits: QuerySplits) -> None:
        """Create the folder and write config.json and splits.json (after a resume was found allowed)."""
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self._commit({CONFIG: _text_writer(config.to_json()), SPLITS: _text_writer(splits.to_json() + "\n")})

    # -- the manifest ------------------------------------------------------------------------------------
    def _write_manifest(self, files: dict[str, list[str]]) -> None:
        atomic.write_bytes_atomic(self.path / MANIFEST, atomic.sealed_json_bytes(
            {"format": MANIFEST_FORMAT, "files": dict(sorted(files.items()))}))

    def _commit(self, writers: dict[str, Callable[[Path], None]]) -> None:
        """Write the files `writers` names (`write(temporary_path)` each), in order, with the manifest kept
        true after a kill at any point (the four moves of the module docstring)."""
        before = read_manifest(self.path) or {}
        temporaries: dict[str, Path] = {}
        try:
            for name, write in writers.items():
                temporaries[name] = atomic.write_temporary(self.path / name, write)
            pending, final, renames = dict(before), dict(before), []
            for name, temporary in temporaries.items():
                target = self.path / name
                new = atomic.sha256_file(temporary)
                current = atomic.sha256_file(target) if target.is_file() else None
                if current == new and before.get(name) == [new]:
                    continue  # the same bytes, already recorded: leave the file alone
                pending[name] = [d for d in before.get(name, []) if d == current and d != new] + [new]
                final[name] = [new]
                renames.append(name)
            if not renames:
                return
            if pending != before:
                self._write_manifest(pending)
            for name in renames:
                atomic.replace(temporaries[name], self.path / name)
            if final != pending:
                self._write_manifest(final)
        finally:
            for temporary in temporaries.values():
                temporary.unlink(missing_ok=True)

    # -- the log -----------------------------------------------------------------------------------------
    def append_log(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            atomic.append_line(self.path / "log.jsonl", json.dumps(record, sort_keys=True))

    def reset_log(self) -> None:
        if self.path is not None:
            (self.path / "log.jsonl").unlink(missing_ok=True)

    def truncate_log(self, last_step: int) -> None:
        """Keep the log lines up to `last_step` (the resumed checkpoint), so a resumed run's log reads like an
        uninterrupted one. A torn last line (a crash mid-write) is dropped with a warning; a damaged line
        elsewhere is a `CheckpointError` naming file and line."""
        if self.path is None or not (self.path / "log.jsonl").exists():
            return
        path = self.path / "log.jsonl"
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    log.warning("%s:%d: dropped a torn last line (the run was killed while writing it)", path, number)
                    continue
                raise CheckpointError(f"{path}:{number}: not a JSON line; delete the run folder to start over") from None
            if record.get("step", 0) <= last_step:
                kept.append(line)
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    # -- checkpoints and outputs -------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, state)

    def write_outputs(self, head: torch.nn.Module, run: dict[str, dict[str, float]], *, tag: str,
                      per_query: dict[str, dict[str, float]], metrics: dict[str, Any]) -> None:
        """best_head.safetensors, test_run.trec.gz and test_per_query.json, then metrics.json (the marker), all
        recorded in the manifest."""
        if self.path is None:
            return
        tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        self._commit({
            BEST_HEAD: _bytes_writer(save_safetensors(tensors)),
            TEST_RUN: lambda tmp: write_run(run, tmp, tag=tag, compress=True),
            TEST_PER_QUERY: _bytes_writer(atomic.json_bytes(per_query)),
            METRICS: _bytes_writer(atomic.json_bytes(metrics)),
        })


def _bytes_writer(data: bytes) -> Callable[[Path], None]:
    return lambda tmp: tmp.write_bytes(data)


def _text_writer(text: str) -> Callable[[Path], None]:
    return _bytes_writer(text.encode("utf-8"))


KEPT_DIR = "checkpoints"  # `keep_checkpoints`: the head at every evaluation step, recorded in the manifest


def kept_head_name(step: int) -> str:
    """The manifest name of the head kept at `step`: "checkpoints/step-000025.safetensors"."""
    return f"{KEPT_DIR}/step-{step:06d}.safetensors"


def keep_head(folder: RunFolder, step: int, head: torch.nn.Module) -> None:
    """Keep a compact copy of `head`'s state (safetensors, a few hundred KB for a linear head) under
    `kept_head_name(step)`, hashed in the manifest like every artifact (`RunFolder._commit`; a no-op for a
    folder that does not write). A resumed run rewrites the same bytes, which the commit leaves alone."""
    if folder.path is None:
        return
    data = save_safetensors({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()})

    def write(tmp: Path) -> None:
        tmp.parent.mkdir(exist_ok=True)
        tmp.write_bytes(data)

    folder._commit({kept_head_name(step): write})
