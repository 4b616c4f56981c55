"""Training checkpoints: nested state (tensors, numbers, strings, lists, dicts) as safetensors + JSON.

A checkpoint is a folder with `tensors.safetensors` and `state.json`. Tensors are stored under their path in
the nested state ("method/optimizer/state/0/exp_avg"); everything else goes to JSON with a marker where a
tensor was. Writing goes to a temporary folder (`checkpoint.tmp/`) that replaces the old one: the old folder is
renamed to `checkpoint.old/`, the new one into place, then the old one is removed, so a run killed at any point
leaves a complete checkpoint (`checkpoint/`, or `checkpoint.old/` between the two renames, which
`RunFolder.load_resumable` uses). Nothing is unpickled.

Integrity: `state.json` is sealed JSON (`atomic.sealed_json_bytes`: it carries the sha256 of its own
canonical content, and the reader checks that its bytes are exactly those written) and records the sha256 of
`tensors.safetensors` under "files". `load_checkpoint` checks both before using anything and raises
`CheckpointError` naming the file on a mismatch. A checkpoint written before hashes were recorded (format
`eggroll-ndcg-checkpoint/1`, no seal) still loads, with a warning that it is unverified.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .. import atomic

log = logging.getLogger(__name__)

_TENSOR = "__tensor__"
FORMAT = "eggroll-ndcg-checkpoint/2"          # sealed state.json with the sha256 of tensors.safetensors
UNVERIFIED_FORMAT = "eggroll-ndcg-checkpoint/1"  # before hashes: loads with a warning
TENSORS, STATE = "tensors.safetensors", "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or inconsistent."""


def _flatten(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {_TENSOR: path}
    if isinstance(value, dict):
        if not all(isinstance(key, (str, int)) for key in value):
            raise TypeError(f"checkpoint keys must be str or int at {path!r}")
        return {"__dict__": [[key, _flatten(item, f"{path}/{key}", tensors)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_flatten(item, f"{path}/{index}", tensors) for index, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot checkpoint a {type(value).__name__} at {path!r}")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor], source: Path) -> Any:
    if isinstance(value, dict) and _TENSOR in value:
        try:
            return tensors[value[_TENSOR]]
        except KeyError:
            raise CheckpointError(f"{source}: tensor {value[_TENSOR]!r} is missing from tensors.safetensors") from None
    if isinstance(value, dict) and "__dict__" in value:
        return {key: _unflatten(item, tensors, source) for key, item in value["__dict__"]}
    if isinstance(value, list):
        return [_unflatten(item, tensors, source) for item in value]
    return value


def _write_staged(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    atomic.fault_point("write", path)


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `folder` atomically (the folder is replaced as a whole)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "", tensors)
    tensor_bytes = save_safetensors(tensors)
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    _write_staged(staging / TENSORS, tensor_bytes)
    _write_staged(staging / STATE, atomic.sealed_json_bytes(
        {"format": FORMAT, "files": {TENSORS: atomic.sha256_bytes(tensor_bytes)}, "state": structure}))
    old = folder.with_name(folder.name + ".old")
    if folder.exists():  # else a kill left only checkpoint.old/: keep it until the new one is in place
        shutil.rmtree(old, ignore_errors=True)
        atomic.replace(folder, old)
    atomic.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


def _damaged(path: Path, folder: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: {what}; the checkpoint was changed or damaged (delete {folder} to start over)")


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, checking the seal of state.json and the sha256 of
    tensors.safetensors; raises `CheckpointError` naming the file on damage."""
    folder = Path(folder)
    meta_path, tensor_path = folder / STATE, folder / TENSORS
    for path in (meta_path, tensor_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; the checkpoint is incomplete (delete {folder} to start over)")
    try:
        meta, sealed = atomic.parse_sealed_json(meta_path.read_bytes(), require=False)
    except atomic.SealError as error:
        raise _damaged(meta_path, folder, str(error)) from None
    tensor_bytes = tensor_path.read_bytes()
    if sealed:
        expected = meta.get("files", {}).get(TENSORS) if isinstance(meta.get("files"), dict) else None
        if meta.get("format") != FORMAT or not isinstance(expected, str):
            raise CheckpointError(f"{meta_path}: not an {FORMAT} checkpoint")
        if atomic.sha256_bytes(tensor_bytes) != expected:
            raise _damaged(tensor_path, folder, f"its sha256 differs from the one recorded in {STATE}")
    elif meta.get("format") == UNVERIFIED_FORMAT:
        log.warning("%s: written before checkpoints recorded hashes (%s); loading it unverified",
                    meta_path, UNVERIFIED_FORMAT)
    else:
        raise CheckpointError(f"{meta_path}: not an {FORMAT} checkpoint")
    if "state" not in meta:
        raise _damaged(meta_path, folder, "no 'state'")
    try:
        tensors = load_safetensors(tensor_bytes)
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{tensor_path}: corrupt or truncated ({error}); delete {folder} to start over") from error
    return _unflatten(meta["state"], tensors, folder)
