"""The re-ranking baselines on hand-made pools: MMR (Carbonell & Goldstein 1998) and greedy exposure targeting."""

from __future__ import annotations

import torch

from eggroll_ndcg.experiments.rerank import exposure_rerank, mmr_rerank
from eggroll_ndcg.train.batches import PoolBatch


def _pool(doc_emb: list[list[float]], groups: list[int] | None = None) -> PoolBatch:
    docs = torch.tensor([doc_emb])
    pool = docs.shape[1]
    return PoolBatch(query_emb=torch.zeros(1, docs.shape[2]), doc_emb=docs, grades=torch.zeros(1, pool),
                     mask=torch.ones(1, pool, dtype=torch.bool), ideal_grades=torch.ones(1, 1), rows=torch.arange(1),
                     doc_groups=None if groups is None else torch.tensor([groups]))


def _order(encoded: torch.Tensor, k: int) -> list[int]:
    return encoded[0].argsort(descending=True)[:k].tolist()


def test_mmr_at_lambda_one_keeps_the_score_order_and_at_lower_lambda_skips_a_near_duplicate():
    batch = _pool([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0]])  # doc 1 duplicates doc 0, doc 2 is far from both
    scores = torch.tensor([[0.9, 0.8, 0.5]])
    assert _order(mmr_rerank(scores, batch, k=3, lam=1.0), 3) == [0, 1, 2]
    # step 2 at lambda 0.5: doc 1 has 0.5*0.8 - 0.5*cos(0,1) ~ -0.1, doc 2 has 0.5*0.5 - 0 = 0.25
    assert _order(mmr_rerank(scores, batch, k=3, lam=0.5), 3) == [0, 2, 1]


def test_exposure_rerank_at_beta_zero_keeps_the_order_and_at_large_beta_alternates_the_groups():
    batch = _pool([[1.0, 0.0]] * 4, groups=[0, 0, 1, 1])
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    assert _order(exposure_rerank(scores, batch, k=4, beta=0.0), 4) == [0, 1, 2, 3]
    assert _order(exposure_rerank(scores, batch, k=2, beta=10.0), 2) == [0, 2]  # group 1 gets the second slot
