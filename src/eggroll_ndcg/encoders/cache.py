"""Content-addressed embedding cache.

Key = sha256(format version, encoder.identity, kind, number of texts, every text). One entry is
`<cache_dir>/<key[:2]>/<key>.safetensors`: the float32 matrix [n, dim] under the tensor name "embeddings", with
metadata (key, shape, sha256 of the matrix bytes) in the safetensors header. A `<key>.json` beside it repeats
the metadata for people (encoder name, kind, seconds to encode); it is never needed to read the entry.

Safety: no pickle anywhere; writes go to a temp file in the same folder, are fsynced, then `os.replace`d, so a
reader sees either no entry or a whole one. An entry whose header, shape, key or checksum does not match
(corrupt, truncated, hand-edited) is never used: a warning is issued and it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .base import Encoder, Progress, check_kind
from .progress import collection_label

FORMAT_VERSION = "eggroll-ndcg-embeddings-v1"
TENSOR_NAME = "embeddings"


class CacheCorruptionWarning(UserWarning):
    """A cache entry failed validation and is being rebuilt."""


def default_cache_dir() -> Path:
    """$EGGROLL_NDCG_CACHE, else ~/.cache/eggroll-ndcg."""
    configured = os.environ.get("EGGROLL_NDCG_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "eggroll-ndcg"


def cache_key(encoder: Encoder, texts: Sequence[str], *, kind: str) -> str:
    """sha256 hex over the format version, encoder identity, kind and all texts (length-prefixed, in order)."""
    check_kind(kind)
    digest = hashlib.sha256()
    header = {"format": FORMAT_VERSION, "encoder": encoder.identity, "kind": kind, "n": len(texts)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cache_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The safetensors file of cache entry `key`."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / key[:2] / f"{key}.safetensors"


def _checksum(matrix: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(matrix, dtype=np.float32).tobytes()).hexdigest()


def read_entry(path: Path, *, key: str, n: int, dim: int) -> np.ndarray:
    """Load and validate one entry -> float32 [n, dim]. Raises ValueError (with the reason) if it is not valid."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            if TENSOR_NAME not in handle.keys():
                raise ValueError(f"no tensor {TENSOR_NAME!r}")
            matrix = handle.get_tensor(TENSOR_NAME)
    except ValueError:
        raise
    except Exception as error:  # safetensors raises its own error types for a bad header or short file
        raise ValueError(f"unreadable safetensors file ({type(error).__name__}: {error})") from error
    if metadata.get("format") != FORMAT_VERSION or metadata.get("key") != key:
        raise ValueError("metadata does not name this key")
    if matrix.dtype != np.float32 or matrix.shape != (n, dim) or metadata.get("shape") != f"{n},{dim}":
        raise ValueError(f"shape/dtype {matrix.shape} {matrix.dtype}, expected ({n}, {dim}) float32")
    if _checksum(matrix) != metadata.get("sha256"):
        raise ValueError("checksum mismatch")
    return matrix


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_entry(path: Path, matrix: np.ndarray, *, key: str, info: dict | None = None) -> None:
    """Atomically write one entry (safetensors with metadata) and its human-readable JSON sidecar."""
    from safetensors.numpy import save

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    metadata = {
        "format": FORMAT_VERSION,
        "key": key,
        "shape": f"{matrix.shape[0]},{matrix.shape[1]}",
        "sha256": _checksum(matrix),
    }
    _atomic_write_bytes(path, save({TENSOR_NAME: matrix}, metadata=metadata))
    sidecar = {**metadata, **(info or {})}
    _atomic_write_bytes(path.with_suffix(".json"), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())


def encode_cached(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    kind: str,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: Progress = True,
) -> torch.Tensor:
    """Embeddings of `texts` -> float32 tensor [n, dim] (CPU), from the cache when a valid entry exists.

    The key covers the encoder identity (weights + settings), `kind` and every text in order; `batch_size`
    and `progress` (True, False or the bar's label) do not change the key. A corrupt or truncated entry warns (CacheCorruptionWarning) and is
    re-encoded and rewritten.
    """
    texts = list(texts)
    key = cache_key(encoder, texts, kind=kind)
    path = cache_path(key, cache_dir)
    if path.exists():
        try:
            return torch.from_numpy(read_entry(path, key=key, n=len(texts), dim=encoder.dim))
        except ValueError as error:
            warnings.warn(f"embedding cache entry {path} is invalid ({error}); rebuilding it", CacheCorruptionWarning,
                          stacklevel=2)
    start = time.perf_counter()
    matrix = np.asarray(encoder.encode(texts, kind=kind, batch_size=batch_size, progress=progress), dtype=np.float32)
    seconds = time.perf_counter() - start
    if matrix.shape != (len(texts), encoder.dim):
        raise ValueError(f"{encoder.name} returned shape {matrix.shape}, expected ({len(texts)}, {encoder.dim})")
    write_entry(path, matrix, key=key, info={
        "encoder": encoder.name, "identity": encoder.identity, "kind": kind, "seconds": round(seconds, 3),
    })
    return torch.from_numpy(matrix)


@dataclass(frozen=True)
class CollectionEmbeddings:
    """A collection's embeddings in the canonical order, so that every caller hits the same cache entries.

    doc_emb: [D, dim] in `collection.doc_ids` order.
    query_ids: the labelled queries (those with judgments), in `collection.query_texts` order.
    query_emb: [Q, dim], aligned with `query_ids`.
    """

    doc_emb: torch.Tensor
    query_ids: tuple[str, ...]
    query_emb: torch.Tensor
    doc_cache_file: Path
    query_cache_file: Path


def encode_collection(
    encoder: Encoder, collection, *, cache_dir: str | os.PathLike | None = None, batch_size: int = 64,
    progress: bool = True,
) -> CollectionEmbeddings:
    """Encode (cached) all documents and all labelled queries of a `Collection`.

    With `progress`, the bars say what they count: "<collection.name>: documents", "<collection.name>: queries".
    """
    doc_texts = list(collection.doc_texts)
    query_ids = tuple(qid for qid in collection.query_texts if qid in collection.judgments)
    query_texts = [collection.query_texts[qid] for qid in query_ids]
    name = getattr(collection, "name", None)
    doc_emb = encode_cached(encoder, doc_texts, kind="document", cache_dir=cache_dir, batch_size=batch_size,
                            progress=progress and collection_label(name, "document"))
    query_emb = encode_cached(encoder, query_texts, kind="query", cache_dir=cache_dir, batch_size=batch_size,
                              progress=progress and collection_label(name, "query"))
    return CollectionEmbeddings(
        doc_emb=doc_emb, query_ids=query_ids, query_emb=query_emb,
        doc_cache_file=cache_path(cache_key(encoder, doc_texts, kind="document"), cache_dir),
        query_cache_file=cache_path(cache_key(encoder, query_texts, kind="query"), cache_dir),
    )
