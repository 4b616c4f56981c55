"""Candidate pools for training and re-ranking: per query, a fixed set of documents to score.

A pool row holds, for one query:
  1. the top `size` documents of the base encoder (exact inner product, trec_eval tie rule);
  2. `bm25_negatives` lexical hard negatives: the best BM25 documents that are neither in the pool yet nor judged
     relevant (grade >= 1), in BM25 rank order;
  3. `random_negatives` uniform random documents that are neither in the pool yet nor judged relevant, drawn
     without replacement by `numpy.random.default_rng([seed, crc32(query id)])`: a query's negatives depend
     only on the seed, the query id and its pool, not on which other queries are built with it;
  4. with `insert_positives=True` (a training aid), the judged relevant documents the steps above missed.
     With `insert_positives=False` (evaluation / re-ranking), the pool is what the retriever found.

With `ignore_identical_ids=True` (the default, BEIR's and MTEB's rule) a query's own id is never in its pool:
the document with the query's id is left out of steps 1-3, unless the query's judgments grade it >= 1 (then
the shared id marks the answer, as in stdlib-code, and it is treated like any other document).

`recall` is measured after steps 1-3 and before step 4: judged positives inside the pools / all judged positives
of the queries (micro average; positives whose document is not in the corpus count in the denominator). Since
negatives exclude positives, it is the base encoder's recall@size.

Layout: each row is sorted by doc id *descending* (byte order), the order in which the batched metrics' tie
rule (lower position first) agrees with trec_eval's (larger doc id first). Rows are padded to the widest with
doc_index -1, mask False, grade 0. Grades below 0 are stored as 0 (no gain). `ideal_grades` [Q, J] lists
each query's positive grades from *all* its judgments (also documents outside the pool or the corpus),
descending, 0-padded, so that the ideal DCG is trec_eval's.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from .retrieval import identical_doc_index, retrieve, tie_order

log = logging.getLogger(__name__)


@dataclass
class CandidatePools:
    """Candidate documents per query (see the module docstring for how they are built and ordered)."""

    query_ids: tuple[str, ...]          # Q
    doc_index: torch.Tensor             # [Q, P] long, index into Collection.doc_ids; -1 = padding
    grades: torch.Tensor                # [Q, P] float, judged grade, 0 for unjudged and padding
    mask: torch.Tensor                  # [Q, P] bool, True = real candidate
    ideal_grades: torch.Tensor          # [Q, J] float, the query's positive judged grades, descending, 0-padded
    positives_inserted: bool            # True: missing positives were added (training aid)
    recall: float                       # share of judged positives the retriever put in the pools

    def to(self, device: str | torch.device) -> "CandidatePools":
        """The same pools with every tensor on `device`."""
        return replace(
            self, doc_index=self.doc_index.to(device), grades=self.grades.to(device), mask=self.mask.to(device),
            ideal_grades=self.ideal_grades.to(device),
        )

    def subset(self, rows: Sequence[int] | torch.Tensor) -> "CandidatePools":
        """Pools of the given rows, in that order. `recall` stays that of the whole build."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        ids = tuple(self.query_ids[i] for i in rows.tolist())
        rows = rows.to(self.doc_index.device)
        return replace(
            self, query_ids=ids, doc_index=self.doc_index[rows], grades=self.grades[rows], mask=self.mask[rows],
            ideal_grades=self.ideal_grades[rows.to(self.ideal_grades.device)],
        )

    def __len__(self) -> int:
        return len(self.query_ids)


def _random_negatives(
    rng: np.random.Generator, n_docs: int, count: int, excluded: set[int]
) -> list[int]:
    """`count` distinct indices in [0, n_docs) outside `excluded`, uniformly at random (all of them if fewer)."""
    available = n_docs - len(excluded)
    if count <= 0 or available <= 0:
        return []
    if count >= available:
        return [i for i in range(n_docs) if i not in excluded]
    chosen: list[int] = []
    seen = set(excluded)
    while len(chosen) < count:
        for i in rng.integers(0, n_docs, size=2 * (count - len(chosen)) + 8).tolist():
            if i not in seen:
                seen.add(i)
                chosen.append(i)
                if len(chosen) == count:
                    break
    return chosen


