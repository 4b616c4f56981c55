"""Set-level objectives on hand-made rankings with known values; alpha-NDCG against ir_measures/pyndeval."""

from __future__ import annotations

import math

import ir_measures
import pytest
import torch
from ir_measures import Qrel, ScoredDoc

from eggroll_ndcg.train.batches import PoolBatch
from eggroll_ndcg.train.objectives import OBJECTIVES, parse_objective
from eggroll_ndcg.train.set_objectives import (alpha_ndcg, distinct_groups, expected_exposure, exposure_share,
                                               intra_list_diversity, parse_set_objective, soft_diversity,
                                               soft_groups, soft_share, target_exposure, vector_objective)

E2 = 1 / math.log2(3)  # exposure of rank 2


def _batch(doc_emb, grades, groups=None, mask=None) -> PoolBatch:
    grades = torch.as_tensor(grades, dtype=torch.float32)
    B, P = grades.shape
    mask = torch.ones(B, P, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
    ideal = grades.sort(dim=-1, descending=True).values
    return PoolBatch(query_emb=torch.zeros(B, 2), doc_emb=torch.as_tensor(doc_emb, dtype=torch.float32),
                     grades=grades, mask=mask, ideal_grades=ideal, rows=torch.arange(B),
                     doc_groups=None if groups is None else torch.as_tensor(groups))


def test_diversity_is_the_mean_pairwise_cosine_distance_of_the_top_k():
    emb = [[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]]]
    batch = _batch(emb, [[0, 0, 0, 0]])
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    # top 3 = docs 0, 1, 2: distances (0,1) 1, (0,2) 0, (1,2) 1
    assert intra_list_diversity(scores, batch, 3).item() == pytest.approx(2 / 3)
    # top 2 = docs 0, 1: one pair at distance 1
    assert intra_list_diversity(scores, batch, 2).item() == pytest.approx(1.0)
    # reorder: top 2 = docs 0, 2 (same direction): 0
    assert intra_list_diversity(torch.tensor([[4.0, 1.0, 3.0, 2.0]]), batch, 2).item() == pytest.approx(0.0)


def test_diversity_ignores_masked_candidates_and_is_zero_below_two_documents():
    emb = [[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]]
    batch = _batch(emb, [[0, 0, 0]], mask=[[True, False, False]])
    assert intra_list_diversity(torch.tensor([[1.0, 9.0, 8.0]]), batch, 3).item() == 0.0
    batch = _batch(emb, [[0, 0, 0]], mask=[[True, False, True]])
    assert intra_list_diversity(torch.tensor([[1.0, 9.0, 8.0]]), batch, 3).item() == pytest.approx(2.0)


def test_distinct_groups_counts_groups_of_the_real_top_k_over_k():
    batch = _batch(torch.zeros(1, 5, 2), [[0] * 5], groups=[[0, 0, 1, 2, 1]])
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    assert distinct_groups(scores, batch, 2).item() == pytest.approx(1 / 2)  # groups 0, 0
    assert distinct_groups(scores, batch, 4).item() == pytest.approx(3 / 4)  # groups 0, 0, 1, 2
    masked = _batch(torch.zeros(1, 5, 2), [[0] * 5], groups=[[0, 0, 1, 2, 1]],
                    mask=[[True, True, False, False, False]])
    assert distinct_groups(scores, masked, 4).item() == pytest.approx(1 / 4)


def test_exposure_share_is_minus_the_total_variation_from_the_pool_share():
    batch = _batch(torch.zeros(1, 4, 2), [[0] * 4], groups=[[0, 1, 1, 1]])
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    share0 = 1 / (1 + E2)  # top 2 = group 0 then group 1
    assert exposure_share(scores, batch, 2).item() == pytest.approx(-abs(share0 - 0.25))
    # a top 1 of group 1 only: shares (0, 1) against (0.25, 0.75)
    assert exposure_share(torch.tensor([[0.0, 3.0, 2.0, 1.0]]), batch, 1).item() == pytest.approx(-0.25)


def test_target_exposure_shares_the_ranks_of_each_grade_equally():
    batch = _batch(torch.zeros(1, 4, 2), [[1, 0, 0, 0]], groups=[[0, 0, 1, 1]])
    target = target_exposure(batch, 2)[0]
    assert target.tolist() == pytest.approx([1.0, E2 / 3, E2 / 3, E2 / 3])


