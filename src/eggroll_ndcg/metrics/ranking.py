"""Batched ranking metrics in torch: NDCG@k, MRR@k, Recall@k and MAP@k over score tensors.

Shapes: ``scores``, ``grades`` and ``mask`` are ``[..., P]`` (P = pool size; leading dims are any batch dims,
for example ``[N members, Q queries, P]``). ``ideal_grades`` is ``[..., J]``: the query's positive judged
grades from *all* its qrels (0-padded), broadcastable against the leading dims of ``scores``
(``[Q, J]`` works with ``scores [N, Q, P]``). Every measure comes back as ``[..., len(ks)]``.

Ranking rule (exact, no epsilons): candidates are ordered by score descending, and score ties by pool
position ascending (the lower position ranks first). Pools are stored in doc-id-descending order, so this
equals trec_eval's "score descending, then doc id descending". Masked candidates never rank and never count.

Definitions, with rank r = 1, 2, ..., rel_r = 1 if grade_r >= 1 else 0, R = number of relevant judged documents
of the query (entries of ``ideal_grades`` >= 1), and k cut at the pool size when k > P:

- DCG@k  = sum_{r<=k} gain(grade_r) / log2(r + 1), gain = grade (linear, trec_eval) or 2^grade - 1
  (exponential); grades <= 0 give gain 0.
- NDCG@k = DCG@k / IDCG@k, where IDCG@k is the DCG@k of ``ideal_grades`` sorted descending; 0 when IDCG@k = 0.
- MRR@k  = 1 / (rank of the first relevant candidate) if it lies within the top k, else 0.
- Recall@k = (sum_{r<=k} rel_r) / R, 0 when R = 0 (trec_eval ``recall_k``).
- MAP@k  = (sum_{r<=k} rel_r * Precision@r) / R, 0 when R = 0 (trec_eval ``map_cut_k``: the denominator is
  all relevant judged documents, not only the retrieved ones).

Two paths give these values (``ranking_metrics(method=...)``): "topk" ranks the top max(ks) of every pool
(:func:`rank_top_k`); "rank" (:mod:`.relevant`, :mod:`.rank_count`) counts, for each relevant candidate, the
candidates that beat it (O(P x relevant) comparisons per ranking, no sort), which is the fast fitness path
when pools hold a handful of relevant candidates. "auto" picks one (:func:`.relevant.choose_method`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from .relevant import RANK_MAX_RELEVANT, check_no_nan, choose_method, ranked_sums, relevant_ranks, relevant_slots

Gain = Literal["linear", "exponential"]
Method = Literal["auto", "topk", "rank"]
MEASURES = ("ndcg", "mrr", "recall", "map")

__all__ = ["MEASURES", "RANK_MAX_RELEVANT", "choose_method", "ideal_dcg", "rank_top_k", "ranking_metrics",
           "ndcg_at_k", "mrr_at_k", "recall_at_k", "map_at_k"]


def _compute_dtype(scores: Tensor) -> torch.dtype:
    """float64 for float64 scores (exact comparisons with trec_eval), float32 otherwise (also for bfloat16)."""
    return torch.float64 if scores.dtype == torch.float64 else torch.float32


def _gains(grades: Tensor, gain: Gain, dtype: torch.dtype) -> Tensor:
    """gain(g) = max(g, 0) (linear) or 2^max(g, 0) - 1 (exponential), computed in ``dtype``."""
    g = grades.to(dtype).clamp(min=0)
    if gain == "linear":
        return g
    if gain == "exponential":
        return torch.exp2(g) - 1
    raise ValueError(f"gain must be 'linear' or 'exponential', got {gain!r}")


def _discounts(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[n] discounts 1 / log2(r + 1) for ranks r = 1..n."""
    ranks = torch.arange(1, n + 1, dtype=dtype, device=device)
    return 1.0 / torch.log2(ranks + 1)


def _cut_positions(ks: Sequence[int], length: int, device: torch.device) -> Tensor:
    """[len(ks)] index of the last rank that each cut k covers, min(k, length) - 1 (length >= 1)."""
    return torch.tensor([min(k, length) - 1 for k in ks], dtype=torch.long, device=device)


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks}")
    return ks


