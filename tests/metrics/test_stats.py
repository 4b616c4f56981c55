"""Paired statistics: t-test vs scipy, randomization test, bootstrap CI, Holm, win/tie/loss."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from eggroll_ndcg.metrics import bootstrap_ci, holm, paired_t_test, randomization_test, win_tie_loss


def test_paired_t_test_equals_scipy_ttest_rel():
    rng = np.random.default_rng(0)
    for n in (2, 5, 30, 300):
        a = rng.random(n)
        b = a + rng.normal(0.02, 0.1, n)
        ours = paired_t_test(a, b)
        theirs = scipy_stats.ttest_rel(a, b)
        assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-10)


def test_paired_t_test_on_identical_systems_gives_p_one():
    a = [0.1, 0.5, 0.7]
    assert paired_t_test(a, a) == (0.0, 1.0)


def test_randomization_test_on_identical_systems_gives_p_one():
    a = np.random.default_rng(1).random(50)
    assert randomization_test(a, a, seed=3) == 1.0
    assert randomization_test(a[:8], a[:8]) == 1.0  # exact enumeration path


def test_randomization_test_on_clearly_different_systems_gives_small_p():
    rng = np.random.default_rng(2)
    a = rng.random(100)
    p = randomization_test(a + 0.1 + rng.normal(0, 0.02, 100), a, n_resamples=5000, seed=0)
    assert p == pytest.approx(1 / 5001)


def test_randomization_test_exact_enumeration_on_known_values():
    # d = (1, 1, 1): of the 8 sign vectors only (+,+,+) and (-,-,-) reach |mean| >= 1
    assert randomization_test([1, 1, 1], [0, 0, 0]) == pytest.approx(2 / 8)


def test_randomization_test_is_reproducible_with_a_seed_and_close_to_the_t_test():
    rng = np.random.default_rng(4)
    a, b = rng.random(60), rng.random(60)
    assert randomization_test(a, b, seed=9) == randomization_test(a, b, seed=9)
    assert randomization_test(a, b, seed=9, n_resamples=20000) == pytest.approx(paired_t_test(a, b).p_value, abs=0.03)


def test_holm_on_known_values():
    # sorted: 0.01*4 = 0.04, 0.02*3 = 0.06, 0.03*2 = 0.06, 0.5*1 = 0.5
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    # monotone step-down: a later smaller product is lifted to the running maximum, capped at 1
    assert holm([0.04, 0.045, 0.9]) == pytest.approx([0.12, 0.12, 0.9])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_bootstrap_ci_covers_the_true_mean_difference_on_synthetic_data():
    true_difference = 0.05
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        b = rng.random(200)
        a = b + true_difference + rng.normal(0, 0.1, 200)
        ci = bootstrap_ci(a, b, confidence=0.95, n_resamples=2000, seed=seed)
        assert ci.low < ci.estimate < ci.high
        covered += ci.low <= true_difference <= ci.high
    assert covered >= 34  # nominal 95% of 40 = 38; allow sampling noise


def test_bootstrap_ci_is_reproducible_with_a_seed():
    a, b = np.arange(10.0), np.zeros(10)
    assert bootstrap_ci(a, b, seed=1) == bootstrap_ci(a, b, seed=1)


def test_win_tie_loss_counts():
    assert win_tie_loss([1, 2, 3, 4], [0, 2, 5, 3.95], tol=0.1) == (1, 2, 1)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="same length"):
        paired_t_test([1, 2], [1, 2, 3])
