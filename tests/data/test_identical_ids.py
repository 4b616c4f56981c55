"""BEIR's identical-id rule: a query that is also a corpus document never retrieves itself (when on)."""

from __future__ import annotations

import pytest
import torch

from eggroll_ndcg.data.beir import Collection
from eggroll_ndcg.data.pools import build_pools
from eggroll_ndcg.data.retrieval import identical_doc_index, retrieve, to_run


def _arguana_like() -> tuple[Collection, torch.Tensor, torch.Tensor]:
    """Arguments a1..a6; queries a1 and a4 are themselves corpus documents (as in ArguAna), q9 is not.

    Each query's embedding equals its own document's, so without the rule it is its own top-1 result.
    """
    doc_ids = ("a1", "a2", "a3", "a4", "a5", "a6")
    angles = torch.arange(6, dtype=torch.float32) * (2 * torch.pi / 6)
    docs = torch.stack([angles.cos(), angles.sin()], dim=1)
    queries = torch.stack([docs[0], docs[3], docs[5]])
    collection = Collection(
        name="arguana-like", doc_ids=doc_ids, doc_texts=("claim one", "counter one", "claim two", "claim three",
                                                         "counter three", "other"),
        query_texts={"a1": "claim one", "a4": "claim three", "q9": "other"},
        judgments={"a1": {"a2": 1}, "a4": {"a5": 1}, "q9": {"a6": 1}},
        split_queries={"test": ("a1", "a4", "q9")}, problems=(), manifest={},
    )
    return collection, queries, docs


QUERY_IDS = ("a1", "a4", "q9")


@pytest.mark.parametrize("method", ["exact", "faiss"])
@pytest.mark.parametrize("k", [3, 6])
def test_retrieve_leaves_out_the_query_own_id_by_default(method, k):
    collection, queries, docs = _arguana_like()
    scores, indices = retrieve(queries, docs, k, doc_ids=collection.doc_ids, query_ids=QUERY_IDS, method=method)
    run = to_run(QUERY_IDS, collection.doc_ids, scores, indices)
    assert "a1" not in run["a1"] and "a4" not in run["a4"]
    assert len(run["a1"]) == min(k, 5) and len(run["q9"]) == k      # the best k *other* documents
    assert next(iter(run["q9"])) == "a6"                             # q9 is not a document: nothing left out


@pytest.mark.parametrize("method", ["exact", "faiss"])
def test_retrieve_keeps_the_own_id_when_the_rule_is_off(method):
    collection, queries, docs = _arguana_like()
    scores, indices = retrieve(
        queries, docs, 3, doc_ids=collection.doc_ids, query_ids=QUERY_IDS, ignore_identical_ids=False, method=method
    )
    run = to_run(QUERY_IDS, collection.doc_ids, scores, indices)
    assert max(run["a1"], key=run["a1"].get) == "a1" and "a4" in run["a4"]


def test_retrieve_without_query_ids_is_unchanged():
    collection, queries, docs = _arguana_like()
    _, indices = retrieve(queries, docs, 1, doc_ids=collection.doc_ids)
    assert [collection.doc_ids[i] for i in indices[:, 0].tolist()] == ["a1", "a4", "a6"]


def test_retrieve_with_query_ids_needs_doc_ids():
    _, queries, docs = _arguana_like()
    with pytest.raises(ValueError, match="doc_ids"):
        retrieve(queries, docs, 2, query_ids=QUERY_IDS)


def test_an_own_id_judged_relevant_is_an_answer_and_stays():
    """stdlib-code gives a query its function's id: there the shared id is the answer, not the query."""
    collection, queries, docs = _arguana_like()
    judgments = {"a1": {"a1": 1}, "a4": {"a5": 1}}
    assert identical_doc_index(QUERY_IDS, collection.doc_ids, judgments).tolist() == [-1, 3, -1]
    _, indices = retrieve(queries, docs, 1, doc_ids=collection.doc_ids, query_ids=QUERY_IDS, judgments=judgments)
    assert collection.doc_ids[indices[0, 0]] == "a1"


def _pool(pools, row: int, doc_ids) -> set[str]:
    return {doc_ids[i] for i, m in zip(pools.doc_index[row].tolist(), pools.mask[row].tolist()) if m}


@pytest.mark.parametrize("extra", [{}, {"bm25_negatives": 3}, {"random_negatives": 5}, {"insert_positives": True}])
def test_pools_never_hold_the_query_own_document_when_on(extra):
    collection, queries, docs = _arguana_like()
    options = {"size": 3, "insert_positives": False, "seed": 0, **extra}
    pools = build_pools(collection, QUERY_IDS, queries, docs, **options)
    assert "a1" not in _pool(pools, 0, collection.doc_ids)
    assert "a4" not in _pool(pools, 1, collection.doc_ids)
    kept = build_pools(collection, QUERY_IDS, queries, docs, ignore_identical_ids=False, **options)
    assert "a1" in _pool(kept, 0, collection.doc_ids) and "a4" in _pool(kept, 1, collection.doc_ids)


def test_pools_with_a_full_size_pool_drop_only_the_own_document():
    collection, queries, docs = _arguana_like()
    pools = build_pools(collection, QUERY_IDS, queries, docs, size=6, insert_positives=False, seed=0)
    assert _pool(pools, 0, collection.doc_ids) == {"a2", "a3", "a4", "a5", "a6"}
    assert len(_pool(pools, 2, collection.doc_ids)) == 6