def ideal_dcg(ideal_grades: Tensor, ks: Sequence[int], *, gain: Gain = "linear",
              dtype: torch.dtype = torch.float32) -> Tensor:
    """IDCG@k for each cut k: the DCG@k of the query's judged grades sorted descending.

    ``ideal_grades`` [..., J] (0-padded; order does not matter) -> [..., len(ks)] in ``dtype``.
    IDCG@k = sum_{r <= min(k, J)} gain(g_(r)) / log2(r + 1) with g_(1) >= g_(2) >= ... . Precompute it once per
    query and pass it to :func:`ranking_metrics` as ``idcg=`` to skip the work in a training loop.
    """
    ks = _check_ks(ks)
    lead = ideal_grades.shape[:-1]
    J = ideal_grades.shape[-1]
    if J == 0:
        return torch.zeros(*lead, len(ks), dtype=dtype, device=ideal_grades.device)
    depth = min(max(ks), J)
    gains = _gains(ideal_grades, gain, dtype)
    top = torch.topk(gains, depth, dim=-1, largest=True, sorted=True).values  # ties do not matter here
    dcg = torch.cumsum(top * _discounts(depth, dtype, gains.device), dim=-1)
    return dcg.index_select(-1, _cut_positions(ks, depth, gains.device))


def rank_top_k(scores: Tensor, k: int, mask: Tensor | None = None) -> Tensor:
    """Pool positions of the top ``k`` candidates, in rank order, with exact tie handling.

    ``scores`` [..., P], ``mask`` [..., P] bool (True = real candidate) -> LongTensor [..., k], 1 <= k <= P.
    Order: score descending, then pool position ascending; masked candidates come after every real
    candidate (they only appear when fewer than k real candidates exist). NaN at an unmasked candidate
    raises ValueError.

    Method (no P x P tensors, no full sort when k << P):

    1. ``torch.topk`` of k + 1 sorted values. torch ranks NaN above everything, so a NaN anywhere shows up
       here. When the k + 1 values of a row are all distinct, its top-k set and order are already exact.
    2. Rows with an equal pair among those k + 1 values are redone by :func:`_order_ties`.
    """
    P = scores.shape[-1]
    if not 1 <= k <= P:
        raise ValueError(f"k must lie in [1, P={P}], got {k}")
    if mask is not None:
        mask = torch.broadcast_to(mask, scores.shape)
    s = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
    vals, idx = torch.topk(s, min(k + 1, P), dim=-1, largest=True, sorted=True)
    if bool(torch.isnan(vals).any()):
        raise ValueError("scores contain NaN (at unmasked candidates); a ranking of NaN is undefined")
    tied = (vals[..., 1:] == vals[..., :-1]).any(-1)
    ranked = idx[..., :k]
    if not bool(tied.any()):
        return ranked
    flat = ranked.reshape(-1, k).clone()
    rows = tied.reshape(-1).nonzero().squeeze(-1)
    m_r = torch.ones(len(rows), P, dtype=torch.bool, device=s.device) if mask is None else \
        mask.reshape(-1, P)[rows]
    flat[rows] = _order_ties(s.reshape(-1, P)[rows], m_r, vals.reshape(-1, vals.shape[-1])[rows],
                             idx.reshape(-1, idx.shape[-1])[rows], k)
    return flat.reshape(ranked.shape)


def _order_ties(s: Tensor, mask: Tensor, vals: Tensor, idx: Tensor, k: int) -> Tensor:
    """Exact top-k order of rows with ties. s, mask [R, P]; topk ``vals``, ``idx`` [R, k'], k' = min(k + 1, P).

    1. Order the k' topk entries by two stable sorts of k' entries: position (real before masked), then
       score descending. This is exact for every candidate whose score is above the k-th score t.
    2. Only where the k-th and (k+1)-th scores are equal (a tie across the cut) the topk set itself may be
       wrong: there the slots after the candidates above t go to the candidates equal to t with the lowest
       positions (real before masked), found with a cumulative count along the pool.
    """
    P = s.shape[-1]
    # Position key: pool position, pushed after every real position for masked candidates (those hold -inf
    # and can only tie with real -inf scores).
    key = idx + P * (~mask).gather(-1, idx).long()
    key_sorted, perm = torch.sort(key, dim=-1)
    vals, order = torch.sort(vals.gather(-1, perm), dim=-1, descending=True, stable=True)
    ranked = (torch.gather(key_sorted, -1, order) % P)[..., :k]
    if vals.shape[-1] == k:  # k = P: the whole pool is ranked, the set cannot be wrong
        return ranked
    across = (vals[..., k] == vals[..., k - 1]).nonzero().squeeze(-1)  # rows with a tie across the cut
    if len(across) == 0:
        return ranked
    s, mask, t = s[across], mask[across], vals[across, k - 1 : k]  # t = the k-th largest score
    n_above = (s > t).sum(-1, keepdim=True)
    tie = s == t
    real_tie, masked_tie = tie & mask, tie & ~mask
    tie_rank = torch.where(real_tie, real_tie.cumsum(-1) - 1,
                           real_tie.sum(-1, keepdim=True) + masked_tie.cumsum(-1) - 1)
    slot = torch.where(tie & (tie_rank < k), tie_rank, torch.full_like(tie_rank, k))  # slot k = discard
    positions = torch.arange(P, device=s.device).expand_as(s)
    first_ties = torch.zeros(len(s), k + 1, dtype=torch.long, device=s.device).scatter_(-1, slot, positions)
    r = torch.arange(k, device=s.device)
    tail = first_ties.gather(-1, (r - n_above).clamp(min=0))
    ranked[across] = torch.where(r < n_above, ranked[across], tail)
    return ranked


