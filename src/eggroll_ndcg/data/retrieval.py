"""Top-k retrieval by inner product: exact chunked matmul for small corpora, FAISS for large ones.

Tie rule (the trec_eval convention): among equal scores, the document with the larger id in byte order
ranks first. Pass `doc_ids` to get it; without them, ties go to the lower corpus index.
The exact path is deterministic: it scores a chunk of queries against every document with one matmul and
takes a *stable* descending sort over the documents laid out in tie order.

Identical ids (BEIR's and MTEB's `ignore_identical_ids`, on by default): when `query_ids` are given, the
document whose id equals the query's id is left out of that query's ranking (in ArguAna or Quora the query is
itself a corpus document, and finding itself is no retrieval). The k results are the best k *other*
documents; a slot that cannot be filled (k = D) holds index -1 and score -inf, which `to_run` skips. With
`judgments`, a document the query's judgments grade >= 1 is never left out: there the shared id marks the
answer, not the query (stdlib-code gives a query its function's id; MIRACL-style collections do the same).
"""

from __future__ import annotations

import logging
from typing import Literal, Mapping, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

Method = Literal["auto", "exact", "faiss"]
EXACT_MAX_DOCS = 200_000          # "auto" uses exact top-k up to this many documents, FAISS above
_MAX_CHUNK_ELEMENTS = 1 << 24     # score-matrix entries per query chunk in the exact path (64 MiB float32)


def tie_order(doc_ids: Sequence[str]) -> np.ndarray:
    """Permutation [D] of corpus indices sorted by doc id descending (UTF-8 byte order = code point order)."""
    return np.array(sorted(range(len(doc_ids)), key=doc_ids.__getitem__, reverse=True), dtype=np.int64)


def identical_doc_index(
    query_ids: Sequence[str], doc_ids: Sequence[str], judgments: Mapping[str, Mapping[str, int]] | None = None
) -> np.ndarray:
    """Per query, the corpus index [Q] of the document with the query's own id, -1 if none (or if `judgments`
    grade that document >= 1 for the query: then it is an answer, and it stays)."""
    row = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    excluded = np.full(len(query_ids), -1, dtype=np.int64)
    for i, query_id in enumerate(query_ids):
        index = row.get(query_id)
        relevant = judgments is not None and judgments.get(query_id, {}).get(query_id, 0) >= 1
        if index is not None and not relevant:
            excluded[i] = index
    return excluded


def _excluded_positions(
    query_ids: Sequence[str] | None, doc_ids: Sequence[str] | None, judgments, order: np.ndarray | None, n_queries: int
) -> torch.Tensor | None:
    """The identical-id document of each query as a position in the tie-ordered layout [Q] (-1: none)."""
    if query_ids is None:
        return None
    if doc_ids is None:
        raise ValueError("ignore_identical_ids needs doc_ids as well as query_ids")
    if len(query_ids) != n_queries:
        raise ValueError(f"{len(query_ids)} query ids for {n_queries} query embeddings")
    excluded = identical_doc_index(query_ids, doc_ids, judgments)
    if order is not None:
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        excluded = np.where(excluded >= 0, position[np.maximum(excluded, 0)], -1)
    return torch.from_numpy(excluded)


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def retrieve(
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    k: int,
    *,
    doc_ids: Sequence[str] | None = None,
    query_ids: Sequence[str] | None = None,
    ignore_identical_ids: bool = True,
    judgments: Mapping[str, Mapping[str, int]] | None = None,
    method: Method = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` documents by inner product for each query.

    Args:
        query_emb: [Q, d] (torch or numpy, any device).
        doc_emb: [D, d].
        k: number of results, clipped to D.
        doc_ids: the corpus ids [D]; when given, score ties rank the larger id first (trec_eval's order).
        query_ids: the query ids [Q]; with `ignore_identical_ids` (default) and `doc_ids`, a query's own id is
            left out of its ranking (module docstring). Without `query_ids` nothing is left out.
        ignore_identical_ids: apply the identical-id rule (BEIR / MTEB); False keeps every document.
        judgments: query id -> doc id -> grade; an identical-id document graded >= 1 is kept (an answer).
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
    if doc_ids is not None and len(doc_ids) != n_docs:
        raise ValueError(f"{len(doc_ids)} doc ids for {n_docs} document embeddings")
    order_np = tie_order(doc_ids) if doc_ids is not None else None
    order = torch.from_numpy(order_np) if order_np is not None else None
    rule_ids = query_ids if ignore_identical_ids else None
    excluded = _excluded_positions(rule_ids, doc_ids, judgments, order_np, query_emb.shape[0])
    if method == "exact":
        return _exact(query_emb, doc_emb, k, order, chunk_size, excluded)
    if method == "faiss":
        return _faiss(query_emb, doc_emb, k, order, excluded)
    raise ValueError(f"unknown retrieval method {method!r}")


def _exact(query_emb, doc_emb, k, order, chunk_size, excluded):
    device = query_emb.device
    docs = doc_emb.to(device=device, dtype=torch.float32)
    if order is not None:
        order = order.to(device)
        docs = docs[order]
    chunk = chunk_size or max(1, _MAX_CHUNK_ELEMENTS // max(1, docs.shape[0]))
    all_scores, all_indices = [], []
    for start in range(0, query_emb.shape[0], chunk):
        scores = query_emb[start : start + chunk].to(torch.float32) @ docs.T            # [q, D]
        own = excluded[start : start + chunk].to(device) if excluded is not None else None
        if own is not None:
            rows = (own >= 0).nonzero().squeeze(1)
            scores[rows, own[rows]] = float("-inf")
        values, positions = torch.sort(scores, dim=1, descending=True, stable=True)
        values, positions = values[:, :k], positions[:, :k]
        indices = order[positions] if order is not None else positions
        if own is not None:
            hit = positions == own[:, None]
            values, indices = values.masked_fill(hit, float("-inf")), indices.masked_fill(hit, -1)
        all_scores.append(values)
        all_indices.append(indices)
    if not all_scores:
        return torch.zeros(0, k, device=device), torch.zeros(0, k, dtype=torch.long, device=device)
    return torch.cat(all_scores), torch.cat(all_indices)


def _faiss(query_emb, doc_emb, k, order, excluded):
    import faiss

    docs = doc_emb.detach().to("cpu", torch.float32)
    if order is not None:
        docs = docs[order]
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs.numpy()))
    queries = np.ascontiguousarray(query_emb.detach().to("cpu", torch.float32).numpy())
    depth = min(k + 1, docs.shape[0]) if excluded is not None else k    # one more: the own id may take a slot
    scores, positions = index.search(queries, depth)
    scores, positions = torch.from_numpy(scores), torch.from_numpy(positions).long()
    if excluded is not None:
        hit = positions == excluded[:, None]
        scores, positions = scores.masked_fill(hit, float("-inf")), positions.masked_fill(hit, -1)
    # FAISS leaves the order of equal scores open: restore the tie rule (lower tie-order position first).
    key = torch.where(positions < 0, torch.iinfo(torch.long).max, positions)
    secondary = torch.argsort(key, dim=1, stable=True)
    scores, positions = scores.gather(1, secondary), positions.gather(1, secondary)
    primary = torch.argsort(scores, dim=1, descending=True, stable=True)
    scores, positions = scores.gather(1, primary)[:, :k], positions.gather(1, primary)[:, :k]
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
