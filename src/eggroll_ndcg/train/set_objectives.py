"""Set-level objectives (diversity, exposure fairness) and their combinations, batched over members x queries.

Every objective here is `(scores [..., B, P], batch, k) -> [..., B]`, higher is better, registered in
`train.objectives.OBJECTIVES` (so `diversity@10` parses like `ndcg@10`). The top k is `metrics.ranking.
rank_top_k` (score descending, ties by pool position, masked candidates last; a masked slot counts as empty).
Group objectives read `batch.doc_groups` [B, P] (`data.groups`; a `ValueError` says so when it is missing).
With e_r = 1 / log2(r + 1) the DCG exposure of rank r (1-based), zero below k:

- `diversity@k`   intra-list diversity: mean over pairs i < j of the real top-k of (1 - cos(h_i, h_j)) under
                  the frozen base embeddings `batch.doc_emb`; 0 with fewer than two real documents.
- `groups@k`      distinct groups among the real top k, divided by k (in [0, 1]).
- `alpha_ndcg@k`  alpha-NDCG (Clarke et al. 2008), alpha = 0.5, the subtopic of a relevant (grade >= 1)
                  document being its group: gain_r = rel_r (1 - alpha)^{c_r}, c_r the relevant documents of the
                  same group above r; the ideal ranks the pool's relevant documents greedily (round robin over
                  groups, which is optimal here), as ndeval does. Equal to ir_measures/pyndeval (tested).
- `exposure@k`    expected exposure (Diaz et al. 2020) by group: -sum_g (E_g - E*_g)^2, where E_g is the group's
                  expected exposure under Plackett-Luce sampling of softmax(scores / T) (T = 0.05, S = 16 Gumbel
                  samples from a fixed seed: common random numbers, so the value is deterministic and equal for
                  equal scores) and E*_g the exposure relevance deserves: documents of one grade share equally
                  the exposure of the ranks an ideal ranking gives that grade.
- `share@k`       deterministic exposure share: -1/2 sum_g |S_g - T_g| (minus the total variation distance),
                  S_g the share of the top-k exposure that group g gets, T_g its share of the pool's real
                  candidates (the proportional target).

`parse_set_objective("ndcg@10+0.5*diversity@10")` is the weighted sum; `vector_objective(["ndcg@10",
"diversity@10"])` returns [..., B, K] for Pareto shaping (`es.pareto`, read by `train.es_method`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..metrics.ranking import rank_top_k
from .batches import PoolBatch
from .objectives import OBJECTIVES, Objective, parse_objective

ALPHA = 0.5
EXPOSURE_TEMPERATURE = 0.05
EXPOSURE_SAMPLES = 16
EXPOSURE_SEED = 20200417


def _top(scores: Tensor, batch: PoolBatch, k: int) -> tuple[Tensor, Tensor]:
    """Top-k pool positions [..., B, k'] (k' = min(k, P)) and whether each slot is a real candidate."""
    mask = torch.broadcast_to(batch.mask, scores.shape)
    idx = rank_top_k(scores, min(k, scores.shape[-1]), mask)
    return idx, mask.gather(-1, idx)


def _groups(batch: PoolBatch, what: str) -> Tensor:
    if batch.doc_groups is None:
        raise ValueError(f"objective {what} needs document groups (batch.doc_groups); pass a grouping from "
                         "data.groups to gather_batch, e.g. through `eggroll-ndcg pareto --groups NAME`")
    return batch.doc_groups


def _exposure_weights(n: int, k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """e_r = 1/log2(r + 1) for ranks r = 1..n, zero for r > k: [n]."""
    r = torch.arange(1, n + 1, dtype=dtype, device=device)
    return torch.where(r <= k, 1.0 / torch.log2(r + 1), torch.zeros_like(r))


def intra_list_diversity(scores: Tensor, batch: PoolBatch, k: int) -> Tensor:
    """Mean pairwise cosine distance of the real top-k under the base embeddings: [..., B]."""
    idx, valid = _top(scores, batch, k)
    emb = torch.nn.functional.normalize(batch.doc_emb.to(torch.float64), dim=-1)  # [B, P, n]
    P = emb.shape[-2]
    gram = (emb @ emb.transpose(-1, -2)).reshape(emb.shape[:-2] + (P * P,))  # [B, P*P]
    kk = idx.shape[-1]
    pair = (idx[..., :, None] * P + idx[..., None, :]).reshape(idx.shape[:-1] + (kk * kk,))
    cos = gram.expand(idx.shape[:-1] + (P * P,)).gather(-1, pair).reshape(idx.shape + (kk,))
    upper = torch.ones(kk, kk, dtype=torch.bool, device=idx.device).triu(1)
    both = valid[..., :, None] & valid[..., None, :] & upper
    n_pairs = both.sum((-1, -2))
    total = torch.where(both, 1 - cos, torch.zeros_like(cos)).sum((-1, -2))
    return torch.where(n_pairs > 0, total / n_pairs.clamp(min=1), torch.zeros_like(total))


def distinct_groups(scores: Tensor, batch: PoolBatch, k: int) -> Tensor:
    """Distinct groups among the real top-k, over k: [..., B]."""
    idx, valid = _top(scores, batch, k)
    groups = torch.broadcast_to(_groups(batch, f"groups@{k}"), scores.shape).gather(-1, idx)
    groups = torch.where(valid, groups, torch.full_like(groups, -1)).sort(dim=-1).values
    first = torch.ones_like(groups, dtype=torch.bool)
    first[..., 1:] = groups[..., 1:] != groups[..., :-1]
    return (first & (groups >= 0)).sum(-1).to(torch.float64) / k


def _alpha_ideal(batch: PoolBatch, k: int, alpha: float) -> Tensor:
    """Ideal alpha-DCG@k [B] from the pool's relevant documents: the t-th relevant document of a group (by
    pool position) brings (1 - alpha)^t; the ideal ranks these gains in descending order."""
    groups = _groups(batch, f"alpha_ndcg@{k}")
    rel = batch.mask & (batch.grades >= 1)
    P = rel.shape[-1]
    before = torch.ones(P, P, dtype=torch.bool, device=rel.device).tril(-1)  # [i, j]: j before i
    earlier = ((groups[..., :, None] == groups[..., None, :]) & rel[..., None, :] & before).sum(-1)
    gains = torch.where(rel, (1 - alpha) ** earlier.to(torch.float64), torch.zeros(rel.shape, dtype=torch.float64,
                                                                                   device=rel.device))
    top = gains.sort(dim=-1, descending=True).values[..., : min(k, P)]
    return (top / torch.log2(torch.arange(2, top.shape[-1] + 2, dtype=torch.float64, device=rel.device))).sum(-1)


def alpha_ndcg(scores: Tensor, batch: PoolBatch, k: int, alpha: float = ALPHA) -> Tensor:
    """alpha-NDCG@k with a relevant document's group as its subtopic: [..., B] (0 when the ideal is 0)."""
    idx, valid = _top(scores, batch, k)
    groups = torch.broadcast_to(_groups(batch, f"alpha_ndcg@{k}"), scores.shape).gather(-1, idx)
    rel = valid & (torch.broadcast_to(batch.grades, scores.shape).gather(-1, idx) >= 1)
    kk = idx.shape[-1]
    before = torch.ones(kk, kk, dtype=torch.bool, device=idx.device).tril(-1)
    seen = ((groups[..., :, None] == groups[..., None, :]) & rel[..., None, :] & before).sum(-1)
    gain = torch.where(rel, (1 - alpha) ** seen.to(torch.float64), torch.zeros(rel.shape, dtype=torch.float64,
                                                                              device=rel.device))
    dcg = (gain / torch.log2(torch.arange(2, kk + 2, dtype=torch.float64, device=idx.device))).sum(-1)
    ideal = _alpha_ideal(batch, k, alpha)
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-300), torch.zeros_like(dcg))


