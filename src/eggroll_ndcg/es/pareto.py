"""Pareto shaping (NSGA-II, Deb et al. 2002) and front quality, for multi-objective fitness.

Every objective is higher-is-better. A population's fitness is `[N, K]` (member x objective) or `[N, Q, K]`
(per query; averaged over queries first, as `shaping` averages a `[N, Q]` fitness).

NSGA-II order: member a precedes b when rank(a) < rank(b) (non-dominated sorting: rank 0 is the
non-dominated set, rank 1 what is non-dominated once rank 0 is removed, ...), or when the ranks are equal
and a has the larger crowding distance. Crowding distance inside one front (pymoo's convention): for each
objective, sort the front, give the two extremes infinity and an interior member (f_next - f_prev) /
(f_max - f_min); average over the K objectives. `nsga2_fitness` turns the order into the one `[N]` vector that
`EggrollES.tell` takes:

    shaped_i = -rank_i + 0.5 * c_i / (1 + c_i)         (c_i = inf -> 0.5)

so a member of a better front always scores strictly above every member of a worse one (the crowding term
lies in [0, 0.5]), and within a front the less crowded member scores higher. The engine's own shaping
(e.g. `centered_rank`) then applies to this vector; it keeps the order.

Non-dominated sorting and hypervolume come from `moocore` (`pareto_rank`, `hypervolume`,
`is_nondominated`); pymoo is the test oracle.
"""

from __future__ import annotations

import moocore
import numpy as np
import torch
from torch import Tensor


def _points(fitness: Tensor | np.ndarray) -> np.ndarray:
    """[N, K] or [N, Q, K] -> [N, K] float64 numpy (query mean); a `ValueError` for other shapes or non-finite values."""
    array = fitness.detach().cpu().double().numpy() if isinstance(fitness, Tensor) else np.asarray(fitness, float)
    if array.ndim == 3:
        array = array.mean(axis=1)
    if array.ndim != 2:
        raise ValueError(f"multi-objective fitness must be [N, K] or [N, Q, K], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("multi-objective fitness has non-finite values")
    return array


def pareto_ranks(fitness: Tensor | np.ndarray) -> np.ndarray:
    """Non-dominated sorting rank of each member (0 = non-dominated), maximizing every objective: [N]."""
    return np.asarray(moocore.pareto_rank(_points(fitness), maximise=True), dtype=np.int64)


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """Crowding distance of the members of ONE front [M, K] -> [M] (inf at the extremes; pymoo's scale)."""
    m, k = points.shape
    if m <= 2:
        return np.full(m, np.inf)
    distance = np.zeros(m)
    for j in range(k):
        order = np.argsort(points[:, j], kind="stable")
        values = points[order, j]
        span = values[-1] - values[0]
        gaps = np.zeros(m)
        gaps[0] = gaps[-1] = np.inf
        if span > 0:
            gaps[1:-1] = (values[2:] - values[:-2]) / span
        distance[order] += gaps
    return distance / k


def nsga2_fitness(fitness: Tensor | np.ndarray) -> Tensor:
    """The NSGA-II order as one shaped value per member (see the module docstring): [N] float64."""
    points = _points(fitness)
    ranks = pareto_ranks(points)
    crowd = np.zeros(len(points))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowd[members] = crowding_distance(points[members])
    term = np.where(np.isinf(crowd), 0.5, 0.5 * crowd / (1 + np.where(np.isinf(crowd), 0, crowd)))
    shaped = torch.from_numpy(-ranks.astype(np.float64) + term)
    return shaped.to(fitness.device) if isinstance(fitness, Tensor) else shaped


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask [M] of the points that no other point dominates (maximizing; duplicates are all kept)."""
    return np.asarray(moocore.is_nondominated(np.asarray(points, float), maximise=True, keep_weakly=True))


def hypervolume(points: np.ndarray, reference: np.ndarray | list[float]) -> float:
    """Volume of the objective space dominated by `points` [M, K] and dominating `reference` [K] (maximizing).
    Points that do not dominate the reference add nothing."""
    points = np.asarray(points, float)
    if len(points) == 0:
        return 0.0
    return float(moocore.hypervolume(points, ref=np.asarray(reference, float), maximise=True))
