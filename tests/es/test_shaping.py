"""Claims about fitness shaping (es/shaping.py): higher is better in and out, NaN and ±inf never pass silently."""

from __future__ import annotations

import pytest
import torch

from eggroll_ndcg.es import antithetic_differences, centered_rank, query_zscore, shape_fitness, zscore


def test_centered_rank_values_span_minus_half_to_half_and_average_ties():
    """Claim: centered_rank = rank/(N-1) - 1/2 with 0-based ranks (best = +1/2, worst = -1/2); tied
    members share their average rank, so the shaped values still sum to 0."""
    f = torch.tensor([3.0, -1.0, 10.0, 0.5])
    torch.testing.assert_close(centered_rank(f), torch.tensor([2 / 3, 0.0, 1.0, 1 / 3]) - 0.5)
    tied = centered_rank(torch.tensor([1.0, 2.0, 2.0, 5.0]))
    torch.testing.assert_close(tied, torch.tensor([0.0, 1.5 / 3, 1.5 / 3, 1.0]) - 0.5)
    assert abs(float(tied.sum())) < 1e-6


def test_centered_rank_is_invariant_to_monotone_transforms():
    """Claim: only the order matters: centered_rank(f) == centered_rank(exp(3 f) + 7)."""
    f = torch.randn(64, dtype=torch.float64)
    assert torch.equal(centered_rank(f), centered_rank(torch.exp(3 * f) + 7))


def test_zscore_and_constant_fitness():
    """Claim: zscore has mean 0 and population std 1; a constant fitness shapes to all zeros (no NaN)."""
    z = zscore(torch.randn(100, dtype=torch.float64) * 5 + 3)
    assert abs(float(z.mean())) < 1e-12 and abs(float(z.std(unbiased=False)) - 1) < 1e-12
    assert torch.equal(zscore(torch.full((6,), 2.0)), torch.zeros(6))
    assert torch.equal(centered_rank(torch.full((6,), 2.0)), torch.zeros(6))


def test_per_query_zscore_weighs_each_query_equally():
    """Claim: for fitness [N, Q], query_zscore z-scores each query's column over members, then averages
    over queries; a query whose values vary 1000x more does not dominate, and a constant column adds 0."""
    easy = torch.tensor([0.0, 1.0, 2.0, 3.0]) * 1000  # member 3 best on query 0
    hard = torch.tensor([3.0, 2.0, 1.0, 0.0])  # member 0 best on query 1
    flat = torch.full((4,), 0.5)
    f = torch.stack([easy, hard, flat], dim=1)
    z = query_zscore(f)
    torch.testing.assert_close(z, torch.zeros(4), atol=1e-6, rtol=0)  # the two queries cancel exactly
    torch.testing.assert_close(query_zscore(f[:, :1]), zscore(easy))
    assert not torch.allclose(zscore(f.mean(1)), torch.zeros(4))  # plain mean is dominated by query 0


def test_composition_applies_left_to_right():
    """Claim: 'query_zscore+centered_rank' = centered_rank(query_zscore(f))."""
    f = torch.randn(16, 5)
    torch.testing.assert_close(shape_fitness(f, "query_zscore+centered_rank"), centered_rank(query_zscore(f)))
    with pytest.raises(ValueError, match="unknown shaping"):
        shape_fitness(f, "rank")


def test_nan_fitness_raises_naming_the_members_and_queries():
    """Claim: by default a NaN fitness raises ValueError naming the members (and queries) concerned."""
    f = torch.zeros(8, 3)
    f[5, 2] = float("nan")
    f[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"members \[1, 5\] \(queries \[0, 2\]\)"):
        shape_fitness(f, "centered_rank")


def test_nan_as_worst_ties_with_the_worst_member():
    """Claim: nan_policy='worst' replaces a NaN by its column's smallest finite value, so the member ranks
    (tied) last; a column of NaN only still raises."""
    f = torch.tensor([0.3, float("nan"), 0.9, 0.1])
    torch.testing.assert_close(shape_fitness(f, "centered_rank", nan_policy="worst"), centered_rank(torch.tensor([0.3, 0.1, 0.9, 0.1])))
    with pytest.raises(ValueError, match="NaN"):
        shape_fitness(torch.full((4,), float("nan")), "zscore", nan_policy="worst")


def test_antithetic_differences_are_plus_minus_minus():
    """Claim: antithetic_differences(f)[j] = f[2j] - f[2j+1] (member 2j carries +E_j)."""
    torch.testing.assert_close(antithetic_differences(torch.tensor([5.0, 1.0, 2.0, 4.0])), torch.tensor([4.0, -2.0]))
    with pytest.raises(ValueError, match="even"):
        antithetic_differences(torch.zeros(3))


def test_infinite_fitness_raises_like_nan_naming_kinds_members_and_queries():
    """Claim (issue 10): +inf and -inf are refused like NaN, for every shaping, and the error names the
    kinds of values, the members and the queries."""
    f = torch.zeros(8, 3)
    f[6, 1] = float("inf")
    f[2, 0] = -float("inf")
    f[4, 2] = float("nan")
    for method in ("raw", "zscore", "centered_rank", "query_zscore"):
        with pytest.raises(ValueError, match=r"\(NaN, \+inf, -inf\) for members \[2, 4, 6\] \(queries \[0, 1, 2\]\)"):
            shape_fitness(f, method)
    with pytest.raises(ValueError, match=r"\(-inf\) for members \[1\]"):
        shape_fitness(torch.tensor([0.0, -float("inf"), 1.0, 2.0]), "raw")


def test_infinite_fitness_as_worst_ties_with_the_worst_member():
    """Claim: nan_policy='worst' replaces +inf and -inf like NaN, by the column's smallest finite value
    (an overflow is a failed evaluation, not a best member); a column without finite values raises."""
    f = torch.tensor([[0.3, 1.0], [float("inf"), 2.0], [0.9, -float("inf")], [0.1, 0.5]])
    want = torch.tensor([[0.3, 1.0], [0.1, 2.0], [0.9, 0.5], [0.1, 0.5]])
    torch.testing.assert_close(shape_fitness(f, "query_zscore", nan_policy="worst"), query_zscore(want))
    with pytest.raises(ValueError, match=r"\(\+inf, -inf\)"):
        shape_fitness(torch.tensor([float("inf"), -float("inf")] * 2), "zscore", nan_policy="worst")