def _group_totals(values: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """sum of values [..., B, X] per group (ids [..., B, X], -1 = none) -> [..., B, n_groups]."""
    safe = groups.clamp(min=0)
    values = torch.where(groups >= 0, values, torch.zeros_like(values))
    out = torch.zeros(values.shape[:-1] + (n_groups,), dtype=values.dtype, device=values.device)
    return out.scatter_add_(-1, safe, values)


def target_exposure(batch: PoolBatch, k: int) -> Tensor:
    """epsilon*_d [B, P]: the real candidates ranked by grade, each grade's documents sharing equally the
    exposure e_r of the ranks that grade occupies (Diaz et al.'s equal expected exposure of equal relevance)."""
    grades = torch.where(batch.mask, batch.grades.to(torch.float64), torch.full(batch.grades.shape, -1.0,
                                                                                 dtype=torch.float64,
                                                                                 device=batch.grades.device))
    P = grades.shape[-1]
    order = grades.sort(dim=-1, descending=True, stable=True).values  # [B, P]
    weights = _exposure_weights(P, k, torch.float64, grades.device).expand_as(order)
    same = order[..., :, None] == grades[..., None, :]  # [B, rank, doc]
    block_exposure = (same * weights[..., :, None]).sum(-2)  # [B, doc]: exposure of the ranks of its grade
    block_size = same.sum(-2).clamp(min=1)
    return torch.where(batch.mask, block_exposure / block_size, torch.zeros_like(block_exposure))


def expected_exposure(scores: Tensor, batch: PoolBatch, k: int) -> Tensor:
    """-sum_g (E_g - E*_g)^2 with E_g the Plackett-Luce expected group exposure at cutoff k: [..., B]."""
    groups = _groups(batch, f"exposure@{k}")
    n_groups = int(groups.max()) + 1 if groups.numel() else 1
    mask = torch.broadcast_to(batch.mask, scores.shape)
    generator = torch.Generator().manual_seed(EXPOSURE_SEED)
    uniform = torch.rand((EXPOSURE_SAMPLES,) + tuple(batch.mask.shape), generator=generator, dtype=torch.float64)
    gumbel = (-torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-12)))).to(scores.device)
    kk = min(k, scores.shape[-1])
    weights = _exposure_weights(kk, k, torch.float64, scores.device)
    full_groups = torch.broadcast_to(groups, scores.shape)
    exposure = torch.zeros(scores.shape[:-1] + (n_groups,), dtype=torch.float64, device=scores.device)
    logits = scores.to(torch.float64) / EXPOSURE_TEMPERATURE
    for s in range(EXPOSURE_SAMPLES):
        noisy = (logits + gumbel[s]).masked_fill(~mask, float("-inf"))
        top = noisy.topk(kk, dim=-1).indices
        real = mask.gather(-1, top)
        g = torch.where(real, full_groups.gather(-1, top), torch.full_like(top, -1))
        exposure += _group_totals(weights.expand(top.shape), g, n_groups)
    exposure /= EXPOSURE_SAMPLES
    target = _group_totals(target_exposure(batch, k), torch.where(batch.mask, groups, -1), n_groups)
    return -((exposure - target) ** 2).sum(-1)


