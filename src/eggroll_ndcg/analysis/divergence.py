"""Distance from the base, per kept step: ||W - W0|| and the KL divergence of the ranking policies.

A head with pool scores s over a query's real candidates defines the Plackett-Luce ranking distribution
with logits z = s / τ (τ = the run's `loss.temperature`, the policy of the PL policy gradient):

    P(π) = Π_{i=1..k} exp(z_{π_i}) / Σ_{j not in π_1..π_{i-1}} exp(z_j)        (the top-k prefix of π)

The divergence from the zero-shot head (logits z0) is KL(P_θ || P_0) of the top-k prefix distributions,
k = the objective's cutoff (what NDCG@k can see), estimated by Monte Carlo:

    KL ≈ (1/S) Σ_s [log P_θ(π_s) - log P_0(π_s)],   π_s ~ P_θ (Gumbel-top-k sampling, a seeded generator)

(unbiased; averaged over the training pools' queries). The exact top-1 term, KL(softmax z || softmax z0),
is reported too. This is the analogue of the KL-to-base an RL fine-tuning run tracks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..models.heads import score_pool
from ..train.batches import gather_batch
from .connectivity import update_norm
from .runs import Run


def prefix_log_prob(logits: Tensor, rankings: Tensor) -> Tensor:
    """log P(π_1..π_k) under Plackett-Luce with `logits` [Q, P] (-inf = not a candidate) for `rankings`
    [S, Q, k] of candidate indices -> [S, Q]."""
    z = logits.expand(rankings.shape[0], *logits.shape).clone()  # [S, Q, P]
    total = torch.zeros(rankings.shape[:2], dtype=logits.dtype)
    for i in range(rankings.shape[2]):
        chosen = rankings[..., i : i + 1]
        total = total + z.gather(-1, chosen).squeeze(-1) - torch.logsumexp(z, dim=-1)
        z = z.scatter(-1, chosen, float("-inf"))
    return total


def sample_rankings(logits: Tensor, k: int, samples: int, generator: torch.Generator) -> Tensor:
    """Top-k prefixes [S, Q, k] drawn from Plackett-Luce(`logits` [Q, P]) by the Gumbel-top-k trick."""
    u = torch.rand((samples, *logits.shape), generator=generator, dtype=logits.dtype).clamp_min(1e-12)
    return (logits - torch.log(-torch.log(u))).topk(k, dim=-1).indices


@torch.no_grad()
def pl_divergence(run: Run, state, *, samples: int = 64, max_queries: int = 256, seed: int = 0) -> dict[str, float]:
    """Monte-Carlo top-k PL KL and exact top-1 KL of `state`'s ranking policy from the base head's, on the
    first `max_queries` trainable training pools (module docstring)."""
    data, pools = run.data, run.data.train_pools
    trainable = torch.nonzero(pools.ideal_grades[:, 0] > 0).flatten()[:max_queries]
    rows_all = torch.tensor([data.query_row[q] for q in pools.query_ids], device=data.query_emb.device)
    batch = gather_batch(pools, trainable, data.query_emb[rows_all], data.doc_emb)
    tau = run.config.loss.temperature
    k = int(run.config.objective.partition("@")[2])

    def logits(head_state) -> Tensor:
        scores = score_pool(run.head(head_state), batch.query_emb, batch.doc_emb, normalize=run.config.normalize)
        return (scores.double().cpu() / tau).masked_fill(~batch.mask.cpu(), float("-inf"))

    z, z0 = logits(state), logits(run.base)
    k = min(k, int(batch.mask.sum(dim=1).min()))
    generator = torch.Generator().manual_seed(seed)
    rankings = sample_rankings(z, k, samples, generator)
    kl = (prefix_log_prob(z, rankings) - prefix_log_prob(z0, rankings)).mean()
    p, logp, logp0 = torch.softmax(z, -1), torch.log_softmax(z, -1), torch.log_softmax(z0, -1)
    top1 = torch.where(p > 0, p * (logp - logp0), torch.zeros_like(p)).sum(-1).mean()
    return {f"kl_top{k}": float(kl), "kl_top1": float(top1)}


def divergence_path(run: Run, *, samples: int = 64, max_queries: int = 256) -> list[dict[str, Any]]:
    """Per kept step: ||W - W0|| and the PL divergences from the base head."""
    params = run.param_names
    return [{"step": step, "weight_distance": update_norm(state, run.base, params),
             **pl_divergence(run, state, samples=samples, max_queries=max_queries)}
            for step, state in sorted(run.kept.items())]
