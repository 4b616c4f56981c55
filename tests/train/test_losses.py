"""Gradient-baseline losses: masking, direction, hand-computed values, and the PL policy gradient."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from eggroll_ndcg.metrics.ranking import ndcg_at_k
from eggroll_ndcg.train.losses import (
    LOSSES,
    approx_ndcg_loss,
    infonce_loss,
    lambdaloss_loss,
    listnet_loss,
    plackett_luce_pg_loss,
)

DETERMINISTIC = ["infonce", "listnet", "lambdaloss", "approx_ndcg"]


def _options(name: str, seed: int = 0) -> dict:
    if name == "pl_pg":
        return {"temperature": 0.5, "k": 3, "n_samples": 8, "generator": torch.Generator().manual_seed(seed)}
    return {"temperature": 0.5}


def _batch(seed: int = 0):
    """3 queries, pools of 6 with padding, graded judgments; query 2 has a positive missing from its pool."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(3, 6, generator=g)
    grades = torch.tensor([[2.0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 3, 0, 0, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    ideal = torch.tensor([[2.0, 1, 0], [1, 0, 0], [3, 2, 1]])
    return scores, grades, mask, ideal


def _loss_and_grad(name, scores, grades, mask, ideal, seed=0):
    scores = scores.clone().requires_grad_(True)
    loss = LOSSES[name](scores, grades, mask, ideal, **_options(name, seed))
    (grad,) = torch.autograd.grad(loss, scores)
    return loss.detach(), grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_ignore_masked_candidates(name):
    scores, grades, mask, ideal = _batch()
    loss, grad = _loss_and_grad(name, scores, grades, mask, ideal)
    changed_scores = torch.where(mask, scores, torch.tensor(1e6))
    changed_grades = torch.where(mask, grades, torch.tensor(3.0))
    loss2, grad2 = _loss_and_grad(name, changed_scores, changed_grades, mask, ideal)
    assert torch.equal(loss, loss2) and torch.equal(grad, grad2)
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_masked_candidates_are_the_same_as_absent_candidates(name):
    scores, grades, mask, ideal = _batch()
    loss = LOSSES[name](scores[:1], grades[:1], mask[:1], ideal[:1], **_options(name))
    loss_short = LOSSES[name](scores[:1, :4], grades[:1, :4], mask[:1, :4], ideal[:1], **_options(name))
    torch.testing.assert_close(loss, loss_short)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_losses_decrease_when_positive_moves_to_top(name):
    """The pl_pg loss is a REINFORCE surrogate whose value is not a ranking quality; its direction is tested
    through its gradient below."""
    grades = torch.tensor([[0.0, 0, 1, 0, 0]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    ideal = torch.tensor([[1.0]])
    bottom = torch.tensor([[0.5, 0.4, 0.1, 0.3, 0.2]])
    top = torch.tensor([[0.4, 0.3, 0.5, 0.2, 0.1]])
    assert LOSSES[name](top, grades, mask, ideal, **_options(name)) < LOSSES[name](
        bottom, grades, mask, ideal, **_options(name))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradients_push_positives_up(name):
    scores = torch.tensor([[0.5, 0.4, 0.1, 0.3, 0.2]], requires_grad=True)
    grades = torch.tensor([[0.0, 0, 1, 0, 0]])
    options = _options(name) | ({"n_samples": 256} if name == "pl_pg" else {})
    loss = LOSSES[name](scores, grades, torch.ones(1, 5, dtype=torch.bool), torch.tensor([[1.0]]), **options)
    (grad,) = torch.autograd.grad(loss, scores)
    assert grad[0, 2] < 0  # gradient descent raises the positive's score
    assert grad[0, 0] > 0  # ... and lowers the top-ranked negative


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_queries_without_positives_contribute_nothing(name):
    scores, grades, mask, ideal = _batch()
    no_positive = torch.zeros_like(grades[:1])
    with_empty = LOSSES[name](scores[:2], torch.cat([grades[:1], no_positive]), mask[:2],
                              torch.cat([ideal[:1], torch.zeros_like(ideal[:1])]), **_options(name))
    alone = LOSSES[name](scores[:1], grades[:1], mask[:1], ideal[:1], **_options(name))
    if name != "pl_pg":  # pl_pg draws noise for the whole batch, so its samples differ
        torch.testing.assert_close(with_empty, alone)
    empty = LOSSES[name](scores[:1], no_positive, mask[:1], torch.zeros_like(ideal[:1]), **_options(name))
    assert empty.item() == 0.0


def test_infonce_matches_hand_computed_value():
    loss = infonce_loss(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[1.0, 0, 0]]),
                        torch.ones(1, 3, dtype=torch.bool), temperature=1.0)
    assert loss.item() == pytest.approx(-math.log(math.e**2 / (math.e**2 + math.e + 1)), abs=1e-6)


def test_infonce_scores_each_positive_against_the_negatives_only():
    # Positives at scores 1 and 0 (the second has grade 2: binary), one negative at 2, temperature 0.5.
    loss = infonce_loss(torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[1.0, 2.0, 0.0]]),
                        torch.ones(1, 3, dtype=torch.bool), temperature=0.5)
    softplus = lambda x: math.log1p(math.exp(x))
    assert loss.item() == pytest.approx(0.5 * (softplus((2 - 1) / 0.5) + softplus((2 - 0) / 0.5)), abs=1e-6)


def test_listnet_matches_hand_computed_value():
    scores = torch.tensor([[2.0, 1.0, 0.0]])
    loss = listnet_loss(scores, torch.tensor([[2.0, 1.0, 0.0]]), torch.ones(1, 3, dtype=torch.bool), temperature=1.0)
    log_p = torch.log_softmax(scores[0], -1)
    assert loss.item() == pytest.approx(-(2 / 3 * log_p[0] + 1 / 3 * log_p[1]).item(), abs=1e-6)


def _lambdaloss_reference(s, y, ideal, temperature, mu, k=None):
    """NDCG-Loss2++ written pair by pair from Wang et al. (2018), one query, all candidates real."""
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    rank = {i: r + 1 for r, i in enumerate(order)}
    top = sorted(ideal, reverse=True)[: k or len(ideal)]
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(top))
    D = lambda r: math.log2(1 + r)
    total = 0.0
    for i, j in itertools.permutations(range(len(s)), 2):
        if y[i] <= y[j] or (k is not None and min(rank[i], rank[j]) > k):
            continue
        rho = abs(1 / D(rank[i]) - 1 / D(rank[j]))
        gap = abs(rank[i] - rank[j])
        delta = abs(1 / D(gap) - 1 / D(gap + 1))
        weight = (rho + mu * delta) * abs(y[i] - y[j]) / idcg
        total += -weight * math.log2(1 / (1 + math.exp(-(s[i] - s[j]) / temperature)))
    return total


