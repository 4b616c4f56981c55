"""Genetic operators on base-plus-chain individuals (:mod:`es.genetic`): selection, elitism, mutation by
EGGROLL low-rank noise, blend and structured crossover, and one generation built from them.

* **Truncation selection**: parents drawn uniformly from the top ``ceil(truncation · K)`` (Such et al. 2017).
* **Tournament selection**: EvoTorch's ``operators.functional.tournament`` on the fitness vector, returning
  the winners' indices (two sets of tournaments = the two parents of each child).
* **Elitism**: the top ``elites`` individuals are copied unchanged into the next generation.
* **Mutation**: ``θ' = θ + σ_mut · A Bᵀ / sqrt(r)``, one new term keyed ``(seed, generation, child)``.
* **Blend crossover**: ``α θ₁ + (1 − α) θ₂ = θ₀ + α Δ₁ + (1 − α) Δ₂``, exact on the chains.
* **Structured (component) crossover**: the parents' chains are aligned on the union of their terms into
  coefficient vectors ``c₁, c₂ [U]`` (0 where a parent lacks the term, ordered by key, i.e. by generation),
  and EvoTorch's ``one_point_cross_over`` cuts them: the child keeps each low-rank component with the
  coefficient of one parent or the other.

Where EvoTorch does not fit: its ``GeneticAlgorithm`` and ``SolutionBatch`` need fixed-length decision
vectors evaluated through its ``Problem`` loop, and its ``GaussianMutation`` draws dense full-rank noise that
no counter names; our individuals are variable-length chains scored in closed form on the trainer's batch.
So EvoTorch supplies the tournament and the cut of aligned coefficient vectors; mutation and blend are the
chain algebra above. EvoTorch draws from torch's global generator: every call runs inside
``torch.random.fork_rng`` seeded from ``(seed, generation)``, so a generation is a pure function of its
inputs (resume is bit-identical, nothing to save).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from evotorch.operators import functional as evo

from .genetic import Individual, Key
from .noise import base_key

CROSSOVERS = ("none", "blend", "components")
SELECTIONS = ("truncation", "tournament")
_GA_SEED_SALT = 0x6A09E667  # mutation keys use seed ^ salt: never the ES engine's noise of the same seed


def ga_seed(seed: int) -> int:
    """The noise seed of genetic mutation terms for a run seed."""
    return (int(seed) ^ _GA_SEED_SALT) & 0xFFFFFFFF


def generator_for(seed: int, generation: int, purpose: int = 0) -> torch.Generator:
    """A CPU generator that is a pure function of ``(seed, generation, purpose)``."""
    return torch.Generator().manual_seed(base_key(seed, generation, purpose))


def elite_indices(fitness: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` best indices, best first; ties go to the lower index (stable)."""
    return torch.sort(fitness, descending=True, stable=True).indices[:n]


def truncation_select(fitness: torch.Tensor, num: int, truncation: float, generator: torch.Generator) -> torch.Tensor:
    """``num`` parent indices drawn uniformly (with replacement) from the top ``ceil(truncation·K)``."""
    top = elite_indices(fitness, max(1, math.ceil(truncation * fitness.numel())))
    return top[torch.randint(0, top.numel(), (num,), generator=generator)]