def exposure_share(scores: Tensor, batch: PoolBatch, k: int) -> Tensor:
    """-1/2 sum_g |S_g - T_g| of the deterministic top k against the pool-proportional target: [..., B]."""
    groups = _groups(batch, f"share@{k}")
    n_groups = int(groups.max()) + 1 if groups.numel() else 1
    idx, valid = _top(scores, batch, k)
    g = torch.where(valid, torch.broadcast_to(groups, scores.shape).gather(-1, idx), torch.full_like(idx, -1))
    e = _exposure_weights(idx.shape[-1], k, torch.float64, idx.device).expand(idx.shape)
    got = _group_totals(e, g, n_groups)
    got = got / got.sum(-1, keepdim=True).clamp(min=1e-300)
    pool = _group_totals(batch.mask.to(torch.float64), torch.where(batch.mask, groups, -1), n_groups)
    target = pool / pool.sum(-1, keepdim=True).clamp(min=1e-300)
    return -0.5 * (got - target).abs().sum(-1)


SET_OBJECTIVES = {"diversity": intra_list_diversity, "groups": distinct_groups, "alpha_ndcg": alpha_ndcg,
                  "exposure": expected_exposure, "share": exposure_share}
for _name, _fn in SET_OBJECTIVES.items():
    if _name not in OBJECTIVES:
        OBJECTIVES.register(_name, lambda k, name=_name, fn=_fn: Objective(name, k, fn))
GROUP_OBJECTIVES = frozenset({"groups", "alpha_ndcg", "exposure", "share"})  # read batch.doc_groups


def needs_groups(objective: Objective) -> bool:
    """Whether `objective` (or a term of a combined one) reads document groups."""
    if isinstance(objective, CombinedObjective):
        return any(needs_groups(term) for _, term in objective.terms)
    return objective.name.partition("@")[0] in GROUP_OBJECTIVES