def build_pools(
    collection,
    query_ids: Sequence[str],
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    *,
    size: int,
    bm25_negatives: int = 0,
    random_negatives: int = 0,
    insert_positives: bool,
    seed: int,
    ignore_identical_ids: bool = True,
) -> CandidatePools:
    """Build the candidate pools of `query_ids`.

    Args:
        collection: a `data.beir.Collection` (doc_ids, doc_texts, query_texts, judgments are used).
        query_ids: the Q queries, in row order.
        query_emb: [Q, d] base-encoder embeddings aligned with `query_ids`.
        doc_emb: [D, d] aligned with `collection.doc_ids`.
        size: dense candidates per query (clipped to D).
        bm25_negatives / random_negatives: extra negatives per query (see the module docstring).
        insert_positives: add judged positives the pool missed (training) or not (evaluation).
        seed: seeds the random negatives.
        ignore_identical_ids: leave the document whose id is the query's id out of its pool (module docstring).
    """
    doc_ids = collection.doc_ids
    n_docs, query_ids = len(doc_ids), tuple(query_ids)
    if doc_emb.shape[0] != n_docs:
        raise ValueError(f"doc_emb has {doc_emb.shape[0]} rows, the collection {n_docs} documents")
    if query_emb.shape[0] != len(query_ids):
        raise ValueError(f"query_emb has {query_emb.shape[0]} rows for {len(query_ids)} query ids")
    doc_row = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    order = tie_order(doc_ids)
    rank = np.empty(n_docs, dtype=np.int64)
    rank[order] = np.arange(n_docs)                                  # position in doc-id-descending order

    _, dense = retrieve(
        query_emb.detach().cpu(), doc_emb.detach().cpu(), min(size, n_docs), doc_ids=doc_ids,
        query_ids=query_ids, ignore_identical_ids=ignore_identical_ids, judgments=collection.judgments,
    )
    dense = dense.tolist()
    own = (identical_doc_index(query_ids, doc_ids, collection.judgments) if ignore_identical_ids
           else np.full(len(query_ids), -1, dtype=np.int64)).tolist()
    positives = [{d: g for d, g in collection.judgments.get(q, {}).items() if g > 0} for q in query_ids]
    lexical = None
    if bm25_negatives > 0 and n_docs:
        from .bm25 import BM25Index

        depth = min(n_docs, size + bm25_negatives + 1 + max((len(p) for p in positives), default=0))
        _, lexical = BM25Index(collection.doc_texts).search(
            [collection.query_texts[q] for q in query_ids], depth, doc_ids=doc_ids
        )

    rows: list[list[int]] = []
    found = total = inserted = 0
    for i, qid in enumerate(query_ids):
        pos_rows = {doc_row[d] for d in positives[i] if d in doc_row}
        pool = [j for j in dense[i] if j >= 0]
        members = set(pool)
        barred = pos_rows | ({own[i]} if own[i] >= 0 else set())      # never a negative: positives, own id
        if lexical is not None:
            extra = [j for j in lexical[i].tolist() if j not in members and j not in barred][:bm25_negatives]
            pool += extra
            members.update(extra)
        if random_negatives > 0:
            rng = np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))])
            extra = _random_negatives(rng, n_docs, random_negatives, members | barred)
            pool += extra
            members.update(extra)
        total += len(positives[i])
        found += len(pos_rows & members)
        if insert_positives:
            missing = sorted(pos_rows - members)
            pool += missing
            inserted += len(missing)
        rows.append(sorted(pool, key=rank.__getitem__))

    width = max((len(r) for r in rows), default=0)
    n_queries = len(query_ids)
    doc_index = torch.full((n_queries, width), -1, dtype=torch.long)
    grades = torch.zeros(n_queries, width)
    for i, (qid, row) in enumerate(zip(query_ids, rows)):
        judged = collection.judgments.get(qid, {})
        doc_index[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        grades[i, : len(row)] = torch.tensor([max(judged.get(doc_ids[j], 0), 0) for j in row], dtype=torch.float32)
    n_ideal = max([len(p) for p in positives] + [1])
    ideal = torch.zeros(n_queries, n_ideal)
    for i, pos in enumerate(positives):
        values = sorted(pos.values(), reverse=True)
        ideal[i, : len(values)] = torch.tensor(values, dtype=torch.float32)

    recall = found / total if total else 0.0
    log.info(
        "pools: %d queries, width %d (dense %d + bm25 %d + random %d), recall %.4f (%d/%d judged positives); %s",
        n_queries, width, min(size, n_docs), bm25_negatives, random_negatives, recall, found, total,
        f"inserted {inserted} missing positives (training aid)" if insert_positives
        else "missing positives NOT inserted (evaluation pools)",
    )
    return CandidatePools(
        query_ids=query_ids, doc_index=doc_index, grades=grades, mask=doc_index >= 0, ideal_grades=ideal,
        positives_inserted=insert_positives, recall=recall,
    )


def drop_documents(pools: CandidatePools, doc_ids: Sequence[str], drop: dict[str, set[str]]) -> CandidatePools:
    """The pools with the documents `drop[query id]` removed (index -1, mask False, grade 0: never ranked,
    never counted), e.g. likely false negatives (`TrainConfig.pool_denoise`). Row order is unchanged."""
    doc_index, grades = pools.doc_index.clone(), pools.grades.clone()
    for i, qid in enumerate(pools.query_ids):
        barred = drop.get(qid)
        if barred:
            hit = torch.tensor([j >= 0 and doc_ids[j] in barred for j in doc_index[i].tolist()], dtype=torch.bool)
            doc_index[i, hit] = -1
            grades[i, hit] = 0.0
    return replace(pools, doc_index=doc_index, grades=grades, mask=doc_index >= 0)
