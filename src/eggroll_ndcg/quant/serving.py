"""Serving quantized outputs: the index of document codes, full-corpus search, and its evaluation.

* ``binary``: ``faiss.IndexBinaryFlat`` over the packed codes (``np.packbits(x > 0)``, m/8 bytes a
  document); score = m - 2·Hamming. ``binary_asym`` (float query, binary documents) and ``int8`` go through
  the exact path: one GEMM of the query codes against the document codes (int8 products summed exactly,
  i.e. the int32 score), then a stable sort. A FAISS scalar quantizer is not used for int8: its codes are
  not sentence-transformers' (they would not reproduce the trained numbers).
* Tie rule everywhere: score descending, then doc id descending. FAISS leaves the order of equal Hamming
  distances open and may cut a tie group at k, so the binary search asks for the k+1 nearest, then for every
  document within the (k+1)-th distance (``range_search``), and sorts those by (distance, tie position): the
  result equals the exact computation (tested). The identical-id rule of ``data.retrieval`` applies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..data.retrieval import _excluded_positions, retrieve, tie_order, to_run
from .outputs import OutputCodec, bits_per_document, make_codec, pack_bits

__all__ = ["BinaryIndex", "head_codec", "quantized_retrieve", "quantized_run"]


def head_codec(kind: str, head: nn.Module | None, doc_emb: Tensor, *, normalize: bool) -> OutputCodec:
    """The codec of a head (None: the encoder itself), int8 ranges calibrated on its corpus outputs."""
    with torch.no_grad():
        outputs = doc_emb if head is None else head(doc_emb)
    return make_codec(kind, outputs if kind == "int8" else None, normalize=normalize)


@dataclass
class BinaryIndex:
    """``faiss.IndexBinaryFlat`` over packed document codes laid out in tie order (doc id descending)."""

    index: object
    order: np.ndarray  # [D] corpus index of tie position p
    m: int

    @classmethod
    def build(cls, doc_outputs: Tensor, doc_ids: Sequence[str]) -> "BinaryIndex":
        import faiss

        m = doc_outputs.shape[1]
        if m % 8:
            raise ValueError(f"IndexBinaryFlat needs a multiple of 8 bits, the head has {m} outputs")
        order = tie_order(doc_ids)
        index = faiss.IndexBinaryFlat(m)
        index.add(np.ascontiguousarray(pack_bits(doc_outputs.detach().cpu()[torch.from_numpy(order)])))
        return cls(index, order, m)

    @property
    def bytes(self) -> int:
        """Bytes of stored codes (m/8 per document)."""
        return self.index.ntotal * self.index.code_size

    def search(self, query_outputs: Tensor, k: int, excluded: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Top k by b_q·b_d with the tie rule: scores [Q, k] float32, corpus indices [Q, k] (-1: none)."""
        codes = np.ascontiguousarray(pack_bits(query_outputs.detach().cpu()))
        total = self.index.ntotal
        depth = min(k + 1, total)
        distances, _ = self.index.search(codes, depth)
        scores = torch.full((codes.shape[0], k), float("-inf"))
        indices = torch.full((codes.shape[0], k), -1, dtype=torch.long)
        for row in range(codes.shape[0]):  # every document within the (k+1)-th distance: whole tie groups
            _, d, p = self.index.range_search(codes[row: row + 1], int(distances[row, -1]) + 1)
            keep = np.lexsort((p, d))  # distance ascending, then tie position ascending
            d, p = d[keep], p[keep]
            if excluded is not None and excluded[row] >= 0:
                mask = p != int(excluded[row])
                d, p = d[mask], p[mask]
            d, p = d[:k], p[:k]
            scores[row, : len(p)] = torch.from_numpy((self.m - 2 * d.astype(np.int64)).astype(np.float32))
            indices[row, : len(p)] = torch.from_numpy(self.order[p])
        return scores, indices


