"""Fitness shaping: higher is better in, higher is better out, always ``[N]`` out.

Fitness is ``[N]`` (one value per member) or ``[N, Q]`` (one column per query). A 2-D fitness is reduced to
``[N]`` by the mean over queries, except in ``query_zscore``, which first z-scores each query's column over
members (so easy and hard queries weigh the same) and then averages.

Methods (compose with ``+``, applied left to right, e.g. ``"query_zscore+centered_rank"``):

* ``raw``            f (2-D: mean over queries). The plain ES estimator; used by the gradient claim test.
* ``centered_rank``  rank(f) / (N - 1) - 1/2, in [-1/2, 1/2]; tied values share their average rank.
* ``zscore``         (f - mean) / std (population std); all zeros when std = 0.
* ``query_zscore``   per query column: (f[:, q] - mean_q) / std_q (0 where std_q = 0), then mean over q.

Non-finite policy (``nan_policy``; NaN, ``+inf`` and ``-inf`` alike are failed evaluations): ``"raise"``
(default) raises ``ValueError`` naming the kinds of values and the members (and queries) concerned;
``"worst"`` replaces each non-finite value by the smallest finite fitness of its column (so the member ties
with the worst one; ``+inf`` too: an overflow is no evidence of a good member). A column without any finite
value always raises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ShapingFn = Callable[[Tensor], Tensor]


def handle_nan(fitness: Tensor, policy: str = "raise") -> Tensor:
    """Apply the non-finite policy to ``[N]`` or ``[N, Q]`` fitness; returns a finite tensor of the same shape.

    Non-finite = NaN, ``+inf`` or ``-inf``. ``policy="raise"``: ``ValueError`` naming the kinds, members and
    queries; ``"worst"``: ``f[i, q] <- min{f[k, q] finite}`` (raises if column ``q`` has no finite value).
    """
    if policy not in ("raise", "worst"):
        raise ValueError(f"nan_policy must be 'raise' or 'worst', got {policy!r}")
    bad = ~torch.isfinite(fitness)
    if not bool(bad.any()):
        return fitness
    cols = fitness if fitness.dim() == 2 else fitness[:, None]
    bad_cols = bad if bad.dim() == 2 else bad[:, None]
    if policy == "raise" or bool(bad_cols.all(dim=0).any()):
        raise ValueError(f"{_describe_non_finite(fitness)}; fix the fitness or pass nan_policy='worst'")
    worst = torch.where(bad_cols, torch.full_like(cols, float("inf")), cols).min(dim=0).values
    fixed = torch.where(bad_cols, worst.expand_as(cols), cols)
    return fixed if fitness.dim() == 2 else fixed[:, 0]


def _describe_non_finite(fitness: Tensor) -> str:
    """``"non-finite fitness (NaN, +inf) for members [1, 5] (queries [0, 2])"`` for ``[N]`` / ``[N, Q]``."""
    masks = {"NaN": torch.isnan(fitness), "+inf": torch.isposinf(fitness), "-inf": torch.isneginf(fitness)}
    kinds = [kind for kind, mask in masks.items() if bool(mask.any())]
    bad = ~torch.isfinite(fitness)
    bad_cols = bad if bad.dim() == 2 else bad[:, None]
    detail = f"members {_indices(bad_cols.any(dim=1))}"
    if fitness.dim() == 2:
        detail += f" (queries {_indices(bad_cols.any(dim=0))})"
    return f"non-finite fitness ({', '.join(kinds)}) for {detail}"


def _indices(mask: Tensor) -> list[int]:
    """Positions of the True entries of a 1-D mask, ascending."""
    return [int(i) for i in mask.nonzero().flatten()]


def _to_vector(fitness: Tensor) -> Tensor:
    return fitness.mean(dim=1) if fitness.dim() == 2 else fitness


def raw(fitness: Tensor) -> Tensor:
    """``f`` itself; a 2-D fitness is averaged over queries."""
    return _to_vector(fitness)


def centered_rank(fitness: Tensor) -> Tensor:
    """``rank / (N - 1) - 1/2`` with average ranks for ties (0-based ranks; the best member gets +1/2)."""
    f = _to_vector(fitness)
    n = f.shape[0]
    if n < 2:
        return torch.zeros_like(f)
    sorted_f = torch.sort(f).values
    below = torch.searchsorted(sorted_f, f, right=False)
    at_or_below = torch.searchsorted(sorted_f, f, right=True)
    rank = (below + at_or_below - 1).to(f.dtype) / 2
    return rank / (n - 1) - 0.5


def zscore(fitness: Tensor) -> Tensor:
    """``(f - mean) / std`` over members (population std); zeros when all values are equal."""
    f = _to_vector(fitness)
    return _zscore_columns(f[:, None])[:, 0]


def _zscore_columns(f: Tensor) -> Tensor:
    centered = f - f.mean(dim=0, keepdim=True)
    std = centered.pow(2).mean(dim=0, keepdim=True).sqrt()
    return torch.where(std > 0, centered / torch.where(std > 0, std, torch.ones_like(std)), torch.zeros_like(f))


def query_zscore(fitness: Tensor) -> Tensor:
    """Z-score each query's column over members, then average over queries: ``[N, Q] -> [N]``."""
    if fitness.dim() == 1:
        return zscore(fitness)
    return _zscore_columns(fitness).mean(dim=1)


def antithetic_differences(fitness: Tensor) -> Tensor:
    """``f[2j] - f[2j+1]`` (the + member minus the - member): ``[N, ...] -> [N/2, ...]``."""
    if fitness.shape[0] % 2:
        raise ValueError(f"population size must be even, got {fitness.shape[0]}")
    return fitness[0::2] - fitness[1::2]


METHODS: dict[str, ShapingFn] = {
    "raw": raw,
    "centered_rank": centered_rank,
    "zscore": zscore,
    "query_zscore": query_zscore,
}


def get_shaping(method: str | ShapingFn) -> ShapingFn:
    """A shaping function from a name (``"a+b"`` composes left to right) or a callable ``[N]|[N,Q] -> [N]``."""
    if callable(method):
        return method
    names = [part.strip() for part in method.split("+")]
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown shaping {unknown}; choose from {sorted(METHODS)} joined by '+'")
    fns = [METHODS[name] for name in names]

    def composed(fitness: Tensor) -> Tensor:
        for fn in fns:
            fitness = fn(fitness)
        return fitness

    return composed


def shape_fitness(fitness: Tensor, method: str | ShapingFn = "centered_rank", *, nan_policy: str = "raise") -> Tensor:
    """Non-finite policy, then the shaping ``method``: ``[N]`` or ``[N, Q]`` -> ``[N]`` (higher is better)."""
    if fitness.dim() not in (1, 2):
        raise ValueError(f"fitness must be [N] or [N, Q], got shape {tuple(fitness.shape)}")
    return get_shaping(method)(handle_nan(fitness, nan_policy))