def tournament_select(fitness: torch.Tensor, num: int, size: int, seed: int) -> torch.Tensor:
    """``num`` (even) winners of EvoTorch tournaments of ``size``; first half = first parents."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        picked = evo.tournament(torch.arange(fitness.numel(), dtype=torch.float64)[:, None], fitness.double().cpu(),
                                num_tournaments=num, tournament_size=size, objective_sense="max",
                                return_indices=True, split_results=True)
    return torch.cat((picked.parent1_indices, picked.parent2_indices))


def mutate(individual: Individual, key: Key, sigma: float) -> Individual:
    """``θ + σ · E_key``: one new named low-rank term."""
    return individual.with_term(key, sigma)


def blend(first: Individual, second: Individual, alpha: float) -> Individual:
    """``α θ₁ + (1 − α) θ₂`` on the chains (exact: the base is shared)."""
    return first.scaled(alpha).plus(second.scaled(1.0 - alpha))


def component_crossover(first: Individual, second: Individual, seed: int) -> Individual:
    """The first child of EvoTorch's one-point cut of the aligned coefficient vectors (module docstring)."""
    union = sorted(set(first.as_dict()) | set(second.as_dict()))
    if len(union) < 2:
        return first
    a, b = first.as_dict(), second.as_dict()
    # one zero pad at the end: EvoTorch cuts in [1, L-2], so the child gets at least one component of each side
    parents = torch.tensor([[a.get(k, 0.0) for k in union] + [0.0], [b.get(k, 0.0) for k in union] + [0.0]],
                           dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        children = evo.one_point_cross_over(parents)
    return Individual.of(dict(zip(union, children[0].tolist())))


@dataclass(frozen=True)
class GenerationSettings:
    """How one generation is bred: selection, elites, crossover kind and rate, blend α (None: uniform), σ."""

    selection: str = "truncation"
    truncation: float = 0.25
    tournament_size: int = 4
    elites: int = 1
    crossover: str = "blend"
    crossover_rate: float = 0.5
    alpha: float | None = 0.5
    sigma: float = 0.02


def next_generation(individuals: Sequence[Individual], fitness: torch.Tensor, settings: GenerationSettings, *,
                    seed: int, generation: int) -> list[Individual]:
    """Generation ``generation`` from the scored previous one (``fitness [K]``, higher is better).

    Slots ``0 .. elites-1`` are the elites, best first, unchanged; each other slot ``j`` is a child of two
    selected parents: crossover with probability ``crossover_rate``, then a mutation keyed
    ``(ga_seed(seed), generation, j)``."""
    size = len(individuals)
    fitness = fitness.double().cpu()
    children = size - settings.elites
    rng = generator_for(seed, generation)
    if settings.selection == "tournament":
        parents = tournament_select(fitness, 2 * children, settings.tournament_size,
                                    base_key(seed, generation, 1)).view(2, children)
    else:
        parents = truncation_select(fitness, 2 * children, settings.truncation, rng).view(2, children)
    crossing = torch.rand(children, generator=rng, dtype=torch.float64) < settings.crossover_rate
    alphas = torch.rand(children, generator=rng, dtype=torch.float64)
    out = [individuals[int(i)] for i in elite_indices(fitness, settings.elites)]
    noise_seed = ga_seed(seed)
    for j in range(children):
        first, second = individuals[int(parents[0, j])], individuals[int(parents[1, j])]
        child = first
        if settings.crossover != "none" and bool(crossing[j]):
            if settings.crossover == "blend":
                alpha = settings.alpha if settings.alpha is not None else float(alphas[j])
                child = blend(first, second, alpha)
            else:
                child = component_crossover(first, second, base_key(seed, generation, 2 + j))
        out.append(mutate(child, (noise_seed, generation, settings.elites + j), settings.sigma))
    return out


def coefficient_diversity(individuals: Sequence[Individual]) -> float:
    """``sqrt(mean_i Σ_k (c_ik − c̄_k)²)``: the population's spread in coefficient space, i.e. its RMS
    Frobenius distance to the mean delta in units of one unit term (exact in expectation: distinct terms are
    independent, so ``E⟨E_k, E_l⟩ = 0`` for ``k ≠ l``, and each has ``E‖E_k‖²`` = the parameter count)."""
    sums: dict[Key, float] = {}
    squares = 0.0
    for ind in individuals:
        for k, c in ind.terms:
            sums[k] = sums.get(k, 0.0) + c
            squares += c * c
    size = max(1, len(individuals))
    return math.sqrt(max(0.0, (squares - sum(s * s for s in sums.values()) / size) / size))