@pytest.mark.parametrize("k", [None, 2])
def test_lambdaloss_matches_pairwise_formula(k):
    s = [0.3, 0.9, -0.2, 0.5, 0.1]
    y = [2.0, 0.0, 1.0, 0.0, 3.0]
    ideal = [3.0, 2.0, 1.0, 1.0]  # one positive is missing from the pool
    loss = lambdaloss_loss(torch.tensor([s]), torch.tensor([y]), torch.ones(1, 5, dtype=torch.bool),
                           torch.tensor([ideal]), temperature=0.5, k=k, mu=10.0)
    assert loss.item() == pytest.approx(_lambdaloss_reference(s, y, ideal, 0.5, 10.0, k), rel=1e-5)


def test_lambdaloss_gradient_pushes_positive_up():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.1]], requires_grad=True)
    grades = torch.tensor([[0.0, 0, 0, 0, 1]])
    for k in (None, 2):  # with k = 2 the positive ranks 5th: the truncation keeps its pairs with the top 2
        loss = lambdaloss_loss(scores, grades, torch.ones(1, 5, dtype=torch.bool), torch.tensor([[1.0]]),
                               temperature=0.1, k=k)
        (grad,) = torch.autograd.grad(loss, scores)
        assert grad[0, 4] < 0 and (grad[0, :2] > 0).all()


def test_approx_ndcg_tends_to_exact_ndcg_at_small_temperature():
    scores, grades, mask, ideal = _batch()
    exact = ndcg_at_k(scores, grades, 10, ideal_grades=ideal, mask=mask).mean()
    coarse = -approx_ndcg_loss(scores, grades, mask, ideal, temperature=1.0)
    fine = -approx_ndcg_loss(scores, grades, mask, ideal, temperature=1e-3)
    assert fine.item() == pytest.approx(exact.item(), abs=1e-4)
    assert abs(coarse - exact) > 1e-2