def test_expected_exposure_of_a_deterministic_policy_against_the_merit_target():
    """Score gaps of 5 at T = 0.05 make Plackett-Luce deterministic: top 2 = docs 0, 1, both group 0."""
    batch = _batch(torch.zeros(1, 4, 2), [[1, 0, 0, 0]], groups=[[0, 0, 1, 1]])
    value = expected_exposure(torch.tensor([[10.0, 5.0, 0.0, -5.0]]), batch, 2).item()
    target = (1 + E2 / 3, 2 * E2 / 3)
    assert value == pytest.approx(-((1 + E2 - target[0]) ** 2 + target[1] ** 2))
    fair = expected_exposure(torch.tensor([[10.0, 0.0, 5.0, -5.0]]), batch, 2).item()
    assert fair > value  # moving group 1 to rank 2 brings the exposure closer to the target


def test_expected_exposure_is_deterministic_and_batched_over_members():
    generator = torch.Generator().manual_seed(0)
    batch = _batch(torch.zeros(3, 8, 2), (torch.rand(3, 8, generator=generator) > 0.6).float(),
                   groups=torch.randint(0, 3, (3, 8), generator=generator))
    scores = torch.rand(5, 3, 8, generator=generator)
    batched = expected_exposure(scores, batch, 4)
    assert torch.equal(batched, expected_exposure(scores, batch, 4))
    for n in range(5):
        assert torch.allclose(batched[n], expected_exposure(scores[n], batch, 4))


def _random_case(seed: int, B: int = 6, P: int = 12):
    generator = torch.Generator().manual_seed(seed)
    grades = (torch.rand(B, P, generator=generator) > 0.55).float()
    grades[:, 0] = 1.0  # every query has a relevant document
    groups = torch.randint(0, 3, (B, P), generator=generator)
    scores = torch.randn(4, B, P, generator=generator)  # 4 members
    return scores, _batch(torch.zeros(B, P, 2), grades, groups=groups)


@pytest.mark.parametrize("k", [3, 5, 10])
@pytest.mark.parametrize("seed", [0, 1])
def test_alpha_ndcg_equals_ir_measures_pyndeval(k, seed):
    scores, batch = _random_case(seed)
    ours = alpha_ndcg(scores, batch, k)
    measure = ir_measures.alpha_nDCG(alpha=0.5, judged_only=False) @ k
    B, P = batch.grades.shape
    qrels = [Qrel(f"q{b}", f"d{p}", int(batch.grades[b, p]), str(int(batch.doc_groups[b, p])))
             for b in range(B) for p in range(P)]
    for member in range(scores.shape[0]):
        run = [ScoredDoc(f"q{b}", f"d{p}", float(scores[member, b, p])) for b in range(B) for p in range(P)]
        theirs = {m.query_id: m.value for m in ir_measures.iter_calc([measure], qrels, run)}
        for b in range(B):
            assert ours[member, b].item() == pytest.approx(theirs[f"q{b}"], abs=1e-9)


def test_alpha_ndcg_by_hand():
    """Ranking a (group 1), b (group 1), x (non-relevant), c (group 2): gains 1, 0.5, 0, 1; ideal a, c, b."""
    batch = _batch(torch.zeros(1, 4, 2), [[1, 1, 0, 1]], groups=[[1, 1, 1, 2]])
    value = alpha_ndcg(torch.tensor([[4.0, 3.0, 2.0, 1.0]]), batch, 4).item()
    dcg = 1 + 0.5 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 0.5 / math.log2(4)
    assert value == pytest.approx(dcg / ideal)


def test_group_objectives_without_groups_say_what_is_missing():
    batch = _batch(torch.zeros(1, 3, 2), [[1, 0, 0]])
    with pytest.raises(ValueError, match="doc_groups"):
        distinct_groups(torch.zeros(1, 3), batch, 2)


def test_set_objectives_are_registered_and_parse_like_metrics():
    for name in ("diversity", "groups", "alpha_ndcg", "exposure", "share"):
        assert name in OBJECTIVES
    assert parse_objective("diversity@10").name == "diversity@10"