def ranking_metrics(scores: Tensor, grades: Tensor, *, ks: Sequence[int], ideal_grades: Tensor,
                    mask: Tensor | None = None, measures: Sequence[str] = MEASURES, gain: Gain = "linear",
                    idcg: Tensor | None = None, method: Method = "auto") -> dict[str, Tensor]:
    """NDCG@k, MRR@k, Recall@k and MAP@k for every ranking in a batch, for several cuts k at once.

    Args:
        scores: [..., P] float32 / bfloat16 / float64 scores; higher ranks first. NaN raises ValueError.
        grades: [..., P] judged grade of each candidate (0 for unjudged); broadcastable to ``scores``.
        ks: cuts, e.g. (10,) or (1, 10, 100); k > P is allowed (it counts the whole pool).
        ideal_grades: [..., J] the query's positive judged grades from all its qrels, 0-padded; broadcastable
            against ``scores.shape[:-1]``. Gives IDCG and R (the number of relevant judged documents).
        mask: [..., P] bool, True = real candidate; masked candidates never rank and never count.
        measures: any of "ndcg", "mrr", "recall", "map".
        gain: "linear" (trec_eval) or "exponential" (2^grade - 1), for NDCG only.
        idcg: optional precomputed :func:`ideal_dcg` ``[..., len(ks)]`` (same ks and gain).
        method: "topk" (rank the top max(ks) of every pool, :func:`rank_top_k`), "rank" (count, for each
            relevant candidate, the candidates that beat it; no sort, :mod:`.relevant`), or "auto": "rank"
            when the pools hold at most ``RANK_MAX_RELEVANT`` relevant candidates and the counting is cheap
            on this device (:func:`eggroll_ndcg.metrics.relevant.choose_method`), else "topk". Both give the
            same values (up to the order of floating-point additions).

    Returns:
        {measure: Tensor [..., len(ks)]}, float64 for float64 scores, else float32. Definitions are in the
        module docstring; ties are broken by pool position (lower first). Empty pools (P = 0 or all masked)
        and queries without relevant documents give 0.

    Example:
        >>> s = torch.tensor([[0.9, 0.1, 0.5]]); g = torch.tensor([[0., 1., 2.]])
        >>> ranking_metrics(s, g, ks=[1, 3], ideal_grades=torch.tensor([[2., 1.]]))["mrr"]
        tensor([[0.0000, 0.5000]])
    """
    ks = _check_ks(ks)
    unknown = set(measures) - set(MEASURES)
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; choose from {MEASURES}")
    if method not in ("auto", "topk", "rank"):
        raise ValueError(f"method must be 'auto', 'topk' or 'rank', got {method!r}")
    if not (scores.is_floating_point()):
        raise ValueError(f"scores must be a floating point tensor, got {scores.dtype}")
    dtype = _compute_dtype(scores)
    device = scores.device
    P = scores.shape[-1]
    lead = scores.shape[:-1]
    torch.broadcast_to(grades, scores.shape)  # grades and mask must broadcast to scores (kept unexpanded)
    if mask is not None:
        mask = mask.to(device=device, dtype=torch.bool)
        torch.broadcast_to(mask, scores.shape)

    ideal_grades = ideal_grades.to(device)
    out_shape = torch.broadcast_shapes(lead, ideal_grades.shape[:-1]) + (len(ks),)
    if P == 0 or scores.numel() == 0:
        return {m: torch.zeros(out_shape, dtype=dtype, device=device) for m in measures}

    sums = None
    if method != "topk":
        slots = relevant_slots(scores, grades, mask, dtype)  # one sync: the largest relevant count
        if method == "rank" or choose_method(slots, P, device) == "rank":
            check_no_nan(scores, mask)
            ranks = relevant_ranks(scores, slots)
            sums = ranked_sums(ranks, slots, _gains(slots.grades, gain, dtype), ks, measures)
    if sums is None:
        sums = _top_k_sums(scores, torch.broadcast_to(grades, scores.shape),
                           None if mask is None else torch.broadcast_to(mask, scores.shape), ks, measures, gain, dtype)

    n_rel = (ideal_grades >= 1).sum(-1, keepdim=True).to(dtype)  # R, [..., 1]
    result: dict[str, Tensor] = {}
    for m in measures:
        value = sums[m]
        if m == "ndcg":
            if idcg is None:
                idcg_k = ideal_dcg(ideal_grades, ks, gain=gain, dtype=dtype)
            else:
                idcg_k = idcg.to(device=device, dtype=dtype)
            value = torch.where(idcg_k > 0, value / idcg_k.clamp(min=torch.finfo(dtype).tiny), 0.0)
        elif m in ("recall", "map"):
            value = value / n_rel.clamp(min=1)
        result[m] = torch.broadcast_to(value, out_shape)
    return result


