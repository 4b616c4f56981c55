"""Candidate pools: order, padding, ideal grades, recall, positive insertion, negatives."""

from __future__ import annotations

import logging

import pytest
import torch

from eggroll_ndcg.data.beir import Collection
from eggroll_ndcg.data.bm25 import BM25Index
from eggroll_ndcg.data.pools import CandidatePools, build_pools


def _collection() -> Collection:
    doc_ids = ("d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8")
    doc_texts = (
        "apple banana", "banana cherry", "cherry date", "date elderberry",
        "elderberry fig", "fig grape", "grape apple", "apple apple apple",
    )
    return Collection(
        name="toy", doc_ids=doc_ids, doc_texts=doc_texts,
        query_texts={"q1": "apple", "q2": "fig", "q3": "nothing"},
        judgments={
            "q1": {"d1": 1, "d7": 2, "d5": 0, "gone": 3},     # "gone" is not in the corpus
            "q2": {"d6": 1, "d3": -1},
            "q3": {},
        },
        split_queries={"test": ("q1", "q2", "q3")}, problems=(), manifest={},
    )


def _embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """Documents on a circle; q1 is nearest d1, d2, d3; q2 nearest d6, d5, d7; q3 nearest d8."""
    angles = torch.arange(8, dtype=torch.float32) * (2 * torch.pi / 8)
    docs = torch.stack([angles.cos(), angles.sin()], dim=1)
    queries = docs[[1, 5, 7]] * 0.6 + docs[[0, 5, 7]] * 0.4           # q1 between d1 and d2, nearer d2
    return queries, docs


def _build(**kwargs) -> CandidatePools:
    collection = _collection()
    queries, docs = _embeddings()
    options = dict(size=3, insert_positives=False, seed=0)
    options.update(kwargs)
    return build_pools(collection, ("q1", "q2", "q3"), queries, docs, **options)


def _pool_ids(pools: CandidatePools, row: int) -> list[str]:
    ids = _collection().doc_ids
    return [ids[i] for i, m in zip(pools.doc_index[row].tolist(), pools.mask[row].tolist()) if m]


def test_pools_are_in_doc_id_descending_order():
    pools = _build(size=5, random_negatives=2)
    for row in range(3):
        ids = _pool_ids(pools, row)
        assert ids == sorted(ids, key=lambda s: s.encode(), reverse=True)
        assert len(set(ids)) == len(ids)


def test_dense_candidates_recall_and_no_insertion(caplog):
    with caplog.at_level(logging.INFO, logger="eggroll_ndcg.data.pools"):
        pools = _build()
    assert _pool_ids(pools, 0) == ["d3", "d2", "d1"]
    assert _pool_ids(pools, 1) == ["d7", "d6", "d5"]
    assert pools.positives_inserted is False
    # positives: q1 {d1, d7, gone}, q2 {d6}; found d1 and d6 -> 2 of 4
    assert pools.recall == pytest.approx(2 / 4)
    assert "NOT inserted" in caplog.text
    assert pools.doc_index.dtype == torch.long and pools.mask.dtype == torch.bool
    assert pools.grades.dtype == torch.float32


def test_insert_positives_adds_missing_known_positives_and_keeps_recall_before_insertion(caplog):
    with caplog.at_level(logging.INFO, logger="eggroll_ndcg.data.pools"):
        pools = _build(insert_positives=True)
    assert pools.positives_inserted is True
    assert _pool_ids(pools, 0) == ["d7", "d3", "d2", "d1"]        # d7 inserted, "gone" cannot be
    assert pools.recall == pytest.approx(2 / 4)
    assert "inserted 1 missing positives" in caplog.text
    # padding of the narrower rows
    assert pools.doc_index.shape == (3, 4)
    assert pools.doc_index[1, 3] == -1 and not pools.mask[1, 3] and pools.grades[1, 3] == 0


def test_grades_and_ideal_grades_use_all_judgments():
    pools = _build()
    assert pools.grades[0].tolist() == [0.0, 0.0, 1.0]       # d3, d2, d1
    assert pools.grades[1].tolist()[:3] == [0.0, 1.0, 0.0]   # d7 unjudged for q2, d6 = 1, d5 unjudged
    # q1's positives: gone (3, outside the corpus), d7 (2, outside the pool), d1 (1)
    assert pools.ideal_grades.tolist() == [[3.0, 2.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_negative_grades_are_stored_as_zero():
    pools = _build(size=8)
    ids = _pool_ids(pools, 1)
    assert pools.grades[1, ids.index("d3")] == 0.0


def test_random_negatives_are_seeded_distinct_and_exclude_positives():
    a = _build(size=2, random_negatives=3, seed=7)
    b = _build(size=2, random_negatives=3, seed=7)
    assert torch.equal(a.doc_index, b.doc_index)
    for row, positives in enumerate([{"d1", "d7"}, {"d6"}, set()]):
        ids = _pool_ids(a, row)
        assert len(ids) == 5
        dense = set(_pool_ids(_build(size=2), row))
        assert not (set(ids) - dense) & positives, "random negatives never pick a judged positive"
    # a query's negatives do not depend on the other queries in the build
    collection = _collection()
    queries, docs = _embeddings()
    alone = build_pools(collection, ("q2",), queries[1:2], docs, size=2, random_negatives=3,
                        insert_positives=False, seed=7)
    assert torch.equal(alone.doc_index[0], a.doc_index[1])


def test_bm25_negatives_are_lexical_and_not_positive():
    pools = _build(size=1, bm25_negatives=2)
    # q1 = "apple": the dense hit is d2. BM25 ranks d8 (apple x3), then d1 and d7 (both positives, excluded),
    # then the zero-score documents, where the tie rule picks the largest remaining id, d6.
    assert _pool_ids(pools, 0) == ["d8", "d6", "d2"]


def test_bm25_scores_match_the_formula():
    index = BM25Index(["a b", "a a c"], k1=1.5, b=0.75)
    import math

    avgdl, n = 2.5, 2
    idf_a = math.log(1 + (n - 2 + 0.5) / (2 + 0.5))
    expected = [idf_a * 1 * 2.5 / (1 + 1.5 * (0.25 + 0.75 * 2 / avgdl)),
                idf_a * 2 * 2.5 / (2 + 1.5 * (0.25 + 0.75 * 3 / avgdl))]
    assert index.scores(["A"])[0].tolist() == pytest.approx(expected)
    scores, indices = index.search(["a", "zzz"], 2, doc_ids=("x", "y"))
    assert indices[0].tolist() == [1, 0]
    assert indices[1].tolist() == [1, 0], "all-zero scores tie: larger doc id first"


def test_to_and_subset():
    pools = _build(insert_positives=True)
    sub = pools.subset([2, 0])
    assert sub.query_ids == ("q3", "q1")
    assert torch.equal(sub.doc_index, pools.doc_index[[2, 0]])
    assert torch.equal(sub.ideal_grades, pools.ideal_grades[[2, 0]])
    assert sub.positives_inserted and sub.recall == pools.recall
    moved = pools.to("cpu")
    assert moved.doc_index.device.type == "cpu" and len(moved) == 3


def test_shape_mismatch_is_rejected():
    collection = _collection()
    queries, docs = _embeddings()
    with pytest.raises(ValueError):
        build_pools(collection, ("q1",), queries, docs, size=2, insert_positives=False, seed=0)
    with pytest.raises(ValueError):
        build_pools(collection, ("q1", "q2", "q3"), queries, docs[:5], size=2, insert_positives=False, seed=0)
