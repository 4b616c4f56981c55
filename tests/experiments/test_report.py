"""Summaries of a comparison: k-fold weighting and groups with no query."""

from __future__ import annotations

import json

import pytest

from eggroll_ndcg.experiments.report import summarize, write_markdown


def _run(test: float, seen: float | None, unseen: float, n_seen: int, n_unseen: int) -> dict:
    return {"train/ndcg@10": 0.5, "val/ndcg@10": 0.5, "test/ndcg@10": test, "test/mrr@10": test,
            "test/recall@100": 1.0, "test_seen/ndcg@10": seen, "test_unseen/ndcg@10": unseen,
            "test_seen/count": n_seen, "test_unseen/count": n_unseen}


def test_a_group_without_queries_is_reported_as_missing_not_nan():
    """All test queries unseen (as in stdlib-code): the seen-document cells are None / n/a, and the JSON
    stays strict (no NaN)."""
    runs = {"0": [_run(0.5, None, 0.5, 0, 4)], "1": [_run(0.6, None, 0.6, 0, 4)]}
    results = {"config": {"base": {"task": "t", "encoder": "e", "head": "linear", "normalize": True,
                                   "pool_size": 8, "bm25_negatives": 0, "random_negatives": 0, "num_steps": 1,
                                   "batch_queries": 1}, "seeds": [0, 1], "methods": ["eggroll"]},
               "methods": {"zero-shot": {"runs": {"-": [_run(0.4, None, 0.4, 0, 4)]}}, "eggroll": {"runs": runs}}}
    per_query = {m: {f"q{i}": {"ndcg@10": v + 0.01 * i} for i in range(4)} for m, v in (("zero-shot", 0.4), ("eggroll", 0.55))}
    results["summary"] = summarize(results, per_query, {f"q{i}": False for i in range(4)})
    table = results["summary"]["table"]
    assert table["eggroll"]["test_seen/ndcg@10"] == [None, None]
    assert table["eggroll"]["test/ndcg@10"] == pytest.approx([0.55, 0.0707106781], abs=1e-9)
    json.dumps(results, allow_nan=False)
    assert "n/a" in write_markdown(results, {})


def test_k_fold_test_metrics_are_weighted_by_each_folds_query_count():
    runs = {"0": [_run(1.0, 1.0, 1.0, 1, 2), _run(0.0, 0.0, 0.0, 0, 1)]}
    results = {"methods": {"eggroll": {"runs": runs}}}
    table = summarize(results, {}, {})["table"]["eggroll"]
    assert table["test/ndcg@10"][0] == pytest.approx(3 / 4)
    assert table["test_unseen/ndcg@10"][0] == pytest.approx(2 / 3)
    assert table["test_seen/ndcg@10"][0] == pytest.approx(1.0)
    assert table["val/ndcg@10"][0] == pytest.approx(0.5)
