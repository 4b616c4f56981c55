"""Paired significance tests for two systems evaluated on the same queries.

All functions take paired per-query values ``a`` and ``b`` (same length n, same query order) and work on the
differences d_i = a_i - b_i. They are pure: randomness comes from an explicit ``seed``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats as _scipy_stats

__all__ = ["TTest", "Interval", "WinTieLoss", "paired_t_test", "randomization_test", "bootstrap_ci",
           "holm", "win_tie_loss"]


class TTest(NamedTuple):
    statistic: float
    p_value: float


class Interval(NamedTuple):
    estimate: float  # mean difference mean(a - b)
    low: float
    high: float


class WinTieLoss(NamedTuple):
    wins: int    # a > b
    ties: int
    losses: int  # a < b


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-d arrays of the same length, got shapes {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("a and b are empty")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite")
    return a - b


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Two-sided paired t-test (the same as ``scipy.stats.ttest_rel``).

    t = mean(d) / (sd(d) / sqrt(n)), sd with n - 1 degrees of freedom; p = 2 * P(T_{n-1} >= |t|).
    When every difference is 0 the systems are indistinguishable: t = 0, p = 1 (scipy returns NaN). When
    sd(d) = 0 but mean(d) != 0: t = +-inf, p = 0. Needs n >= 2.
    """
    d = _differences(a, b)
    n = d.size
    if n < 2:
        raise ValueError("the paired t-test needs at least 2 pairs")
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return TTest(0.0, 1.0) if mean == 0.0 else TTest(math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    p = float(2.0 * _scipy_stats.t.sf(abs(t), df=n - 1))
    return TTest(t, min(p, 1.0))


def randomization_test(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 10_000,
                       seed: int = 0) -> float:
    """Two-sided paired randomization (sign-flip) test of mean(d) = 0; returns the p-value.

    Under H0 each d_i is as likely to be -d_i, so the null distribution of the statistic |mean(s * d)| comes
    from random signs s_i in {-1, +1}. p = (1 + #{resamples with |mean(s d)| >= |mean(d)|}) / (1 + n_resamples)
    (the observed assignment counts once, so p > 0). When 2^n <= n_resamples all sign vectors are enumerated
    and p = #{s : |mean(s d)| >= |mean(d)|} / 2^n exactly. Identical systems give p = 1. A relative tolerance
    of 1e-12 absorbs float rounding in the comparison.
    """
    d = _differences(a, b)
    n = d.size
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).sum()) / n)
    if n <= 20 and 2**n <= n_resamples:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # every sign vector, [2^n, n]
        null = np.abs(signs @ d) / n
        return float(np.mean(null >= observed - tol))
    rng = np.random.default_rng(seed)
    count = 0
    for start in range(0, n_resamples, 1024):  # chunks keep memory at 1024 x n
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(1024, n_resamples - start), n))
        count += int(np.sum(np.abs(signs @ d) / n >= observed - tol))
    return (1 + count) / (1 + n_resamples)


def bootstrap_ci(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap confidence interval of the mean difference mean(a - b).

    Resample the n paired differences with replacement ``n_resamples`` times, take each resample's mean, and
    return the (1 - confidence)/2 and (1 + confidence)/2 quantiles of those means, with the observed mean.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    d = _differences(a, b)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 1024):
        stop = min(start + 1024, n_resamples)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(d.mean()), float(low), float(high))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    Rejecting every hypothesis with adj <= alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or ((p < 0) | (p > 1) | np.isnan(p)).any():
        raise ValueError("p_values must be a 1-d sequence of numbers in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def win_tie_loss(a: Sequence[float], b: Sequence[float], *, tol: float = 0.0) -> WinTieLoss:
    """Counts of queries where a beats b (a - b > tol), ties (|a - b| <= tol), and losses (a - b < -tol)."""
    d = _differences(a, b)
    wins = int(np.sum(d > tol))
    losses = int(np.sum(d < -tol))
    return WinTieLoss(wins, d.size - wins - losses, losses)
