"""Re-ranking baselines for the multi-objective fronts: MMR for diversity, greedy exposure targeting for fairness.

Both re-rank the top `k` of each query's candidate pool and return *rank-encoded scores* [B, P]: the i-th
chosen candidate gets `RANKED - i`, every other candidate keeps its original score (cosines lie in [-1, 1], far
below `RANKED - k`), so any objective of `train.set_objectives` / `metrics.ranking` evaluates the re-ranked
list unchanged. Masked candidates are never chosen.

- **MMR** (Carbonell & Goldstein 1998): with relevance s_i (the head's score) and similarity cos(h_i, h_j)
  under the frozen base embeddings, step r picks
      argmax_{i not in S} lambda * s_i - (1 - lambda) * max_{j in S} cos(h_i, h_j)       (max over empty S = 0).
  lambda = 1 is the original ranking.
- **Exposure targeting** (greedy, in the spirit of FA*IR's prefix constraints): with X_g the DCG exposure
  e_r = 1/log2(r + 1) given so far to group g and T_g the group's share of the pool, step r picks
      argmax_i s_i - beta * TV(X + e_r 1[g_i], T),    TV(X, T) = 1/2 sum_g |X_g / sum X - T_g|,
  so beta = 0 is the original ranking and a large beta reaches the target share as closely as a prefix can.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..train.batches import PoolBatch

RANKED = 1e4


def _encode(scores: Tensor, chosen: list[Tensor]) -> Tensor:
    """Rank-encoded scores: chosen[r] [B] (pool positions, -1 = none) gets RANKED - r."""
    out = scores.clone().to(torch.float64)
    rows = torch.arange(scores.shape[0], device=scores.device)
    for r, pick in enumerate(chosen):
        ok = pick >= 0
        out[rows[ok], pick[ok]] = RANKED - r
    return out


def mmr_rerank(scores: Tensor, batch: PoolBatch, k: int, lam: float) -> Tensor:
    """MMR over the pool at trade-off `lam` in [0, 1]: rank-encoded scores [B, P] (see the module docstring)."""
    emb = torch.nn.functional.normalize(batch.doc_emb.to(torch.float64), dim=-1)
    sim = emb @ emb.transpose(-1, -2)  # [B, P, P]
    s = scores.to(torch.float64)
    available = batch.mask.clone()
    max_sim = torch.zeros_like(s)
    chosen = []
    for _ in range(min(k, s.shape[-1])):
        value = (lam * s - (1 - lam) * max_sim).masked_fill(~available, float("-inf"))
        pick, rows = _take_best(value, available, chosen)
        max_sim[rows] = torch.maximum(max_sim[rows], sim[rows, pick[rows]])
    return _encode(scores, chosen)


def exposure_rerank(scores: Tensor, batch: PoolBatch, k: int, beta: float) -> Tensor:
    """Greedy exposure targeting at strength `beta` >= 0: rank-encoded scores [B, P] (module docstring)."""
    if batch.doc_groups is None:
        raise ValueError("exposure re-ranking needs document groups (batch.doc_groups)")
    groups = torch.where(batch.mask, batch.doc_groups, -1)
    n_groups = int(groups.max()) + 1
    onehot = torch.nn.functional.one_hot(groups.clamp(min=0), n_groups).to(torch.float64)
    onehot = onehot * batch.mask[..., None]  # [B, P, G]
    target = onehot.sum(1) / onehot.sum((1, 2))[:, None].clamp(min=1)  # [B, G]
    s = scores.to(torch.float64)
    available = batch.mask.clone()
    given = torch.zeros_like(target)
    chosen = []
    for r in range(min(k, s.shape[-1])):
        e = 1.0 / torch.log2(torch.tensor(r + 2.0, dtype=torch.float64))
        after = given[:, None, :] + e * onehot  # [B, P, G]
        tv = 0.5 * (after / after.sum(-1, keepdim=True).clamp(min=1e-300) - target[:, None, :]).abs().sum(-1)
        value = (s - beta * tv).masked_fill(~available, float("-inf"))
        pick, rows = _take_best(value, available, chosen)
        given[rows] += e * onehot[rows, pick[rows]]
    return _encode(scores, chosen)


def _take_best(value: Tensor, available: Tensor, chosen: list[Tensor]) -> tuple[Tensor, Tensor]:
    """One greedy step: each query's highest-`value` available candidate [B] (-1 where none is left) is
    appended to `chosen` and marked unavailable; returns it and the rows that took one."""
    pick = value.argmax(-1)
    has = available.gather(-1, pick[:, None])[:, 0]
    pick = torch.where(has, pick, torch.full_like(pick, -1))
    chosen.append(pick)
    rows = has.nonzero().flatten()
    available[rows, pick[rows]] = False
    return pick, rows