def test_pl_pg_is_deterministic_given_generator():
    scores, grades, mask, ideal = _batch()
    first = _loss_and_grad("pl_pg", scores, grades, mask, ideal, seed=5)
    again = _loss_and_grad("pl_pg", scores, grades, mask, ideal, seed=5)
    other = _loss_and_grad("pl_pg", scores, grades, mask, ideal, seed=6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def _exact_expected_ndcg(theta, grades, ideal, k, temperature):
    """E_PL[NDCG@k] by enumerating every ordered top-k prefix of the real candidates."""
    n = theta.shape[0]
    expected = theta.new_zeros(())
    for prefix in itertools.permutations(range(n), k):
        logp, left = theta.new_zeros(()), list(range(n))
        for i in prefix:
            z = theta[left] / temperature
            logp = logp + theta[i] / temperature - torch.logsumexp(z, 0)
            left.remove(i)
        order_scores = torch.zeros(n)
        order_scores[list(prefix)] = torch.arange(k, 0, -1, dtype=torch.float32)
        ndcg = ndcg_at_k(order_scores, grades, k, ideal_grades=ideal)
        expected = expected + logp.exp() * ndcg
    return expected


def test_pl_pg_gradient_matches_exact_policy_gradient_on_tiny_pool():
    """-grad(loss) is an unbiased estimate of grad E[NDCG@k], even with only S = 4 samples per group (the
    leave-one-out rescaling matters: the plain group mean would shrink it by (S - 1)/S = 0.75)."""
    theta = torch.tensor([0.4, -0.3, 0.1, 0.6], requires_grad=True)
    grades = torch.tensor([2.0, 0.0, 1.0, 0.0])
    ideal = torch.tensor([2.0, 1.0, 1.0])  # a positive outside the pool
    k, temperature = 2, 0.7
    (exact,) = torch.autograd.grad(_exact_expected_ndcg(theta, grades, ideal, k, temperature), theta)

    rows = 8192  # the same query repeated: the loss averages rows x 4 sampled prefixes
    padded = torch.cat([theta, torch.zeros(1)]).expand(rows, 5)  # plus one masked candidate
    mask = torch.tensor([True, True, True, True, False]).expand(rows, 5)
    loss = plackett_luce_pg_loss(padded, torch.cat([grades, torch.zeros(1)]).expand(rows, 5), mask,
                                 ideal.expand(rows, 3), k=k, n_samples=4, temperature=temperature,
                                 generator=torch.Generator().manual_seed(0))
    (estimate,) = torch.autograd.grad(loss, theta)
    torch.testing.assert_close(-estimate, exact, rtol=0, atol=0.05 * exact.abs().max().item())
    cosine = torch.nn.functional.cosine_similarity(-estimate, exact, dim=0)
    assert cosine > 0.99


def test_pl_pg_normalized_advantage_changes_scale_not_direction():
    scores, grades, mask, ideal = _batch()
    options = {"temperature": 0.5, "k": 3, "n_samples": 64}
    plain = _grad_pl(scores, grades, mask, ideal, options, normalize_advantage=False)
    normed = _grad_pl(scores, grades, mask, ideal, options, normalize_advantage=True)
    for q in range(3):
        assert torch.nn.functional.cosine_similarity(plain[q], normed[q], dim=0) > 0.999


def _grad_pl(scores, grades, mask, ideal, options, *, normalize_advantage):
    scores = scores.clone().requires_grad_(True)
    loss = plackett_luce_pg_loss(scores, grades, mask, ideal, generator=torch.Generator().manual_seed(3),
                                 normalize_advantage=normalize_advantage, **options)
    return torch.autograd.grad(loss, scores)[0]


def test_pl_pg_needs_a_group():
    scores, grades, mask, ideal = _batch()
    with pytest.raises(ValueError, match="n_samples"):
        plackett_luce_pg_loss(scores, grades, mask, ideal, k=3, n_samples=1, temperature=1.0)


def test_registry_offers_every_gradient_method_under_one_signature():
    from eggroll_ndcg.train.methods import METHODS

    plain_losses = {name for name, spec in METHODS.items() if spec.build.__qualname__.startswith("_gradient.")}
    assert set(LOSSES) == plain_losses  # every plain gradient method is a loss of LOSSES, and back
    scores, grades, mask, ideal = _batch()
    for name, loss_fn in LOSSES.items():
        assert loss_fn(scores, grades, mask, ideal, **_options(name)).shape == ()


def test_pl_pg_rewards_the_run_objective_so_mrr_changes_its_reward_and_update():
    from eggroll_ndcg.train.batches import PoolBatch
    from eggroll_ndcg.train.config import TrainConfig
    from eggroll_ndcg.train.gradient_method import policy_options
    from eggroll_ndcg.train.objectives import parse_objective

    grades = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    batch = PoolBatch(query_emb=torch.zeros(1, 2), doc_emb=torch.zeros(1, 4, 2), grades=grades,
                      mask=torch.ones(1, 4, dtype=torch.bool), ideal_grades=torch.tensor([[1.0, 1.0]]),
                      rows=torch.arange(1))
    order = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])  # [Q=1, S=1, P]: relevant at ranks 2 and 3
    config = TrainConfig(method="pl_pg")
    mrr = policy_options(config, parse_objective("mrr@10"), batch)["reward"](order)
    ndcg = policy_options(config, parse_objective("ndcg@10"), batch)["reward"](order)
    assert mrr.item() == pytest.approx(0.5)
    expected_ndcg = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg.item() == pytest.approx(expected_ndcg)

    scores, grades, mask, ideal = _batch()
    gradients = []
    for objective in ("mrr@3", "ndcg@3"):
        theta = scores.clone().requires_grad_(True)
        fake = PoolBatch(query_emb=None, doc_emb=None, grades=grades, mask=mask, ideal_grades=ideal, rows=None)
        options = policy_options(config, parse_objective(objective), fake)
        loss = plackett_luce_pg_loss(theta, grades, mask, ideal, temperature=0.5, generator=torch.Generator().manual_seed(0),
                                     **options)
        gradients.append(torch.autograd.grad(loss, theta)[0])
    assert not torch.allclose(gradients[0], gradients[1])
