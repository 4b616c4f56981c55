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


def _significance_results(per_query_b: list[float], per_query_a: list[float]) -> dict:
    n = len(per_query_a)
    base = {"task": "t", "encoder": "e", "head": "linear", "normalize": True, "pool_size": 8, "bm25_negatives": 0,
            "random_negatives": 0, "num_steps": 1, "batch_queries": 1, "val_metric": "ndcg@10"}
    results = {"config": {"base": base, "seeds": [0], "methods": ["eggroll"]},
               "methods": {"zero-shot": {"runs": {"-": [_run(0.4, None, 0.4, 0, n)]}},
                           "eggroll": {"runs": {"0": [_run(0.6, None, 0.6, 0, n)]}}}}
    per_query = {"zero-shot": {f"q{i}": {"ndcg@10": v} for i, v in enumerate(per_query_b)},
                 "eggroll": {f"q{i}": {"ndcg@10": v} for i, v in enumerate(per_query_a)}}
    results["summary"] = summarize(results, per_query, {f"q{i}": False for i in range(n)})
    return results


def test_a_p_at_the_randomization_floor_is_shown_as_a_bound_with_the_resamples():
    """30 queries, every one better by 0.2..0.49: no random sign flip is as extreme, p = 1/(10,000+1)."""
    from eggroll_ndcg.experiments.report import RANDOMIZATION_RESAMPLES, randomization_floor

    results = _significance_results([0.3] * 30, [0.5 + 0.01 * i for i in range(30)])
    (row,) = results["summary"]["significance"]
    floor, exact = randomization_floor(30)
    assert (floor, exact) == (1 / (RANDOMIZATION_RESAMPLES + 1), False)
    assert row["randomization_p"] == pytest.approx(floor) and row["randomization_resamples"] == 10_000
    markdown = write_markdown(results, {})
    table_row = next(line for line in markdown.splitlines() if line.startswith("| eggroll | zero-shot |"))
    cells = [c.strip() for c in table_row.strip("|").split("|")]
    assert cells[7] == "≤ 0.0001" and cells[8] == "≤ 0.0001", "randomization p and its Holm p are bounds"
    assert "9.999e-05" not in markdown
    assert "10,000 random sign flips" in markdown and "1/10,001" in markdown


def test_an_exact_randomization_p_is_printed_as_a_value():
    """5 queries: 2^5 <= 10,000 sign vectors are enumerated, p = 2/32 exactly (its floor, but exact)."""
    results = _significance_results([0.3] * 5, [0.5, 0.6, 0.7, 0.8, 0.9])
    (row,) = results["summary"]["significance"]
    assert row["randomization_p"] == pytest.approx(2 / 32)
    table_row = next(line for line in write_markdown(results, {}).splitlines()
                     if line.startswith("| eggroll | zero-shot |"))
    assert "| 0.0625 |" in table_row and "≤" not in table_row


def test_holm_bound_only_where_it_rests_on_a_floor_p():
    from eggroll_ndcg.experiments.report import holm_depends_on_floor, significance_cells

    floor = 1 / 10_001
    assert holm_depends_on_floor([floor, 0.2, 0.04], [True, False, False]) == [True, False, False]
    # a p just above the floor whose Holm value is set by the floor row's (3 * floor > 2 * 1.2e-4)
    assert holm_depends_on_floor([floor, 1.2e-4, 0.5], [True, False, False]) == [True, True, False]
    rows = [{"n": 40, "randomization_p": floor, "holm_p": 3 * floor},
            {"n": 40, "randomization_p": 0.2, "holm_p": 0.4}]  # no randomization_resamples: an older results.json
    assert significance_cells(rows) == [("≤ 0.0001", "≤ 0.0003"), ("0.2", "0.4")]
