"""Genetic EGGROLL (`--method genetic`) and the ES + elite-archive hybrid (`--method genetic_es`).

`genetic`: a population of `genetic.num_individuals` individuals, each the shared base plus a chain of named
low-rank deltas (`es.genetic`), all scored on the step's batch in closed form (or by the population forward
for the MLP head). Fitness = the run's objective per individual and query, averaged over queries (a vector
objective's [K, B, O] values are ordered by NSGA-II rank and crowding instead, `es.pareto.nsga2_fitness`, so
selection and elitism are Pareto selection); the next generation keeps `elites` unchanged and breeds the rest by selection, crossover and one low-rank mutation
each (`es.genetic_ops`). Budget: `num_individuals × batch_queries` fitness evaluations per step, as for
`eggroll` with `es.population_size = genetic.num_individuals`.

After every step the trainer's head holds the best individual of the step (the elite): one
materialization per step, so validation, the best-head checkpoint and the test evaluation see the elite.
When a chain passes `max_terms` the elite is folded into a new base (`es.genetic.fold`); an individual still
longer than `max_terms` after the fold is reset to the elite plus its own newest mutation (logged).

`genetic_es`: EGGROLL on a private mean (section `es`) plus an archive of the `genetic.elites` best
individuals seen (materialized, re-scored on every batch); the head is the archive's best. It adds
selection to ES without crossover, so `eggroll` → `genetic_es` → `genetic` separates the two.
Budget: `(es.population_size + genetic.elites) × batch_queries` evaluations per step.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..es.genetic import Individual, TermFactors, fold, materialize, pack, population_scores, unpack
from ..es.pareto import nsga2_fitness
from ..es.genetic_ops import (CROSSOVERS, SELECTIONS, GenerationSettings, coefficient_diversity, elite_indices,
                              ga_seed, next_generation)
from ..models.heads import LinearHead, score_pool
from .batches import PoolBatch
from .config import TrainConfig, register_section
from .es_method import EggrollMethod
from .methods import MethodSpec, register_method
from .objectives import Objective


@dataclass
class GeneticSection:
    """Genetic settings (config section `genetic`): `num_individuals` individuals, `elites` kept unchanged,
    `selection` (truncation of the top `truncation` fraction, or tournaments of `tournament_size`),
    `crossover` (none, blend, components) with probability `crossover_rate` and blend weight `blend_alpha`
    (null: uniform in [0, 1]), mutation scale `mutation_sigma` at noise rank `mutation_rank`, and `max_terms` per
    chain before a fold."""

    num_individuals: int = 256
    elites: int = 1
    selection: str = "truncation"
    truncation: float = 0.25
    tournament_size: int = 4
    crossover: str = "blend"
    crossover_rate: float = 0.5
    blend_alpha: float | None = 0.5
    mutation_sigma: float = 0.02
    mutation_rank: int = 1
    max_terms: int = 16

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if self.num_individuals < 2:
            fail("num_individuals", f"must be >= 2, got {self.num_individuals}")
        if not 0 <= self.elites < self.num_individuals:
            fail("elites", f"must be in [0, num_individuals={self.num_individuals}), got {self.elites}")
        if self.selection not in SELECTIONS:
            fail("selection", f"unknown selection {self.selection!r}; choose one of {', '.join(SELECTIONS)}")
        if not 0 < self.truncation <= 1:
            fail("truncation", f"must be in (0, 1], got {self.truncation}")
        if not 2 <= self.tournament_size <= self.num_individuals:
            fail("tournament_size",
                 f"must be in [2, num_individuals={self.num_individuals}], got {self.tournament_size}")
        if self.crossover not in CROSSOVERS:
            fail("crossover", f"unknown crossover {self.crossover!r}; choose one of {', '.join(CROSSOVERS)}")
        if not 0 <= self.crossover_rate <= 1:
            fail("crossover_rate", f"must be in [0, 1], got {self.crossover_rate}")
        if self.blend_alpha is not None and not 0 <= self.blend_alpha <= 1:
            fail("blend_alpha", f"must be in [0, 1] or null (uniform), got {self.blend_alpha}")
        if not self.mutation_sigma > 0:
            fail("mutation_sigma", f"must be > 0, got {self.mutation_sigma}")
        for name in ("mutation_rank", "max_terms"):
            if getattr(self, name) < 1:
                fail(name, f"must be >= 1, got {getattr(self, name)}")

    def generation(self) -> GenerationSettings:
        return GenerationSettings(selection=self.selection, truncation=self.truncation,
                                  tournament_size=self.tournament_size, elites=self.elites, crossover=self.crossover,
                                  crossover_rate=self.crossover_rate, alpha=self.blend_alpha,
                                  sigma=self.mutation_sigma)


register_section("genetic", GeneticSection)


def _refuses(config: TrainConfig) -> str | None:
    if config.anchor_decay:
        return "anchor_decay acts on the trainer's head, which holds the elite, not the population; set it to 0"
    return None


@torch.no_grad()
def _write(head: nn.Module, values: dict[str, torch.Tensor]) -> None:
    for name, param in head.named_parameters():
        param.copy_(values[name])


class GeneticMethod:
    """One generation per step; see the module docstring."""

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective):
        self.head, self.config, self.objective = head, config, objective
        self.settings = config.genetic
        self.base_head = _float_base(head)  # holds the shared base θ₀ (the head holds the elite)
        self.factors = TermFactors(dict(self.base_head.named_parameters()), self.settings.mutation_rank)
        self.generation = 0
        self.folds = self.resets = 0
        seed = ga_seed(config.seed)  # generation 0: the base itself, then one mutation per slot
        self.individuals = [Individual()] + [Individual.of({(seed, 0, j): self.settings.mutation_sigma})
                                             for j in range(1, self.settings.num_individuals)]

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        """Score the generation, write its best into the head, breed the next generation (fold if needed)."""
        started = time.perf_counter()
        scores = population_scores(self.base_head, self.factors, self.individuals, batch.query_emb, batch.doc_emb,
                                   normalize=self.config.normalize)
        scoring = time.perf_counter() - started
        per_query = self.objective(scores, batch).double()  # [K, B], or [K, B, O] for a vector objective
        fitness = nsga2_fitness(per_query) if per_query.dim() == 3 else per_query.mean(1)  # NSGA-II order
        best = int(elite_indices(fitness, 1)[0])
        elite = materialize(dict(self.base_head.named_parameters()), self.individuals[best], self.factors)
        if hasattr(self.head, "requantize"):  # a quantized-weight head: quantize the elite back
            self.head.requantize(elite["linear.weight"])
        else:
            _write(self.head, elite)
        record = {"fitness/best": float(fitness[best]), "fitness/mean": float(fitness.mean()),
                  "fitness/std": float(fitness.std()) if fitness.numel() > 1 else 0.0,
                  "genetic/diversity": coefficient_diversity(self.individuals),
                  "genetic/unique_terms": len({k for ind in self.individuals for k, _ in ind.terms}),
                  "genetic/max_terms": max(len(ind) for ind in self.individuals),
                  "evaluations": int(per_query.shape[0] * per_query.shape[1]), "time/scoring": scoring}
        started = time.perf_counter()
        self.generation += 1
        bred = next_generation(self.individuals, fitness, self.settings.generation(), seed=self.config.seed,
                               generation=self.generation)
        if max(len(ind) for ind in bred) > self.settings.max_terms:
            bred = self._fold(bred, elite=0 if self.settings.elites else best_child(bred, self.individuals, best))
        self.individuals = bred
        self.factors.keep_only(k for ind in bred for k, _ in ind.terms)
        record.update({"genetic/folds": self.folds, "genetic/resets": self.resets,
                       "time/breeding": time.perf_counter() - started})
        return record

    def _fold(self, individuals: list[Individual], elite: int) -> list[Individual]:
        base, moved, too_long = fold(dict(self.base_head.named_parameters()), individuals, elite, self.factors,
                                     self.settings.max_terms)
        _write(self.base_head, base)
        self.factors = TermFactors(dict(self.base_head.named_parameters()), self.settings.mutation_rank)
        for i in too_long:  # the elite plus this slot's own newest mutation
            newest = max(individuals[i].terms)[0]
            moved[i] = Individual.of({newest: self.settings.mutation_sigma})
        self.folds += 1
        self.resets += len(too_long)
        return moved

    def steps_done(self) -> int:
        return self.generation

    def state_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "folds": self.folds, "resets": self.resets,
                "base": {k: v.detach().clone() for k, v in self.base_head.state_dict().items()},
                "population": pack(self.individuals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        individuals = unpack(state["population"])
        if len(individuals) != self.settings.num_individuals:
            raise ValueError(f"genetic state holds {len(individuals)} individuals, config says "
                             f"{self.settings.num_individuals}")
        self.base_head.load_state_dict(state["base"])
        self.factors = TermFactors(dict(self.base_head.named_parameters()), self.settings.mutation_rank)
        self.individuals = individuals
        self.generation, self.folds, self.resets = int(state["generation"]), int(state["folds"]), int(state["resets"])


def _float_base(head: nn.Module) -> nn.Module:
    """The module that holds the float base: a copy of the head, or, for a quantized-weight head (no
    parameters; `requantize`), a float `LinearHead` holding its dequantized W, so individuals are float
    deltas around it and only the elite written into the head is quantized back."""
    if hasattr(head, "requantize"):
        weight = head.weight.detach()
        base = LinearHead(weight.shape[1], weight.shape[0]).to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            base.linear.weight.copy_(weight)
    else:
        base = copy.deepcopy(head)
    for p in base.parameters():
        p.requires_grad_(False)
    return base


def best_child(bred: list[Individual], previous: list[Individual], best: int) -> int:
    """Without elites: the slot whose chain is closest to the previous best (the fold's anchor)."""
    target = previous[best]
    return min(range(len(bred)), key=lambda i: len(bred[i].minus(target)))


class GeneticESMethod:
    """EGGROLL on a private mean plus an elite archive (module docstring)."""

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective):
        self.head, self.config, self.objective = head, config, objective
        self.mean_head = _float_base(head).requires_grad_(True)  # float even for a quantized-weight head
        self.es = EggrollMethod(self.mean_head, config, objective)
        self.size = max(1, config.genetic.elites)
        self.archive: list[dict[str, torch.Tensor]] = [
            {k: v.detach().clone() for k, v in self.mean_head.named_parameters()}]

    def _archive_fitness(self, batch: PoolBatch) -> torch.Tensor:
        scratch = copy.deepcopy(self.mean_head)
        out = []
        for member in self.archive:
            _write(scratch, member)
            with torch.no_grad():
                scores = score_pool(scratch, batch.query_emb, batch.doc_emb, normalize=self.config.normalize)
            out.append(self.objective(scores[None], batch).double().mean())
        return torch.stack(out)

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        engine = self.es.engine
        population = engine.ask()
        fitness = torch.empty(population.num_members, batch.grades.shape[0], dtype=torch.float64,
                              device=batch.grades.device)
        with torch.no_grad():
            for chunk in population.chunks(self.config.es.pair_chunk):
                fitness[chunk.members] = self.objective(self.es.population_scores(chunk, batch), batch).double()
        member_fitness = fitness.mean(1)
        archive_fitness = self._archive_fitness(batch)
        candidates = [("archive", i, float(f)) for i, f in enumerate(archive_fitness)]
        candidates += [("member", int(i), float(member_fitness[i])) for i in elite_indices(member_fitness, self.size)]
        candidates.sort(key=lambda c: -c[2])  # stable: archive before members on ties
        mean = {k: v.detach().clone() for k, v in self.mean_head.named_parameters()}
        archive = []
        for kind, i, _ in candidates[: self.size]:
            if kind == "archive":
                archive.append(self.archive[i])
            else:
                pair, sign = divmod(i, 2)
                noise = {s.name: population.perturbation(s.name, torch.tensor([pair]))[0] for s in population.specs}
                archive.append({k: mean[k] + (1 - 2 * sign) * population.sigma * noise[k] if k in noise else mean[k]
                                for k in mean})
        self.archive = archive
        stats = engine.tell(fitness)
        if hasattr(self.head, "requantize"):  # a quantized-weight head: quantize the archive's best back
            self.head.requantize(self.archive[0]["linear.weight"])
        else:
            _write(self.head, self.archive[0])
        return {"fitness/best": candidates[0][2], "fitness/mean": float(member_fitness.mean()),
                "fitness/std": float(member_fitness.std()), "sigma": stats.get("sigma", population.sigma),
                "genetic/archive_best_is_new": float(candidates[0][0] == "member"),
                "evaluations": int(fitness.numel() + archive_fitness.numel() * batch.grades.shape[0])}

    def steps_done(self) -> int:
        return self.es.engine.step

    def state_dict(self) -> dict[str, Any]:
        return {"es": self.es.state_dict(), "archive": [dict(m) for m in self.archive],
                "mean": {k: v.detach().clone() for k, v in self.mean_head.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean_head.load_state_dict(state["mean"])
        self.es.load_state_dict(state["es"])
        self.archive = [dict(m) for m in state["archive"]]


register_method(MethodSpec(
    "genetic", GeneticMethod, sections=("genetic",), refuses=_refuses, trains_codes=True,
    summary="GA over base + named low-rank deltas: selection, crossover, elitism, EGGROLL mutation",
))
register_method(MethodSpec(
    "genetic_es", GeneticESMethod, sections=("es", "genetic"), refuses=_refuses,
    summary="EGGROLL with an elite archive (selection without crossover)",
))
