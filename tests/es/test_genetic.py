"""Genetic individuals (base + named low-rank chains) and their operators, against materialized oracles.

Oracle throughout: `materialize` forms θ₀ + Σ_k c_k E_k explicitly, the head is loaded with it and scored by
`score_pool` (plain forward, no closed form); float64 so the comparison is tight."""

from __future__ import annotations

import copy

import pytest
import torch

from eggroll_ndcg.es.genetic import Individual, TermFactors, fold, materialize, pack, population_scores, unpack
from eggroll_ndcg.es.genetic_ops import (GenerationSettings, blend, coefficient_diversity, component_crossover,
                                         next_generation, tournament_select, truncation_select, generator_for)
from eggroll_ndcg.models.heads import HeadSettings, build_head, score_pool

HEADS = ["linear", "subspace", "adapter", "mlp"]


def _head(name: str) -> torch.nn.Module:
    g = torch.Generator().manual_seed(3)
    head = build_head(name, torch.randn(40, 10, generator=g, dtype=torch.float64),
                      HeadSettings(subspace_dim=4, hidden=6)).double()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return head


def _inputs():
    g = torch.Generator().manual_seed(4)
    return torch.randn(3, 10, generator=g, dtype=torch.float64), torch.randn(3, 7, 10, generator=g, dtype=torch.float64)


def _individuals(count: int = 5) -> list[Individual]:
    out = [Individual()]
    for i in range(1, count):
        out.append(Individual.of({(11, g, i + g): 0.1 * (i + g) * (-1) ** g for g in range(i)}))
    return out


def _oracle_scores(head, base, individual, factors, h_q, h_d, normalize):
    scratch = copy.deepcopy(head)
    with torch.no_grad():
        for name, p in scratch.named_parameters():
            p.copy_(materialize(base, individual, factors)[name])
    return score_pool(scratch, h_q, h_d, normalize=normalize)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("name", HEADS)
