"""The run folder: every file a training run writes, and the resume rules.

Files: config.json, splits.json, log.jsonl (a JSON line per step and per evaluation), checkpoint/ (the
latest full state), best_head.safetensors, test_run.trec, test_per_query.json and metrics.json. Every file
is written atomically (temporary name, then rename), and metrics.json is written last: it marks a complete
run. `RunFolder(None)` is a run without a folder: every write is skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..atomic import write_atomic, write_json_atomic, write_text_atomic
from ..data.splits import QuerySplits
from ..metrics.trec import write_run
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig

log = logging.getLogger(__name__)


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

    def load_resumable(self, config: TrainConfig) -> dict[str, Any] | None:
        """The saved state to resume from, or None for a fresh run. A checkpoint left between its two renames
        (`checkpoint/` gone, a complete `checkpoint.old/` present) is used. Raises `ConfigError` naming the
        differing fields when the checkpoint was written by a config with other results."""
        folder = self.checkpoint_dir
        if folder is None:
            return None
        old = folder.with_name(folder.name + ".old")
        if not folder.exists() and old.is_dir():
            log.warning("%s is missing; resuming from the complete previous checkpoint %s", folder, old)
            folder = old
        if not folder.exists():
            return None
        saved = load_checkpoint(folder)
        differ = differing_fields(saved["config"], config)
        if differ:
            raise ConfigError(f"{folder}: written by a config that differs in {', '.join(differ)}; "
                              "use another output_dir or the same settings")
        return saved

    def start(self, config: TrainConfig, splits: QuerySplits) -> None:
        """Create the folder and write config.json and splits.json (after a resume was found allowed)."""
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / "config.json", config.to_json())
        write_text_atomic(self.path / "splits.json", splits.to_json() + "\n")

    # -- the log -----------------------------------------------------------------------------------------
    def append_log(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path / "log.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

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
        """best_head.safetensors, test_run.trec and test_per_query.json, then metrics.json (the marker)."""
        if self.path is None:
            return
        tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        write_atomic(self.path / "best_head.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        write_atomic(self.path / "test_run.trec", lambda tmp: write_run(run, tmp, tag=tag))
        write_json_atomic(self.path / "test_per_query.json", per_query)
        write_json_atomic(self.path / "metrics.json", metrics)
