"""Minibatches of training queries, as a pure function of (seed, step).

The data order needs no stored RNG state: the batch of step t is the first `batch_queries` entries of a
permutation drawn from a generator seeded with (seed, t). A resumed run therefore sees exactly the batches
an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.pools import CandidatePools


@dataclass
class PoolBatch:
    """One minibatch: query embeddings [B, n], candidate embeddings [B, P, n], grades/mask [B, P],
    ideal grades [B, J] (for the ideal DCG from all judgments) and the pool rows it came from [B].
    `doc_groups` [B, P] (long, -1 at padding) is the group of each candidate when the caller passed a
    grouping (`data.groups`); set-level objectives (`train.set_objectives`) read it."""

    query_emb: torch.Tensor
    doc_emb: torch.Tensor
    grades: torch.Tensor
    mask: torch.Tensor
    ideal_grades: torch.Tensor
    rows: torch.Tensor
    doc_groups: torch.Tensor | None = None


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, step, stream); `stream` separates independent uses."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


def batch_rows(trainable_rows: torch.Tensor, batch_queries: int, *, seed: int, step: int) -> torch.Tensor:
    """The pool rows of step `step`: `batch_queries` distinct rows of `trainable_rows` (all, if fewer)."""
    order = torch.randperm(trainable_rows.numel(), generator=step_generator(seed, step))
    return trainable_rows[order[: min(batch_queries, trainable_rows.numel())]]


def gather_batch(
    pools: CandidatePools, rows: torch.Tensor, query_emb: torch.Tensor, doc_emb: torch.Tensor,
    groups: torch.Tensor | None = None,
) -> PoolBatch:
    """Look up the embeddings of pool rows `rows`; `query_emb` is aligned with `pools.query_ids`;
    `groups` [D] (optional) the group id of every corpus document."""
    rows = rows.to(pools.doc_index.device)
    doc_index = pools.doc_index[rows]
    candidates = doc_emb[doc_index.clamp(min=0)]
    return PoolBatch(
        query_emb=query_emb[rows],
        doc_emb=candidates,
        grades=pools.grades[rows],
        mask=pools.mask[rows],
        ideal_grades=pools.ideal_grades[rows],
        rows=rows,
        doc_groups=None if groups is None else torch.where(doc_index >= 0, groups[doc_index.clamp(min=0)], -1),
    )
