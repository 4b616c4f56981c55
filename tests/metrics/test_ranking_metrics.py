"""Behaviour of the batched torch metrics: ties, masks, empty pools, k > P, NaN, dtypes, broadcasting."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_ndcg.metrics import (evaluate, ideal_dcg, map_at_k, mrr_at_k, ndcg_at_k, rank_top_k,
                                  ranking_metrics, recall_at_k)

MEASURES = ("ndcg", "mrr", "recall", "map")
METHODS = ("topk", "rank")


def reference_order(scores: list[float], mask: list[bool]) -> list[int]:
    """Real candidates by (score desc, position asc), then masked ones by position."""
    real = sorted((i for i in range(len(scores)) if mask[i]), key=lambda i: (-scores[i], i))
    return real + [i for i in range(len(scores)) if not mask[i]]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_rank_top_k_orders_by_score_then_lower_position_exactly(data):
    P = data.draw(st.integers(1, 40))
    scores = data.draw(st.lists(st.sampled_from([-math.inf, -1.0, 0.0, 0.5, 1.0, 2.0]), min_size=P, max_size=P))
    mask = data.draw(st.lists(st.booleans(), min_size=P, max_size=P))
    k = data.draw(st.integers(1, P))
    got = rank_top_k(torch.tensor(scores, dtype=torch.float64), k, torch.tensor(mask))
    assert got.tolist() == reference_order(scores, mask)[:k]


def test_rank_top_k_fixes_boundary_ties_in_a_large_batch():
    generator = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (64, 300), generator=generator).float()
    for k in (1, 7, 100, 300):
        want = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :k]
        assert torch.equal(rank_top_k(scores, k), want)


@pytest.mark.parametrize("method", METHODS)
def test_equal_scores_rank_by_pool_position_not_by_grade(method):
    grades = torch.tensor([[0.0, 0.0, 3.0]])
    ideal = torch.tensor([[3.0]])
    tied = ranking_metrics(torch.zeros(1, 3), grades, ks=[1, 3], ideal_grades=ideal, method=method)
    by_position = ranking_metrics(torch.tensor([[3.0, 2.0, 1.0]]), grades, ks=[1, 3], ideal_grades=ideal, method=method)
    for m in MEASURES:
        torch.testing.assert_close(tied[m], by_position[m])
    assert tied["mrr"].tolist() == [[0.0, pytest.approx(1 / 3)]]


@pytest.mark.parametrize("method", METHODS)
def test_known_values_for_a_small_ranking(method):
    # ranking by score: positions 0 (grade 0), 2 (grade 2), 1 (grade 1); the query has a third positive (grade 1)
    scores = torch.tensor([[0.9, 0.1, 0.5]])
    grades = torch.tensor([[0.0, 1.0, 2.0]])
    ideal = torch.tensor([[2.0, 1.0, 1.0]])
    out = ranking_metrics(scores, grades, ks=[1, 2, 3], ideal_grades=ideal, measures=MEASURES, method=method)
    dcg3 = 2 / math.log2(3) + 1 / math.log2(4)
    idcg3 = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    torch.testing.assert_close(out["ndcg"][0, 2], torch.tensor(dcg3 / idcg3))
    torch.testing.assert_close(out["mrr"][0], torch.tensor([0.0, 0.5, 0.5]))
    torch.testing.assert_close(out["recall"][0], torch.tensor([0.0, 1 / 3, 2 / 3]))
    torch.testing.assert_close(out["map"][0], torch.tensor([0.0, 0.5 / 3, (0.5 + 2 / 3) / 3]))


def test_exponential_gain_uses_two_to_the_grade_minus_one():
    scores = torch.tensor([[2.0, 1.0]])
    grades = torch.tensor([[1.0, 3.0]])
    ideal = torch.tensor([[3.0, 1.0]])
    got = ndcg_at_k(scores, grades, 2, ideal_grades=ideal, gain="exponential")
    dcg = 1 + 7 / math.log2(3)
    idcg = 7 + 1 / math.log2(3)
    torch.testing.assert_close(got, torch.tensor([dcg / idcg]))


def test_single_measure_helpers_equal_ranking_metrics():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 30, generator=generator)
    grades = torch.randint(0, 3, (5, 30), generator=generator).float()
    ideal = torch.cat([grades, torch.ones(5, 2)], dim=-1)
    full = ranking_metrics(scores, grades, ks=[7], ideal_grades=ideal)
    for name, helper in [("ndcg", ndcg_at_k), ("mrr", mrr_at_k), ("recall", recall_at_k), ("map", map_at_k)]:
        torch.testing.assert_close(helper(scores, grades, 7, ideal_grades=ideal), full[name][:, 0])


@pytest.mark.parametrize("method", METHODS)
def test_precomputed_idcg_gives_the_same_ndcg(method):
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(8, 4, 50, generator=generator)
    grades = torch.randint(0, 4, (4, 50), generator=generator).float()
    ideal = torch.sort(torch.cat([grades, 2 * torch.ones(4, 3)], -1), descending=True).values
    idcg = ideal_dcg(ideal, [1, 10, 100])
    a = ranking_metrics(scores, grades, ks=[1, 10, 100], ideal_grades=ideal, measures=("ndcg",), method=method)
    b = ranking_metrics(scores, grades, ks=[1, 10, 100], ideal_grades=ideal, measures=("ndcg",), idcg=idcg,
                        method=method)
    torch.testing.assert_close(a["ndcg"], b["ndcg"])


@pytest.mark.parametrize("method", METHODS)
def test_a_pool_missing_a_positive_scores_lower_than_one_that_has_it(method):
    scores = torch.tensor([[1.0, 0.0]])
    grades = torch.tensor([[1.0, 0.0]])
    complete = ranking_metrics(scores, grades, ks=[10], ideal_grades=torch.tensor([[1.0]]), method=method)
    missing = ranking_metrics(scores, grades, ks=[10], ideal_grades=torch.tensor([[1.0, 1.0]]), method=method)
    for m in ("ndcg", "recall", "map"):
        assert missing[m].item() < complete[m].item() == pytest.approx(1.0)
    assert missing["recall"].item() == pytest.approx(0.5)


@pytest.mark.parametrize("method", METHODS)
def test_empty_pool_gives_zero(method):
    out = ranking_metrics(torch.zeros(3, 0), torch.zeros(3, 0), ks=[1, 10], ideal_grades=torch.ones(3, 2),
                          method=method)
    for m in MEASURES:
        assert out[m].shape == (3, 2)
        assert torch.all(out[m] == 0)


@pytest.mark.parametrize("method", METHODS)
def test_fully_masked_pool_gives_zero_even_with_relevant_high_scored_candidates(method):
    scores = torch.tensor([[5.0, 4.0, 3.0]])
    grades = torch.tensor([[3.0, 2.0, 1.0]])
    out = ranking_metrics(scores, grades, ks=[1, 10], ideal_grades=torch.tensor([[3.0, 2.0, 1.0]]),
                          mask=torch.zeros(1, 3, dtype=torch.bool), method=method)
    for m in MEASURES:
        assert torch.all(out[m] == 0)


@pytest.mark.parametrize("method", METHODS)
def test_all_zero_grades_give_zero(method):
    out = ranking_metrics(torch.randn(4, 20), torch.zeros(4, 20), ks=[1, 5, 50], ideal_grades=torch.zeros(4, 3),
                          method=method)
    for m in MEASURES:
        assert torch.all(out[m] == 0)
    assert not any(torch.isnan(v).any() for v in out.values())


@pytest.mark.parametrize("method", METHODS)
def test_masked_candidates_never_rank_and_never_count(method):
    generator = torch.Generator().manual_seed(5)
    scores = torch.randn(6, 12, generator=generator)
    grades = torch.randint(0, 3, (6, 12), generator=generator).float()
    mask = torch.rand(6, 12, generator=generator) < 0.6
    ideal = torch.cat([grades, torch.ones(6, 1)], -1)
    boosted = scores.masked_fill(~mask, 100.0)  # padding with the best scores and relevant grades
    out = ranking_metrics(boosted, grades.masked_fill(~mask, 3.0), ks=[1, 3, 20], ideal_grades=ideal, mask=mask,
                          method=method)
    for i in range(6):
        keep = mask[i]
        alone = ranking_metrics(scores[i, keep], grades[i, keep], ks=[1, 3, 20], ideal_grades=ideal[i], method=method)
        for m in MEASURES:
            torch.testing.assert_close(out[m][i], alone[m])


@pytest.mark.parametrize("method", METHODS)
def test_nan_at_a_masked_candidate_is_ignored(method):
    scores = torch.tensor([[1.0, float("nan")]])
    out = ranking_metrics(scores, torch.tensor([[1.0, 1.0]]), ks=[1], ideal_grades=torch.tensor([[1.0]]),
                          mask=torch.tensor([[True, False]]), method=method)
    assert out["ndcg"].item() == 1.0


@pytest.mark.parametrize("method", METHODS)
def test_nan_scores_raise_a_clear_error(method):
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(torch.tensor([[1.0, float("nan")]]), torch.ones(1, 2), ks=[1], ideal_grades=torch.ones(1, 1),
                        method=method)


@pytest.mark.parametrize("method", METHODS)
def test_k_larger_than_the_pool_counts_the_whole_pool_and_matches_trec_eval(method):
    scores = torch.tensor([[0.3, 0.9, 0.1]], dtype=torch.float64)
    grades = torch.tensor([[1.0, 0.0, 2.0]])
    ideal = torch.tensor([[2.0, 1.0, 1.0, 1.0]])  # two positives are not in the pool
    out = ranking_metrics(scores, grades, ks=[3, 100], ideal_grades=ideal, method=method)
    run = {"q": {"c": 0.3, "b": 0.9, "a": 0.1}}  # positions 0, 1, 2 = doc ids descending c, b, a
    qrels = {"q": {"c": 1, "a": 2, "x": 1, "y": 1}}
    want = evaluate(run, qrels, measures=["ndcg@100", "mrr@100", "recall@100", "map@100"]).per_query["q"]
    for m in MEASURES:
        assert out[m][0, 1].item() == pytest.approx(want[f"{m}@100"], abs=1e-12)
    assert out["recall"][0, 0] == out["recall"][0, 1] == 0.5


@pytest.mark.parametrize("method", METHODS)
def test_bfloat16_scores_rank_like_their_float32_values_and_give_float32(method):
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(16, 200, generator=generator).to(torch.bfloat16)  # bf16 rounding makes many ties
    grades = torch.randint(0, 3, (16, 200), generator=generator).float()
    ideal = torch.cat([grades, torch.ones(16, 5)], -1)
    got = ranking_metrics(scores, grades, ks=[1, 10, 100], ideal_grades=ideal, method=method)
    want = ranking_metrics(scores.float(), grades, ks=[1, 10, 100], ideal_grades=ideal, method=method)
    for m in MEASURES:
        assert got[m].dtype == torch.float32
        torch.testing.assert_close(got[m], want[m], atol=0, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_float64_scores_are_computed_in_float64(method):
    scores = torch.randn(2, 5, dtype=torch.float64)
    out = ranking_metrics(scores, torch.ones(2, 5), ks=[3], ideal_grades=torch.ones(2, 5), method=method)
    assert all(v.dtype == torch.float64 for v in out.values())


@pytest.mark.parametrize("method", METHODS)
def test_member_dimension_broadcasts_grades_mask_and_ideal_grades(method):
    generator = torch.Generator().manual_seed(4)
    N, Q, P = 3, 5, 40
    scores = torch.randint(0, 5, (N, Q, P), generator=generator).float()
    grades = torch.randint(0, 3, (Q, P), generator=generator).float()
    mask = torch.rand(Q, P, generator=generator) < 0.8
    ideal = torch.cat([grades, torch.ones(Q, 2)], -1)
    out = ranking_metrics(scores, grades, ks=[5, 10], ideal_grades=ideal, mask=mask, method=method)
    for n in range(N):
        single = ranking_metrics(scores[n], grades, ks=[5, 10], ideal_grades=ideal, mask=mask, method=method)
        for m in MEASURES:
            assert out[m].shape == (N, Q, 2)
            torch.testing.assert_close(out[m][n], single[m])


def test_unknown_measure_and_bad_ks_are_rejected():
    with pytest.raises(ValueError, match="unknown measures"):
        ranking_metrics(torch.zeros(1, 2), torch.zeros(1, 2), ks=[1], ideal_grades=torch.zeros(1, 1), measures=("p",))
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics(torch.zeros(1, 2), torch.zeros(1, 2), ks=[0], ideal_grades=torch.zeros(1, 1))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_same_values_as_cpu(method):
    generator = torch.Generator().manual_seed(6)
    scores = torch.randint(0, 6, (32, 8, 256), generator=generator).float()
    grades = torch.randint(0, 3, (8, 256), generator=generator).float()
    mask = torch.rand(8, 256, generator=generator) < 0.9
    ideal = torch.cat([grades, torch.ones(8, 3)], -1)
    cpu = ranking_metrics(scores, grades, ks=[1, 10, 100], ideal_grades=ideal, mask=mask, method=method)
    for dtype in (torch.float32, torch.bfloat16):
        gpu = ranking_metrics(scores.cuda().to(dtype), grades.cuda(), ks=[1, 10, 100], ideal_grades=ideal.cuda(),
                              mask=mask.cuda(), method=method)
        for m in MEASURES:
            torch.testing.assert_close(gpu[m].cpu(), cpu[m])
