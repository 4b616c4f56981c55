"""NSGA-II Pareto shaping and front quality, against pymoo (non-dominated sorting, crowding, hypervolume)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pymoo.indicators.hv import HV
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from eggroll_ndcg.es.pareto import crowding_distance, hypervolume, non_dominated, nsga2_fitness, pareto_ranks


def _points(seed: int, n: int = 40, k: int = 2, levels: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, k))
    return np.round(x * levels) / levels if levels else x


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


@pytest.mark.parametrize("seed,k,levels", [(0, 2, None), (1, 3, None), (2, 2, 5), (3, 3, 4)])
def test_ranks_equal_pymoo_non_dominated_sorting(seed, k, levels):
    x = _points(seed, k=k, levels=levels)
    fronts = NonDominatedSorting().do(-x)  # pymoo minimizes
    expected = np.empty(len(x), dtype=int)
    for rank, members in enumerate(fronts):
        expected[members] = rank
    assert np.array_equal(pareto_ranks(x), expected)


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3)])
def test_crowding_distance_equals_pymoo(seed, k):
    rng = np.random.default_rng(seed)
    front = np.abs(rng.standard_normal((30, k)))
    front /= np.linalg.norm(front, axis=1, keepdims=True)  # points on the unit sphere: one front
    assert (pareto_ranks(front) == 0).all()
    assert np.allclose(crowding_distance(front), calc_crowding_distance(-front))


@pytest.mark.parametrize("seed,k,levels", [(0, 2, None), (1, 3, None), (4, 2, 3), (5, 4, 3)])
def test_shaping_ranks_a_dominated_member_below_every_member_that_dominates_it(seed, k, levels):
    x = _points(seed, n=60, k=k, levels=levels)
    shaped = nsga2_fitness(torch.from_numpy(x)).numpy()
    pairs = 0
    for a, b in itertools.permutations(range(len(x)), 2):
        if _dominates(x[a], x[b]):
            assert shaped[a] > shaped[b]
            pairs += 1
    assert pairs > 0


def test_shaping_prefers_the_less_crowded_member_within_a_front():
    front = np.array([[0.0, 1.0], [0.1, 0.9], [0.5, 0.5], [0.12, 0.88], [1.0, 0.0]])
    shaped = nsga2_fitness(front).numpy()
    distance = crowding_distance(front)
    assert np.argsort(shaped).tolist() == np.argsort(distance, kind="stable").tolist()
    assert shaped.max() <= 0.5 and shaped.min() >= 0.0


def test_per_query_fitness_is_averaged_over_queries_first():
    x = torch.rand(10, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(nsga2_fitness(x), nsga2_fitness(x.mean(1)))


def test_non_finite_fitness_is_refused():
    with pytest.raises(ValueError, match="non-finite"):
        nsga2_fitness(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]))


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3)])
def test_non_dominated_mask_is_the_brute_force_one(seed, k):
    x = _points(seed, n=30, k=k, levels=4)
    expected = [not any(_dominates(x[j], x[i]) for j in range(len(x))) for i in range(len(x))]
    assert non_dominated(x).tolist() == expected


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3)])
def test_hypervolume_equals_pymoo(seed, k):
    x = _points(seed, n=25, k=k)
    reference = np.full(k, -0.1)
    assert hypervolume(x, reference) == pytest.approx(HV(ref_point=-reference)(-x), rel=1e-12)


def test_hypervolume_by_hand():
    """Two points (1, 2) and (2, 1) over reference (0, 0): 2 + 2 - 1 = 3."""
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), [0.0, 0.0]) == pytest.approx(3.0)
    assert hypervolume(np.zeros((0, 2)), [0.0, 0.0]) == 0.0