def _top_k_sums(scores: Tensor, grades: Tensor, mask: Tensor | None, ks: list[int], measures: Sequence[str],
                gain: Gain, dtype: torch.dtype) -> dict[str, Tensor]:
    """The top-k path: rank the top min(max(ks), P) of every pool, then DCG@k, RR@k, hits@k, AP-sum@k.

    Returns {measure: [..., len(ks)]} numerators; :func:`ranking_metrics` divides by IDCG@k or R.
    """
    device = scores.device
    depth = min(max(ks), scores.shape[-1])
    ranked = rank_top_k(scores, depth, mask)  # [..., depth]
    g = grades.gather(-1, ranked).to(dtype)
    if mask is not None:
        g = g * mask.gather(-1, ranked)  # masked candidates count 0 (they rank last anyway)
    cut = _cut_positions(ks, depth, device)
    rel = (g >= 1).to(dtype)  # [..., depth]
    ranks = torch.arange(1, depth + 1, dtype=dtype, device=device)
    sums: dict[str, Tensor] = {}
    for m in measures:
        if m == "ndcg":
            sums[m] = torch.cumsum(_gains(g, gain, dtype) * _discounts(depth, dtype, device), -1).index_select(-1, cut)
        elif m == "mrr":
            sums[m] = torch.cummax(rel / ranks, -1).values.index_select(-1, cut)
        elif m == "recall":
            sums[m] = torch.cumsum(rel, -1).index_select(-1, cut)
        else:  # map
            sums[m] = torch.cumsum(rel * (torch.cumsum(rel, -1) / ranks), -1).index_select(-1, cut)
    return sums


def _single(measure: str, scores: Tensor, grades: Tensor, k: int, ideal_grades: Tensor,
            mask: Tensor | None, gain: Gain = "linear") -> Tensor:
    out = ranking_metrics(scores, grades, ks=[k], ideal_grades=ideal_grades, mask=mask, measures=(measure,),
                          gain=gain)
    return out[measure][..., 0]


def ndcg_at_k(scores: Tensor, grades: Tensor, k: int, *, ideal_grades: Tensor, mask: Tensor | None = None,
              gain: Gain = "linear") -> Tensor:
    """NDCG@k, [..., P] -> [...]. See :func:`ranking_metrics`."""
    return _single("ndcg", scores, grades, k, ideal_grades, mask, gain)


def mrr_at_k(scores: Tensor, grades: Tensor, k: int, *, ideal_grades: Tensor,
             mask: Tensor | None = None) -> Tensor:
    """MRR@k (reciprocal rank of the first relevant candidate within the top k, else 0), [..., P] -> [...]."""
    return _single("mrr", scores, grades, k, ideal_grades, mask)


def recall_at_k(scores: Tensor, grades: Tensor, k: int, *, ideal_grades: Tensor,
                mask: Tensor | None = None) -> Tensor:
    """Recall@k (relevant in the top k / all relevant judged documents), [..., P] -> [...]."""
    return _single("recall", scores, grades, k, ideal_grades, mask)


def map_at_k(scores: Tensor, grades: Tensor, k: int, *, ideal_grades: Tensor,
             mask: Tensor | None = None) -> Tensor:
    """MAP@k (trec_eval map_cut_k), [..., P] -> [...]. See :func:`ranking_metrics`."""
    return _single("map", scores, grades, k, ideal_grades, mask)
