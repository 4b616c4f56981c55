"""Engine checkpoints as safetensors + JSON (no pickle anywhere).

A checkpoint is a folder with two files:

* ``engine.safetensors``: the weights (``param/<name>``), every tensor of the optimizer state
  (``optimizer/<param index>/<key>``, dtype kept, e.g. Adam's float32 ``step``), a copy of the engine
  step (``engine/step``, int64) and the caller's ``extra/<key>`` tensors.
* ``engine.json``: ``format``, ``step``, ``config`` (seed, layout), the sigma-controller state, the
  optimizer's ``param_groups`` and non-tensor state values, and the caller's ``extra`` JSON.

Because the noise is a function of ``(seed, step // noise_reuse, pair, parameter)`` and sigma and the
optimizer state are restored exactly, resuming gives bit-identical weights to an uninterrupted run.
Loading checks the JSON ``step`` against ``engine/step`` and then (``EggrollES.load_state_dict``) against
every other counter (optimizer ``step``, adaptive sigma ``observed``): an edited counter raises
:class:`~eggroll_ndcg.es.engine.StateMismatchError` naming the field, before anything is restored.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .engine import EggrollES, StateMismatchError

TENSORS_FILE = "engine.safetensors"
JSON_FILE = "engine.json"
STEP_TENSOR = "engine/step"


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in the JSON part of a checkpoint")


def save_checkpoint(
    path: str | Path,
    engine: EggrollES,
    extra_tensors: dict[str, Tensor] | None = None,
    extra_json: dict | None = None,
) -> Path:
    """Write the engine's weights and state (and extras) to the folder ``path``; returns the folder."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = engine.state_dict()
    tensors: dict[str, Tensor] = {}
    for name, p in engine.params.items():
        tensors[f"param/{name}"] = p.detach().cpu().contiguous().clone()
    scalars: dict[str, dict] = {}
    for index, entries in state["optimizer"]["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = _jsonable(value)
    tensors[STEP_TENSOR] = torch.tensor(state["step"], dtype=torch.int64)
    for key, value in (extra_tensors or {}).items():
        tensors[f"extra/{key}"] = value.detach().cpu().contiguous().clone()
    meta = {
        "format": state["format"],
        "step": state["step"],
        "config": state["config"],
        "sigma": _jsonable(state["sigma"]),
        "optimizer": {"param_groups": _jsonable(state["optimizer"]["param_groups"]), "scalars": scalars},
        "extra": _jsonable(extra_json or {}),
    }
    save_file(tensors, str(folder / TENSORS_FILE))
    (folder / JSON_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


def _check_step_copy(meta: dict, tensors: dict[str, Tensor]) -> None:
    """``engine.json``'s ``step`` must equal ``engine.safetensors``' ``engine/step`` (when the file has one:
    checkpoints written before it existed do not)."""
    if STEP_TENSOR in tensors and meta["step"] != int(tensors[STEP_TENSOR]):
        raise StateMismatchError(
            "step", f"{JSON_FILE} says {meta['step']!r} but {TENSORS_FILE} says {int(tensors[STEP_TENSOR])}"
        )


def load_checkpoint(path: str | Path, engine: EggrollES) -> tuple[dict[str, Tensor], dict]:
    """Restore weights (in place) and engine state from ``path``; returns ``(extra_tensors, extra_json)``."""
    folder = Path(path)
    meta = json.loads((folder / JSON_FILE).read_text())
    tensors = load_file(str(folder / TENSORS_FILE))
    _check_step_copy(meta, tensors)
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            opt_state.setdefault(int(index), {})[name] = value
    for index, entries in meta["optimizer"]["scalars"].items():
        opt_state.setdefault(int(index), {}).update(entries)
    state = {
        "format": meta["format"],
        "step": meta["step"],
        "config": meta["config"],
        "sigma": meta["sigma"],
        "optimizer": {"state": opt_state, "param_groups": meta["optimizer"]["param_groups"]},
    }
    missing = [name for name in engine.params if f"param/{name}" not in tensors]
    if missing:
        raise ValueError(f"checkpoint {folder} lacks weights for {missing}")
    engine.load_state_dict(state)
    with torch.no_grad():
        for name, p in engine.params.items():
            p.copy_(tensors[f"param/{name}"])
    extra = {key[len("extra/") :]: value for key, value in tensors.items() if key.startswith("extra/")}
    return extra, meta["extra"]
