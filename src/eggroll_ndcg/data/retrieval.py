"""Top-k retrieval by inner product: exact chunked matmul for small corpora, FAISS for large ones.

Tie rule (the trec_eval convention): among equal scores, the document with the larger id in byte order
ranks first. Pass `doc_ids` to get it; without them, ties go to the lower corpus index.
The exact path is deterministic: it scores a chunk of queries against every document with one matmul and
takes a *stable* descending sort over the documents laid out in tie order.
"""

from __future__ import annotations

import logging
from typing import Literal, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

Method = Literal["auto", "exact", "faiss"]
EXACT_MAX_DOCS = 200_000          # "auto" uses exact top-k up to this many documents, FAISS above
_MAX_CHUNK_ELEMENTS = 1 << 24     # score-matrix entries per query chunk in the exact path (64 MiB float32)


def tie_order(doc_ids: Sequence[str]) -> np.ndarray:
    """Permutation [D] of corpus indices sorted by doc id descending (UTF-8 byte order = code point order)."""
    return np.array(sorted(range(len(doc_ids)), key=doc_ids.__getitem__, reverse=True), dtype=np.int64)


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def retrieve(
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    k: int,
    *,
    doc_ids: Sequence[str] | None = None,
    method: Method = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` documents by inner product for each query.

    Args:
        query_emb: [Q, d] (torch or numpy, any device).
        doc_emb: [D, d].
        k: number of results, clipped to D.
        doc_ids: the corpus ids [D]; when given, score ties rank the larger id first (trec_eval's order).
        method: "exact" (chunked matmul), "faiss" (IndexFlatIP on CPU) or "auto" (exact up to EXACT_MAX_DOCS).
        chunk_size: queries per matmul in the exact path (default: keeps a chunk's scores near 64 MiB).

    Returns:
        scores [Q, k] float32 and indices [Q, k] int64 (into doc_emb), best first, on query_emb's device
        (CPU for FAISS).
    """
    query_emb, doc_emb = _as_tensor(query_emb), _as_tensor(doc_emb)
    n_docs = doc_emb.shape[0]
    k = min(int(k), n_docs)
    if method == "auto":
        method = "exact" if n_docs <= EXACT_MAX_DOCS else "faiss"
    order = torch.from_numpy(tie_order(doc_ids)) if doc_ids is not None else None
    if doc_ids is not None and len(doc_ids) != n_docs:
        raise ValueError(f"{len(doc_ids)} doc ids for {n_docs} document embeddings")
    if method == "exact":
        return _exact(query_emb, doc_emb, k, order, chunk_size)
    if method == "faiss":
        return _faiss(query_emb, doc_emb, k, order)
    raise ValueError(f"unknown retrieval method {method!r}")


def _exact(query_emb, doc_emb, k, order, chunk_size):
    device = query_emb.device
    docs = doc_emb.to(device=device, dtype=torch.float32)
    if order is not None:
        order = order.to(device)
        docs = docs[order]
    chunk = chunk_size or max(1, _MAX_CHUNK_ELEMENTS // max(1, docs.shape[0]))
    all_scores, all_indices = [], []
    for start in range(0, query_emb.shape[0], chunk):
        scores = query_emb[start : start + chunk].to(torch.float32) @ docs.T            # [q, D]
        values, positions = torch.sort(scores, dim=1, descending=True, stable=True)
        values, positions = values[:, :k], positions[:, :k]
        all_scores.append(values)
        all_indices.append(order[positions] if order is not None else positions)
    if not all_scores:
        return torch.zeros(0, k, device=device), torch.zeros(0, k, dtype=torch.long, device=device)
    return torch.cat(all_scores), torch.cat(all_indices)


def _faiss(query_emb, doc_emb, k, order):
    import faiss

    docs = doc_emb.detach().to("cpu", torch.float32)
    if order is not None:
        docs = docs[order]
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs.numpy()))
    queries = np.ascontiguousarray(query_emb.detach().to("cpu", torch.float32).numpy())
    scores, positions = index.search(queries, k)
    scores, positions = torch.from_numpy(scores), torch.from_numpy(positions).long()
    # FAISS leaves the order of equal scores open: restore the tie rule (lower tie-order position first).
    key = torch.where(positions < 0, torch.iinfo(torch.long).max, positions)
    secondary = torch.argsort(key, dim=1, stable=True)
    scores, positions = scores.gather(1, secondary), positions.gather(1, secondary)
    primary = torch.argsort(scores, dim=1, descending=True, stable=True)
    scores, positions = scores.gather(1, primary), positions.gather(1, primary)
    if order is not None:
        positions = torch.where(positions >= 0, order[positions.clamp(min=0)], positions)
    return scores, positions


def to_run(
    query_ids: Sequence[str], doc_ids: Sequence[str], scores: torch.Tensor, indices: torch.Tensor
) -> dict[str, dict[str, float]]:
    """A TREC run {qid: {doc_id: score}} from `retrieve` output ([Q, k] each); index -1 is skipped."""
    scores = _as_tensor(scores).detach().cpu().tolist()
    indices = _as_tensor(indices).detach().cpu().tolist()
    if len(query_ids) != len(indices):
        raise ValueError(f"{len(query_ids)} query ids for {len(indices)} result rows")
    return {
        qid: {doc_ids[i]: float(s) for s, i in zip(row_scores, row_indices) if i >= 0}
        for qid, row_scores, row_indices in zip(query_ids, scores, indices)
    }
