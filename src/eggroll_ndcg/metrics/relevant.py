"""The sort-free path of :func:`eggroll_ndcg.metrics.ranking.ranking_metrics`: metrics from relevant ranks.

NDCG@k, MRR@k, Recall@k and MAP@k only depend on where the relevant candidates land. With r_i the 0-based
rank of pool candidate i (:mod:`eggroll_ndcg.metrics.rank_count`) and the sums over the candidates of the
pool with grade g_i > 0 (unmasked):

- DCG@k       = sum_i gain(g_i) [r_i < k] / log2(r_i + 2)
- hits@k      = sum_i rel_i [r_i < k]                      (Recall@k = hits@k / R)
- RR@k        = max_i rel_i [r_i < k] / (r_i + 1)           (MRR@k; 0 when no relevant candidate is in the top k)
- AP-sum@k    = sum_i rel_i [r_i < k] (1 + #{rel j : r_j < r_i}) / (r_i + 1)   (MAP@k = AP-sum@k / R)

with rel_i = [g_i >= 1]. These equal the top-k sums exactly (the ranks are exact integers); only the order of
the floating-point additions differs. k > P needs nothing special, since r_i < P.

Canonical form. ``scores`` [*L, P] (L = leading dims) against grades and mask whose broadcast leading shape G
is usually a suffix of L ([N, Q, P] scores, [Q, P] grades): then the relevant set is found once per pool
of G, and the counts run on ``s`` [A, B, P] with A = prod(L) / prod(G) (members) and B = prod(G) (queries).
Otherwise grades and mask are expanded to L (A = 1).
"""

from __future__ import annotations

import functools

import math
from typing import Literal, NamedTuple, Sequence

import torch
from torch import Tensor

from .rank_count import MIN_COMPILED_WORK, Kernel, _Compiled, beating_counts, compiled_kernel_usable

__all__ = ["RANK_MAX_RELEVANT", "SLOT_MULTIPLE", "RelevantSlots", "choose_method", "check_no_nan",
           "relevant_slots", "relevant_ranks", "ranked_sums"]

SLOT_MULTIPLE = 2  # relevant slots per pool are rounded up to a multiple of this (R = 1 is its own graph)
RANK_MAX_RELEVANT = 32  # method="auto" counts ranks (no sort) up to this many relevant slots per pool


class RelevantSlots(NamedTuple):
    """The relevant candidates of each pool of the canonical form (unused slots: valid False, grade 0).

    lead: L (scores.shape[:-1]); A, B: the canonical sizes; pos [B, R] long pool positions; valid [B, R]
    bool; grades [B, R] in the compute dtype; pad [B, P] in the compute dtype (0 = real, NaN = masked).
    """

    lead: torch.Size
    A: int
    B: int
    pos: Tensor
    valid: Tensor
    grades: Tensor
    pad: Tensor

    @property
    def count(self) -> int:
        """R, the number of slots per pool (the largest relevant count, rounded up)."""
        return self.pos.shape[-1]


def _group_shape(lead: torch.Size, grades: Tensor, mask: Tensor | None) -> torch.Size:
    """G: the leading shape of grades and mask broadcast, if (without its leading 1s) it is a suffix of L; else L."""
    shapes = [grades.shape[:-1]] + ([mask.shape[:-1]] if mask is not None else [])
    group = torch.broadcast_shapes(*shapes)
    core = list(group)
    while core and core[0] == 1:
        core.pop(0)
    if len(core) <= len(lead) and list(lead[len(lead) - len(core):]) == core:
        return group
    return lead