def quantized_retrieve(
    codec: OutputCodec, query_outputs: Tensor, doc_outputs: Tensor, k: int, *, doc_ids: Sequence[str],
    query_ids: Sequence[str] | None = None, ignore_identical_ids: bool = True,
    judgments: Mapping[str, Mapping[str, int]] | None = None, method: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Top-k full-corpus search of head outputs through the codec: [Q, k] scores and corpus indices.

    ``method``: "faiss" (binary only: IndexBinaryFlat), "exact" (GEMM of the codes), "auto" (FAISS for
    binary, exact otherwise). Both follow the tie rule and give the same result (tested).
    """
    k = min(int(k), doc_outputs.shape[0])
    if method == "auto":
        method = "faiss" if codec.kind == "binary" else "exact"
    if method == "faiss":
        if codec.kind != "binary":
            raise ValueError(f"the FAISS binary index serves quantize=binary, not {codec.kind!r}")
        index = BinaryIndex.build(doc_outputs, doc_ids)
        rule_ids = query_ids if ignore_identical_ids else None
        excluded = _excluded_positions(rule_ids, doc_ids, judgments, index.order, query_outputs.shape[0])
        return index.search(query_outputs, k, excluded)
    return retrieve(codec.query_codes(query_outputs), codec.doc_codes(doc_outputs), k, doc_ids=doc_ids,
                    query_ids=query_ids, ignore_identical_ids=ignore_identical_ids, judgments=judgments,
                    method="exact")


def quantized_run(kind: str, head: nn.Module | None, data, query_ids: tuple[str, ...], *, normalize: bool,
                  depth: int = 100, ignore_identical_ids: bool = True, method: str = "auto"
                  ) -> dict[str, dict[str, float]]:
    """The full-corpus TREC run of ``head`` (None: the encoder) served with ``kind`` codes (``EncodedCollection``
    ``data``); int8 ranges from the head's outputs on the corpus."""
    rows = torch.tensor([data.query_row[qid] for qid in query_ids], dtype=torch.long, device=data.query_emb.device)
    with torch.no_grad():
        queries = data.query_emb[rows] if head is None else head(data.query_emb[rows])
        docs = data.doc_emb if head is None else head(data.doc_emb)
    codec = make_codec(kind, docs if kind == "int8" else None, normalize=normalize)
    scores, indices = quantized_retrieve(codec, queries.float(), docs.float(), depth,
                                         doc_ids=data.collection.doc_ids, query_ids=query_ids,
                                         ignore_identical_ids=ignore_identical_ids,
                                         judgments=data.collection.judgments, method=method)
    return to_run(list(query_ids), list(data.collection.doc_ids), scores.cpu(), indices.cpu())


def search_timing(codec: OutputCodec, query_outputs: Tensor, doc_outputs: Tensor, doc_ids: Sequence[str], *,
                  k: int = 10, repeats: int = 3) -> dict[str, float]:
    """Index size and search time per query on one thread (FAISS IndexBinaryFlat for binary, the exact code
    GEMM otherwise; best of ``repeats``)."""
    import faiss

    faiss.omp_set_num_threads(1)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(repeats):
            if codec.kind == "binary":
                index = BinaryIndex.build(doc_outputs, doc_ids)
                codes = np.ascontiguousarray(pack_bits(query_outputs))
                started = time.perf_counter()
                index.index.search(codes, k)
            else:
                docs, queries = codec.doc_codes(doc_outputs).float(), codec.query_codes(query_outputs).float()
                started = time.perf_counter()
                torch.topk(queries @ docs.T, k, dim=1)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(torch_threads)
    bits = bits_per_document(codec.kind, doc_outputs.shape[1])
    return {"bits_per_document": bits, "index_bytes": bits * doc_outputs.shape[0] // 8,
            "search_ms_per_query": 1000 * best / max(1, query_outputs.shape[0])}


def rescored_run(head: nn.Module | None, data, query_ids: tuple[str, ...], *, k: int = 10, multiplier: int = 4,
                 normalize: bool = True, ignore_identical_ids: bool = True) -> dict[str, dict[str, float]]:
    """sentence-transformers' rescoring: the top k·multiplier documents of the binary index, re-ranked by the
    float query against the documents' ±1 codes (``binary_asym`` scores), tie rule kept; k·multiplier a query."""
    depth = k * multiplier
    run = quantized_run("binary", head, data, query_ids, normalize=normalize, depth=depth,
                        ignore_identical_ids=ignore_identical_ids)
    rows = torch.tensor([data.query_row[qid] for qid in query_ids], dtype=torch.long, device=data.query_emb.device)
    doc_row = {doc_id: i for i, doc_id in enumerate(data.collection.doc_ids)}
    with torch.no_grad():
        queries = data.query_emb[rows] if head is None else head(data.query_emb[rows])
    codec = OutputCodec("binary_asym", normalize)
    out: dict[str, dict[str, float]] = {}
    for i, qid in enumerate(query_ids):
        ids = sorted(run[qid], reverse=True)  # tie order: doc id descending
        with torch.no_grad():
            docs = data.doc_emb[torch.tensor([doc_row[d] for d in ids], dtype=torch.long)]
            docs = docs if head is None else head(docs)
            scores = codec.doc_codes(docs.float()) @ codec.query_codes(queries[i].float())
        order = torch.sort(scores, descending=True, stable=True).indices.tolist()
        out[qid] = {ids[j]: float(scores[j]) for j in order}
    return out