def test_weighted_sum_parses_and_equals_the_sum_of_its_terms():
    scores, batch = _random_case(3)
    batch.doc_emb = torch.randn(batch.grades.shape + (4,), generator=torch.Generator().manual_seed(1))
    combined = parse_set_objective("ndcg@5+0.5*diversity@5+2*groups@5")
    expected = (parse_objective("ndcg@5")(scores, batch).double() + 0.5 * intra_list_diversity(scores, batch, 5)
                + 2 * distinct_groups(scores, batch, 5))
    assert torch.allclose(combined(scores, batch), expected)
    assert combined.name == "ndcg@5+0.5*diversity@5+2*groups@5"
    for bad in ("ndcg@5+", "ndcg@5+x*diversity@5", "ndcg@5+0.5*nothing@5"):
        with pytest.raises(ValueError):
            parse_set_objective(bad)


def test_vector_objective_stacks_the_objectives_on_a_last_axis():
    scores, batch = _random_case(4)
    vector = vector_objective(["ndcg@5", "groups@5"])
    values = vector(scores, batch)
    assert values.shape == scores.shape[:-1] + (2,) and vector.width == 2
    assert torch.allclose(values[..., 1], distinct_groups(scores, batch, 5))


def test_surrogates_are_differentiable_and_in_range():
    scores, batch = _random_case(5)
    batch.doc_emb = torch.randn(batch.grades.shape + (4,), generator=torch.Generator().manual_seed(2))
    s = scores[0].clone().requires_grad_(True)
    for surrogate, low, high in ((soft_diversity, 0.0, 2.0), (soft_share, -1.0, 0.0), (soft_groups, 0.0, 1.0)):
        value = surrogate(s, batch, 0.5)
        assert bool(((value >= low - 1e-6) & (value <= high + 1e-6)).all())
        (grad,) = torch.autograd.grad(value.sum(), s)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def _pareto_steps(small_config, small_data, steps: int = 2) -> torch.Tensor:
    from eggroll_ndcg.data.groups import train_positive_groups
    from eggroll_ndcg.train.batches import batch_rows, gather_batch
    from eggroll_ndcg.train.methods import METHODS
    from eggroll_ndcg.train.trainer import make_head

    groups = train_positive_groups(small_data.collection, small_data.queries("train"))
    head = make_head(small_config, small_data.doc_emb)
    method = METHODS.get("eggroll").build(head, small_config, vector_objective(["ndcg@5", "share@5"]))
    pools = small_data.train_pools
    rows = torch.tensor([small_data.query_row[q] for q in pools.query_ids])
    for step in range(steps):
        batch = gather_batch(pools, batch_rows(torch.arange(len(pools)), 16, seed=0, step=step),
                             small_data.query_emb[rows], small_data.doc_emb, groups=groups)
        record = method.step(batch, step)
        assert math.isfinite(record["fitness/mean"])
    return head.weight.detach().clone()


def test_eggroll_takes_a_multi_objective_fitness_through_pareto_shaping(small_config, small_data):
    """[N, B, K] fitness -> NSGA-II shaped [N] -> tell: the head moves, and the same seed gives the same head."""
    first = _pareto_steps(small_config, small_data)
    assert not torch.equal(first, torch.eye(first.shape[0]))
    assert torch.equal(first, _pareto_steps(small_config, small_data))


def test_train_accepts_a_weighted_objective_and_rejects_a_malformed_one(small_config, small_data):
    from eggroll_ndcg.train.config import ConfigError
    from eggroll_ndcg.train.trainer import Trainer

    config = small_config.replace(objective="ndcg@10+0.5*diversity@10", num_steps=2, eval_every=2)
    metrics = Trainer(config, data=small_data, progress=False).train()
    assert "val/ndcg@10" in metrics
    with pytest.raises(ConfigError, match="smooth NDCG"):  # a smooth-NDCG loss cannot target the diversity term
        config.replace(method="approx_ndcg").validate()
    for bad in ("ndcg@10+0.5*nothing@10", "ndcg@10+0.5*groups@10", "share@10"):  # groups: only `pareto` has them
        with pytest.raises(ConfigError, match="objective"):
            small_config.replace(objective=bad).validate()
