"""Training checkpoints: nested state (tensors, numbers, strings, lists, dicts) as safetensors + JSON.

A checkpoint is a folder with `tensors.safetensors` and `state.json`. Tensors are stored under their path in
the nested state ("method/optimizer/state/0/exp_avg"); everything else goes to JSON with a marker where a
tensor was. Writing goes to a temporary folder that replaces the old one in a single rename, so a run killed
mid-write leaves the previous checkpoint intact. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_TENSOR = "__tensor__"
FORMAT = "eggroll-ndcg-checkpoint/1"


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


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `folder` atomically (the folder is replaced as a whole)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "", tensors)
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_file(tensors, str(staging / "tensors.safetensors"))
    (staging / "state.json").write_text(json.dumps({"format": FORMAT, "state": structure}), encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; raises `CheckpointError` naming the file on damage."""
    folder = Path(folder)
    meta_path, tensor_path = folder / "state.json", folder / "tensors.safetensors"
    for path in (meta_path, tensor_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; the checkpoint is incomplete (delete {folder} to start over)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_path}: corrupt JSON ({error}); delete {folder} to start over") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not an {FORMAT} checkpoint")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{tensor_path}: corrupt or truncated ({error}); delete {folder} to start over") from error
    return _unflatten(meta["state"], tensors, folder)
