"""Differentiable ranking losses for the gradient baselines (lower is better), over candidate pools.

Shapes, shared by every loss:

- ``scores`` [Q, P]: s_qi, the head's score of candidate i for query q (see ``models.heads.score_pool``).
- ``grades`` [Q, P]: the judged grade y_qi (0 = unjudged or padding). Candidate i is *positive* when y_qi >= 1.
- ``mask`` [Q, P] bool: True = real candidate. Masked candidates never enter a loss: changing their scores
  changes neither the loss nor its gradient.
- ``ideal_grades`` [Q, J]: the query's positive judged grades from all its qrels (0-padded), for IDCG.

Every loss returns a scalar: the mean over the queries it is defined for (a query needs a positive in its
pool, or for the NDCG-based losses a positive judgment) and 0 (still attached to the graph) when there is
none. NDCG uses linear gain and the discount 1/log2(1 + rank), as in ``metrics.ranking``.

``LOSSES`` maps the gradient method names (``train.gradient_method`` registers each as a method) to these
functions under one signature,
``loss(scores, grades, mask, ideal_grades, *, generator=None, **options)``; ``options`` are the keyword
options of the named loss (every loss takes ``temperature``, the score scale).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..metrics.ranking import ideal_dcg, ndcg_at_k

__all__ = ["LOSSES", "LossFn", "approx_ndcg_loss", "infonce_loss", "lambdaloss_loss", "listnet_loss",
           "plackett_luce_pg_loss"]


def _fill_masked(x: Tensor, mask: Tensor) -> Tensor:
    """x with masked entries replaced by a huge finite negative: exp() of it is exactly 0 next to any real
    entry, and (unlike -inf) it keeps logsumexp and its gradient finite on rows without real entries."""
    return x.masked_fill(~mask, torch.finfo(x.dtype).min / 4)


def _mean_over(per_query: Tensor, defined: Tensor) -> Tensor:
    """Mean of per_query [Q] over the queries where ``defined`` [Q] is True; 0 (attached) when none is."""
    per_query = torch.where(defined, per_query, torch.zeros_like(per_query))
    return per_query.sum() / defined.sum().clamp(min=1)


def infonce_loss(scores: Tensor, grades: Tensor, mask: Tensor, *, temperature: float) -> Tensor:
    """InfoNCE with several positives: each positive against all non-positives of the pool.

    With z_i = s_i / temperature, positives Pos = {i : y_i >= 1} and negatives Neg = the other real
    candidates (unjudged or grade 0), the loss of query q is

        L_q = (1/|Pos|) sum_{i in Pos} -log( exp z_i / (exp z_i + sum_{j in Neg} exp z_j) )
            = (1/|Pos|) sum_{i in Pos} softplus( logsumexp_{j in Neg} z_j - z_i ),

    so positives never compete with each other (the form of DPR-style training with one positive per
    softmax). Grades above 1 count as 1. Mean over queries with a positive in the pool.

    Example: scores [[2., 1., 0.]], grades [[1., 0., 0.]], temperature 1
    -> -log(e^2 / (e^2 + e^1 + e^0)) = 0.4076.
    """
    z = scores.masked_fill(~mask, 0.0) / temperature
    positive = mask & (grades >= 1)
    negative = mask & ~positive
    neg_lse = torch.logsumexp(_fill_masked(z, negative), dim=-1, keepdim=True)  # [Q, 1]
    per_positive = F.softplus(neg_lse - z)  # [Q, P]; exactly 0 for queries without negatives
    n_pos = positive.sum(-1)
    per_query = torch.where(positive, per_positive, torch.zeros_like(z)).sum(-1) / n_pos.clamp(min=1)
    return _mean_over(per_query, n_pos > 0)


def listnet_loss(scores: Tensor, grades: Tensor, mask: Tensor, *, temperature: float) -> Tensor:
    """ListNet: cross-entropy between the top-one distribution of the grades and that of the scores.

        L_q = - sum_i t_i log softmax(s / temperature)_i,    t_i = y_i / sum_j y_j  (= softmax(log y)_i),

    both over the real candidates of the pool, with y clamped at 0. The target uses phi(y) = y, as
    TF-Ranking's SoftmaxLoss ("ListNet") and rax do, rather than Cao et al.'s (2007) phi = exp: with exp, each
    unjudged candidate gets weight e^0 = 1, so a pool of 100 unjudged candidates would teach the head to give
    its single positive only e / (e + 99) = 3% of the mass. Mean over queries with a positive in the pool.
    """
    gain = torch.where(mask, grades.to(scores.dtype).clamp(min=0), torch.zeros_like(scores))
    total = gain.sum(-1, keepdim=True)
    target = gain / total.clamp(min=torch.finfo(scores.dtype).tiny)
    log_p = torch.log_softmax(_fill_masked(scores / temperature, mask), dim=-1)
    per_query = -(target * log_p).sum(-1)  # masked: target exactly 0, log_p finite
    return _mean_over(per_query, total[:, 0] > 0)


def _ranks(scores: Tensor, mask: Tensor) -> Tensor:
    """[Q, P] 1-based rank of every candidate by score descending, ties by position (masked ones last)."""
    order = torch.sort(_fill_masked(scores.detach(), mask), dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order)
    return ranks.scatter_(-1, order, positions)


def lambdaloss_loss(scores: Tensor, grades: Tensor, mask: Tensor, ideal_grades: Tensor, *, temperature: float,
                    k: int | None = None, mu: float = 10.0) -> Tensor:
    """LambdaLoss with the NDCG-Loss2++ weights (Wang et al. 2018, "The LambdaLoss Framework ...").

    With ranks r_i of the current scores (descending, ties by position, no gradient), D(r) = log2(1 + r),
    G_i = y_i / IDCG (linear gain; IDCG from ``ideal_grades``, cut at k when given), and
    sigma = 1 / temperature, the loss of query q sums over pairs of real candidates with y_i > y_j:

        L_q = sum_{y_i > y_j} -w_ij log2 sigmoid(sigma (s_i - s_j)),
        w_ij = (rho_ij + mu delta_ij) |G_i - G_j|,
        rho_ij = |1/D(r_i) - 1/D(r_j)|,   delta_ij = |1/D(|r_i - r_j|) - 1/D(|r_i - r_j| + 1)|.

    rho is the LambdaRank weight (NDCG-Loss2+ without mu), delta the NDCG-Loss2 one. With ``k``, only pairs
    where at least one candidate currently ranks within the top k count (LightGBM's truncation), so a
    positive below k is still pulled up. Memory is O(Q P^2): meant for pools of a few hundred. Mean over
    queries with a positive judgment.
    """
    dtype = scores.dtype
    ranks = _ranks(scores, mask).to(dtype)
    idcg = ideal_dcg(ideal_grades, [k or ideal_grades.shape[-1] or 1], dtype=dtype)  # [Q, 1]
    gain = grades.to(dtype).clamp(min=0) / idcg.clamp(min=torch.finfo(dtype).tiny)
    inv_d = 1.0 / torch.log2(1.0 + ranks)  # [Q, P]
    rho = (inv_d[:, :, None] - inv_d[:, None, :]).abs()
    gap = (ranks[:, :, None] - ranks[:, None, :]).abs().clamp(min=1)
    delta = (1.0 / torch.log2(1.0 + gap) - 1.0 / torch.log2(2.0 + gap)).abs()
    weight = (rho + mu * delta) * (gain[:, :, None] - gain[:, None, :]).abs()

    y = grades.to(dtype)
    pairs = mask[:, :, None] & mask[:, None, :] & (y[:, :, None] > y[:, None, :])
    if k is not None:
        top = ranks <= k
        pairs = pairs & (top[:, :, None] | top[:, None, :])
    s = scores.masked_fill(~mask, 0.0)
    diff = (s[:, :, None] - s[:, None, :]) / temperature
    per_pair = weight * F.softplus(-diff) / math.log(2.0)  # -log2 sigmoid(x) = softplus(-x) / ln 2
    per_query = torch.where(pairs, per_pair, torch.zeros_like(per_pair)).sum((-1, -2))
    return _mean_over(per_query, idcg[:, 0] > 0)


def approx_ndcg_loss(scores: Tensor, grades: Tensor, mask: Tensor, ideal_grades: Tensor, *,
                     temperature: float) -> Tensor:
    """-ApproxNDCG (Qin, Liu and Li 2010): NDCG with the rank replaced by a smooth approximate rank.

        rank~_i = 1 + sum_{j != i, j real} sigmoid((s_j - s_i) / temperature),
        ApproxNDCG_q = (1 / IDCG_q) sum_{i real} y_i / log2(1 + rank~_i),      loss = -mean_q ApproxNDCG_q,

    with linear gain and IDCG over all of ``ideal_grades`` (no cut). rank~ tends to the true rank as
    temperature -> 0. Mean over queries with a positive judgment. Memory O(Q P^2).
    """
    dtype = scores.dtype
    s = scores.masked_fill(~mask, 0.0)
    diff = (s[:, None, :] - s[:, :, None]) / temperature  # [Q, i, j] = (s_j - s_i) / T
    others = mask[:, None, :] & ~torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    approx_rank = 1.0 + torch.where(others, torch.sigmoid(diff), torch.zeros_like(diff)).sum(-1)  # [Q, P]
    gain = torch.where(mask, grades.to(dtype).clamp(min=0), torch.zeros_like(scores))
    dcg = (gain / torch.log2(1.0 + approx_rank)).sum(-1)
    idcg = ideal_dcg(ideal_grades, [ideal_grades.shape[-1] or 1], dtype=dtype)[:, 0]
    ndcg = dcg / idcg.clamp(min=torch.finfo(dtype).tiny)
    return -_mean_over(ndcg, idcg > 0)


def plackett_luce_pg_loss(scores: Tensor, grades: Tensor, mask: Tensor, ideal_grades: Tensor, *, k: int,
                          n_samples: int, temperature: float, generator: torch.Generator | None = None,
                          normalize_advantage: bool = False,
                          reward: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """REINFORCE on NDCG@k for a Plackett-Luce ranking policy, with a group-relative (leave-one-out) baseline.

    Policy: with z = s / temperature over the real candidates, a ranking pi is drawn item by item,
    P(pi_t = i | pi_<t) = exp z_i / sum_{j not in pi_<t} exp z_j. Only the top-k prefix matters for NDCG@k:

        log p(pi_1..k) = sum_{t <= k} [ z_{pi_t} - logsumexp_{j not in pi_<t} z_j ].

    Sampling: S = ``n_samples`` prefixes per query by the Gumbel top-k trick (the k largest z_i + Gumbel_i
    form an exact PL prefix), noise drawn from ``generator`` (deterministic given its state). Reward:
    R = exact NDCG@k of the sampled order (``metrics.ranking.ndcg_at_k``, linear gain, IDCG from
    ``ideal_grades``). Advantage A_s = S/(S-1) (R_s - mean_S R) = R_s - mean_{s' != s} R_s' (the GRPO group
    baseline, rescaled into the leave-one-out baseline), and

        loss = -(1/(Q S)) sum_{q, s} A_s.detach() * log p(prefix_s).

    Because the leave-one-out baseline is independent of sample s, -grad(loss) is an unbiased estimate of
    the policy gradient grad_s mean_q E_pi[NDCG@k] (over queries with a positive judgment).
    ``normalize_advantage`` divides A by the group's std (GRPO); that rescales each query and is no longer
    unbiased. The loss value itself is a surrogate (about 0 in expectation), not a ranking quality.
    Memory O(Q S k P).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for a group baseline, got {n_samples}")
    Q, P = scores.shape
    k = min(k, P)
    z = _fill_masked(scores / temperature, mask)  # [Q, P]
    device = generator.device if generator is not None else scores.device
    u = torch.rand(Q, n_samples, P, generator=generator, device=device, dtype=scores.dtype).to(scores.device)
    gumbel = -torch.log(-torch.log(u.clamp(min=torch.finfo(u.dtype).tiny)))
    keys = torch.where(mask[:, None, :], z.detach()[:, None, :] + gumbel, torch.full_like(gumbel, -math.inf))
    prefix = torch.topk(keys, k, dim=-1).indices  # [Q, S, k]; masked items only beyond the real ones

    # Reward: NDCG@k of scores decreasing along the sampled order (the other candidates rank after it).
    descending = torch.arange(k, 0, -1, dtype=scores.dtype, device=scores.device).expand_as(prefix)
    order_scores = torch.zeros(Q, n_samples, P, dtype=scores.dtype, device=scores.device)
    order_scores.scatter_(-1, prefix, descending)
    if reward is None:
        reward_values = ndcg_at_k(order_scores, grades[:, None, :], k, ideal_grades=ideal_grades[:, None, :],
                                  mask=mask[:, None, :])
    else:
        reward_values = reward(order_scores)
    reward = reward_values.to(scores.dtype)  # [Q, S]
    advantage = (reward - reward.mean(-1, keepdim=True)) * (n_samples / (n_samples - 1))
    if normalize_advantage:
        advantage = advantage / (reward.std(-1, keepdim=True) + 1e-8)

    # log p(prefix): step t chooses among the real candidates not chosen before t.
    chosen = F.one_hot(prefix, P).bool()  # [Q, S, k, P]
    chosen_before = chosen.cumsum(-2) - chosen.long() > 0
    available = mask[:, None, None, :] & ~chosen_before
    z_steps = z[:, None, None, :].expand_as(chosen)
    log_norm = torch.logsumexp(_fill_masked(z_steps, available), dim=-1)  # [Q, S, k]
    real_step = torch.arange(k, device=scores.device) < mask.sum(-1)[:, None, None]  # prefix within the pool
    step_logp = torch.where(real_step, z.gather(-1, prefix.flatten(1)).view_as(prefix) - log_norm,
                            torch.zeros_like(log_norm))
    per_query = -(advantage.detach() * step_logp.sum(-1)).mean(-1)
    return _mean_over(per_query, (ideal_grades >= 1).any(-1))


LossFn = Callable[..., Tensor]


def _without_ideal_grades(loss: Callable[..., Tensor]) -> LossFn:
    """Adapt a loss that needs neither ideal grades nor randomness to the registry signature."""

    def adapted(scores: Tensor, grades: Tensor, mask: Tensor, ideal_grades: Tensor, *,
                generator: torch.Generator | None = None, **options) -> Tensor:
        return loss(scores, grades, mask, **options)

    adapted.__doc__ = loss.__doc__
    return adapted


def _without_generator(loss: Callable[..., Tensor]) -> LossFn:
    """Adapt a deterministic loss that takes ideal grades to the registry signature."""

    def adapted(scores: Tensor, grades: Tensor, mask: Tensor, ideal_grades: Tensor, *,
                generator: torch.Generator | None = None, **options) -> Tensor:
        return loss(scores, grades, mask, ideal_grades, **options)

    adapted.__doc__ = loss.__doc__
    return adapted


LOSSES: dict[str, LossFn] = {
    "infonce": _without_ideal_grades(infonce_loss),
    "listnet": _without_ideal_grades(listnet_loss),
    "lambdaloss": _without_generator(lambdaloss_loss),
    "approx_ndcg": _without_generator(approx_ndcg_loss),
    "pl_pg": plackett_luce_pg_loss,
}