def test_closed_form_scores_of_an_individual_equal_those_of_its_materialized_weights(name, normalize):
    head = _head(name)
    base = {k: v.detach().clone() for k, v in head.named_parameters()}
    factors = TermFactors(dict(head.named_parameters()), rank=2)
    h_q, h_d = _inputs()
    individuals = _individuals()
    scores = population_scores(head, factors, individuals, h_q, h_d, normalize=normalize)
    assert scores.shape == (len(individuals), 3, 7)
    for i, ind in enumerate(individuals):
        expected = _oracle_scores(head, base, ind, factors, h_q, h_d, normalize)
        torch.testing.assert_close(scores[i], expected, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(scores[0], scores[-1])  # the deltas do change the scores


def test_scores_do_not_depend_on_how_the_population_is_blocked(monkeypatch):
    import eggroll_ndcg.es.genetic as genetic

    head, (h_q, h_d) = _head("linear"), _inputs()
    factors = TermFactors(dict(head.named_parameters()), rank=1)
    whole = population_scores(head, factors, _individuals(6), h_q, h_d, normalize=True)
    monkeypatch.setattr(genetic, "SCORE_BLOCK_ELEMENTS", 1)
    torch.testing.assert_close(population_scores(head, factors, _individuals(6), h_q, h_d, normalize=True), whole,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", HEADS)
def test_blend_crossover_on_the_chains_equals_blending_the_materialized_parents(name):
    head = _head(name)
    base = {k: v.detach().clone() for k, v in head.named_parameters()}
    factors = TermFactors(dict(head.named_parameters()), rank=1)
    first, second = _individuals()[3], _individuals()[4]
    assert set(first.as_dict()) & set(second.as_dict()) != set(first.as_dict()) | set(second.as_dict())
    for alpha in (0.0, 0.3, 0.5, 1.0):
        child = materialize(base, blend(first, second, alpha), factors)
        w1, w2 = materialize(base, first, factors), materialize(base, second, factors)
        for k in base:
            torch.testing.assert_close(child[k], alpha * w1[k] + (1 - alpha) * w2[k], rtol=1e-10, atol=1e-12)
    if hasattr(head, "weight_noise"):  # and so is the effective weight W (affine in the parameters)
        scratch = [copy.deepcopy(head) for _ in range(3)]
        for module, ind in zip(scratch, (first, second, blend(first, second, 0.3))):
            with torch.no_grad():
                for k, p in module.named_parameters():
                    p.copy_(materialize(base, ind, factors)[k])
        torch.testing.assert_close(scratch[2].weight, 0.3 * scratch[0].weight + 0.7 * scratch[1].weight)


def test_component_crossover_keeps_each_component_of_one_parent_or_the_other():
    first = Individual.of({(1, 0, i): float(i + 1) for i in range(6)})
    second = Individual.of({(1, 0, i): -float(i + 1) for i in range(3, 9)})
    for seed in range(8):
        child = component_crossover(first, second, seed).as_dict()
        a, b = first.as_dict(), second.as_dict()
        for key in set(a) | set(b):
            assert child.get(key, 0.0) in (a.get(key, 0.0), b.get(key, 0.0))
        assert child != a and child != b or len(child) > 0
    assert component_crossover(first, second, 0) == component_crossover(first, second, 0)  # pure in its seed


def test_folding_the_elite_into_the_base_keeps_every_individual_exactly():
    head = _head("adapter")
    base = {k: v.detach().clone() for k, v in head.named_parameters()}
    factors = TermFactors(dict(head.named_parameters()), rank=1)
    ancestor = _individuals()[4]
    individuals = _individuals() + [ancestor.with_term((11, 9, 1), 0.2), ancestor.with_term((11, 9, 2), -0.3)]
    new_base, moved, too_long = fold(base, individuals, 5, factors, max_terms=100)
    assert too_long == [] and len(moved[5]) == 0  # the elite is the new base
    assert len(moved[6]) == 2  # its sibling: the shared ancestor cancels, the two mutations remain
    for before, after in zip(individuals, moved):
        old, new = materialize(base, before, factors), materialize(new_base, after, factors)
        torch.testing.assert_close(new["up"], old["up"], rtol=1e-10, atol=1e-12)


def test_chains_round_trip_through_the_checkpoint_form_exactly():
    individuals = _individuals() + [blend(_individuals()[2], _individuals()[4], 0.37)]
    assert unpack(pack(individuals)) == individuals


def test_elitism_keeps_the_best_individual_unchanged_in_slot_zero():
    individuals = _individuals(8)
    fitness = torch.tensor([0.1, 0.5, 0.2, 0.9, 0.3, 0.9, 0.0, 0.4], dtype=torch.float64)
    for crossover in ("none", "blend", "components"):
        for selection in ("truncation", "tournament"):
            settings = GenerationSettings(selection=selection, elites=2, crossover=crossover, crossover_rate=1.0)
            nxt = next_generation(individuals, fitness, settings, seed=0, generation=5)
            assert nxt[0] == individuals[3] and nxt[1] == individuals[5] and len(nxt) == 8
            assert all(len(c) > 0 for c in nxt[2:])  # every child carries its mutation
            assert nxt == next_generation(individuals, fitness, settings, seed=0, generation=5)  # pure


def test_truncation_and_tournament_pick_only_from_the_fitter_individuals():
    fitness = torch.arange(20, dtype=torch.float64)
    picked = truncation_select(fitness, 200, 0.25, generator_for(0, 1))
    assert set(picked.tolist()) <= set(range(15, 20)) and len(set(picked.tolist())) > 1
    weak, strong = (tournament_select(fitness, 400, size, seed=3).double().mean() for size in (2, 8))
    assert 9.5 < weak < strong  # EvoTorch samples entrants with replacement: pressure grows with the size


def test_coefficient_diversity_is_zero_for_clones_and_grows_with_spread():
    clone = _individuals()[3]
    assert coefficient_diversity([clone] * 4) == pytest.approx(0.0, abs=1e-12)
    assert coefficient_diversity(_individuals()) > coefficient_diversity(_individuals()[:2])