@dataclass(frozen=True)
class CombinedObjective(Objective):
    """sum_i w_i f_i (`vector=False`, [..., B]) or the stack of the f_i (`vector=True`, [..., B, K])."""

    terms: tuple[tuple[float, Objective], ...] = ()
    vector: bool = False
    text: str = ""

    @property
    def name(self) -> str:
        return self.text

    @property
    def width(self) -> int | None:
        """K, the trailing axis of a vector objective's value (None for a weighted sum)."""
        return len(self.terms) if self.vector else None

    def __call__(self, scores: Tensor, batch: PoolBatch) -> Tensor:
        values = [objective(scores, batch).to(torch.float64) for _, objective in self.terms]
        if self.vector:
            return torch.stack(values, dim=-1)
        return sum(weight * value for (weight, _), value in zip(self.terms, values))


_TERM = re.compile(r"^\s*(?:([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?([A-Za-z_]+@[0-9]+)\s*$")


def parse_set_objective(text: str) -> Objective:
    """"ndcg@10+0.5*diversity@10" -> the weighted sum (a plain "ndcg@10" -> that objective); `ValueError`."""
    if "+" not in text and "*" not in text:
        return parse_objective(text)
    terms = []
    for part in text.split("+"):
        match = _TERM.match(part)
        if not match:
            raise ValueError(f"objective {text!r}: expected terms WEIGHT*METRIC@K joined by '+', got {part!r}")
        terms.append((float(match.group(1) or 1.0), parse_objective(match.group(2))))
    return CombinedObjective("weighted", max(o.k for _, o in terms), _unused, terms=tuple(terms), text=text)


def vector_objective(names: Sequence[str]) -> CombinedObjective:
    """The objectives `names` stacked into [..., B, K] (the multi-objective fitness of Pareto shaping)."""
    terms = tuple((1.0, parse_objective(name)) for name in names)
    return CombinedObjective("pareto", max(o.k for _, o in terms), _unused, terms=terms, vector=True,
                             text=",".join(names))


def _unused(scores: Tensor, batch: PoolBatch, k: int) -> Tensor:  # CombinedObjective overrides __call__
    raise NotImplementedError


# ---- differentiable surrogates (for the gradient baselines) ------------------------------------------------

def soft_diversity(scores: Tensor, batch: PoolBatch, temperature: float) -> Tensor:
    """Expected pairwise cosine distance of two independent draws from p = softmax(scores / T) over the real
    candidates: sum_{i != j} p_i p_j (1 - cos_ij) / (1 - sum_i p_i^2), a smooth stand-in for diversity@k: [B]."""
    p = torch.softmax(scores.masked_fill(~batch.mask, float("-inf")) / temperature, dim=-1)
    emb = torch.nn.functional.normalize(batch.doc_emb, dim=-1)
    distance = 1 - emb @ emb.transpose(-1, -2)
    pairs = torch.einsum("bi,bij,bj->b", p, distance, p)
    return pairs / (1 - (p * p).sum(-1)).clamp(min=1e-6)


def soft_share(scores: Tensor, batch: PoolBatch, temperature: float) -> Tensor:
    """-1/2 sum_g |P_g - T_g| with P_g the softmax(scores / T) mass of group g and T_g its pool share: [B]."""
    groups = _groups(batch, "the share surrogate")
    n_groups = int(groups.max()) + 1
    p = torch.softmax(scores.masked_fill(~batch.mask, float("-inf")) / temperature, dim=-1)
    g = torch.where(batch.mask, groups, -1)
    got = _group_totals(p, g, n_groups)
    pool = _group_totals(batch.mask.to(p.dtype), g, n_groups)
    return -0.5 * (got - pool / pool.sum(-1, keepdim=True)).abs().sum(-1)


def soft_groups(scores: Tensor, batch: PoolBatch, temperature: float, k: int = 10) -> Tensor:
    """Expected distinct groups, over k, of k independent draws from p = softmax(scores / T):
    sum_g (1 - (1 - P_g)^k) / k with P_g the softmax mass of group g, a smooth stand-in for groups@k: [B]."""
    groups = _groups(batch, "the groups surrogate")
    p = torch.softmax(scores.masked_fill(~batch.mask, float("-inf")) / temperature, dim=-1)
    mass = _group_totals(p, torch.where(batch.mask, groups, -1), int(groups.max()) + 1)
    return (1 - (1 - mass).clamp(min=0) ** k).sum(-1) / k


SURROGATES = {"diversity": soft_diversity, "share": soft_share, "groups": soft_groups}
__all__ = ["CombinedObjective", "SET_OBJECTIVES", "SURROGATES", "alpha_ndcg", "distinct_groups",
           "expected_exposure", "exposure_share", "intra_list_diversity", "parse_set_objective", "soft_diversity",
           "soft_groups", "soft_share", "target_exposure", "vector_objective"]