def relevant_slots(scores: Tensor, grades: Tensor, mask: Tensor | None, dtype: torch.dtype) -> RelevantSlots:
    """The positions of the judged-relevant real candidates (grade > 0, unmasked) of every pool.

    ``scores`` [*L, P] (only its shape and device are used), ``grades`` / ``mask`` [..., P] broadcastable to
    it. R = max over pools of the relevant count, rounded up to a multiple of ``SLOT_MULTIPLE`` (at most P);
    one device sync (for R). Positions within a pool come in ascending order.
    """
    lead, P = scores.shape[:-1], scores.shape[-1]
    group = _group_shape(lead, grades, mask)
    B = math.prod(group)
    A = math.prod(lead) // B if B else 0
    g = torch.broadcast_to(grades.to(scores.device), (*group, P)).reshape(B, P)
    relevant = g > 0
    if mask is None:
        pad = torch.zeros(B, P, dtype=dtype, device=scores.device)
    else:
        m = torch.broadcast_to(mask, (*group, P)).reshape(B, P)
        relevant = relevant & m
        pad = torch.where(m, 0.0, float("nan")).to(dtype)
    largest = int(relevant.sum(-1).max()) if B else 0
    R = min(P, -(-largest // SLOT_MULTIPLE) * SLOT_MULTIPLE)
    flags, order = torch.sort(relevant.to(torch.int32), dim=-1, descending=True, stable=True)
    pos, valid = order[:, :R], flags[:, :R].bool()
    slot_grades = torch.where(valid, g.gather(-1, pos).to(dtype), 0.0)
    return RelevantSlots(lead, A, B, pos, valid, slot_grades, pad)


def choose_method(slots: RelevantSlots, pool: int, device: torch.device) -> Literal["topk", "rank"]:
    """The rule of ``ranking_metrics(method="auto")``.

    "rank" on CPU when the pools hold at most RANK_MAX_RELEVANT relevant slots (R = the largest relevant count
    of a pool, rounded up to a multiple of SLOT_MULTIPLE), the batch is large enough to use the fused kernel
    (A * B * R * P >= MIN_COMPILED_WORK) and torch.compile has not failed; also when no pool holds a relevant
    candidate (nothing to count). Else "topk": the plain counting kernel costs more per comparison than top-k
    per candidate unless R is tiny, and on a GPU top-k is one kernel where the plain counts are many (the rank
    path still works there: ``method="rank"``).
    """
    if slots.count == 0:
        return "rank"
    if device.type != "cpu" or slots.count > RANK_MAX_RELEVANT:
        return "topk"
    large = slots.A * slots.B * slots.count * pool >= MIN_COMPILED_WORK
    return "rank" if large and compiled_kernel_usable(device) else "topk"


def check_no_nan(scores: Tensor, mask: Tensor | None) -> None:
    """Raise ValueError if an unmasked score is NaN (``max`` propagates NaN: one cheap pass, one sync)."""
    if scores.numel() == 0 or not bool(torch.isnan(scores.max())):
        return
    nan = torch.isnan(scores)
    if mask is not None:
        nan = nan & mask
    if bool(nan.any()):
        raise ValueError("scores contain NaN (at unmasked candidates); a ranking of NaN is undefined")


def relevant_ranks(scores: Tensor, slots: RelevantSlots, *, kernel: Kernel = "auto") -> Tensor:
    """Exact 0-based ranks [A, B, R] (in the dtype of ``slots.pad``) of the slots' candidates; 0 in unused slots.

    ``scores`` [*L, P] is viewed as [A, B, P] (bfloat16 stays bfloat16: the kernels compare in the dtype of
    ``slots.pad``, float32, where its values are exact) and the candidates that beat each slot counted by
    :func:`eggroll_ndcg.metrics.rank_count.beating_counts`.
    """
    s = scores.detach().reshape(slots.A, slots.B, scores.shape[-1])
    return beating_counts(s, slots.pad, slots.pos, slots.valid, kernel=kernel)


def _measure_sums(ranks: Tensor, valid: Tensor, grades: Tensor, gains: Tensor, kt: Tensor,
                  measures: Sequence[str]) -> tuple[Tensor, ...]:
    """The numerators [A, B, K] of ``measures`` (module docstring). ``ranks`` [A, B, R]; ``valid``, ``grades``,
    ``gains`` [B, R]; ``kt`` [K] the cuts in the ranks' dtype."""
    dtype = ranks.dtype
    in_k = valid.unsqueeze(-1) & (ranks.unsqueeze(-1) < kt)                 # [A, B, R, K]
    rel = valid & (grades >= 1)                                             # [B, R]
    hit = in_k & rel.unsqueeze(-1)                                          # [A, B, R, K]
    out = []
    for m in measures:
        if m == "ndcg":
            value = torch.where(in_k, (gains * (1.0 / torch.log2(ranks + 2))).unsqueeze(-1), 0.0).sum(-2)
        elif m == "mrr":
            value = torch.where(hit, (1.0 / (ranks + 1)).unsqueeze(-1), 0.0).amax(-2)
        elif m == "recall":
            value = hit.to(dtype).sum(-2)
        else:  # map: precision at each relevant candidate's rank
            ahead = ((ranks.unsqueeze(-1) > ranks.unsqueeze(-2)) & rel.unsqueeze(-2)).to(dtype).sum(-1)
            precision = (ahead + 1) / (ranks + 1)                          # [A, B, R]
            value = torch.where(hit, precision.unsqueeze(-1), 0.0).sum(-2)
        out.append(value)
    return tuple(out)


_SUMS: dict[tuple[str, ...], _Compiled] = {}  # one compiled graph per measure tuple (MAP alone costs R^2)


def _sums_kernel(measures: tuple[str, ...]) -> _Compiled:
    """The compiled `_measure_sums` of exactly `measures` (a few fused kernels instead of ~20 small eager ops;
    computing measures nobody asked for, MAP's [A, B, R, R] above all, cost several times the NDCG alone)."""
    if measures not in _SUMS:
        _SUMS[measures] = _Compiled(functools.partial(_measure_sums, measures=measures),
                                    {0: (2,), 1: (1,), 2: (1,), 3: (1,)})  # R dynamic
    return _SUMS[measures]


def ranked_sums(ranks: Tensor, slots: RelevantSlots, gains: Tensor, ks: Sequence[int],
                measures: Sequence[str]) -> dict[str, Tensor]:
    """The numerators of the module docstring, {measure: [*L, len(ks)]} for measures in ndcg/mrr/recall/map.

    ``ranks`` [A, B, R], ``gains`` [B, R] = gain(grade) of each slot (0 in unused slots). The caller divides
    by IDCG@k ("ndcg") or R ("recall", "map"); "mrr" is final. Compiled together with the counts (same rule:
    CPU, A * B * R * P >= MIN_COMPILED_WORK), else eager.
    """
    dtype = ranks.dtype
    if ranks.shape[-1] == 0:  # no relevant candidate in any pool
        return {m: torch.zeros(*slots.lead, len(ks), dtype=dtype, device=ranks.device) for m in measures}
    args = (ranks, slots.valid, slots.grades, gains, torch.tensor(list(ks), dtype=dtype, device=ranks.device))
    values = None
    large = slots.A * slots.B * slots.count * slots.pad.shape[-1] >= MIN_COMPILED_WORK
    if large and compiled_kernel_usable(ranks.device):
        sums = _sums_kernel(tuple(measures))(*args)
        values = None if sums is None else dict(zip(measures, sums))
    if values is None:
        values = dict(zip(measures, _measure_sums(*args, tuple(measures))))
    return {m: values[m].reshape(*slots.lead, len(ks)) for m in measures}
