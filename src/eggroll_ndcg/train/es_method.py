"""EGGROLL on a retrieval head: population scores over the batch pools, NDCG@k per member and query as the
fitness, one engine update per step.

A linear head is scored with the exact closed form of the shared bilinear score (never materializing a
member's weights), and so are the subspace head, whose rank-r noise on M is rank-r noise (P A)(P B)ᵀ on W,
and the adapter head, whose noise A Bᵀ on U is A (P B)ᵀ on W; any other head (the residual MLP) runs its
Linear layers as a population. Fitness is the
[N, B] matrix of per-member, per-query metrics, so per-query shapings can use the query structure.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..es import AdaptiveSigma, CosineSigma, EggrollES, ExponentialSigma, LinearSigma, population_forward
from ..es.perturb import bilinear_population_scores
from ..metrics.ranking import ranking_metrics
from ..models.heads import AdapterHead, LinearHead, SubspaceHead
from .batches import PoolBatch
from .config import TrainConfig
from .optimizers import make_optimizer


def sigma_controller(config: TrainConfig):
    """The sigma rule of a config: a constant, a schedule from `sigma` to `sigma_final` over `num_steps`, or
    the adaptive rule (bounded to [sigma/10, sigma*10])."""
    final = config.sigma_final if config.sigma_final is not None else config.sigma / 10
    schedules = {"linear": LinearSigma, "cosine": CosineSigma, "exponential": ExponentialSigma}
    if config.sigma_schedule in schedules:
        return schedules[config.sigma_schedule](config.sigma, final, config.num_steps)
    if config.sigma_schedule == "adaptive":
        return AdaptiveSigma(config.sigma, lower=config.sigma / 10, upper=config.sigma * 10)
    return config.sigma


class EggrollMethod:
    """One EGGROLL step per batch; see the module docstring."""

    def __init__(self, head: nn.Module, config: TrainConfig):
        self.head = head
        self.config = config
        params = dict(head.named_parameters())
        self.engine = EggrollES(
            params, population_size=config.population_size, rank=config.rank, sigma=sigma_controller(config),
            seed=config.seed, optimizer=make_optimizer(config, params.values()), noise_reuse=config.noise_reuse,
            shaping=config.shaping, grad_clip=config.grad_clip, pair_chunk=config.pair_chunk,
        )

    def _weight_factors(self, chunk) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The chunk's low-rank noise as noise on the head's weight W, (A [J, n, r], B [J, n, r]), when the
        head is W h; None for other heads."""
        if isinstance(self.head, LinearHead) and self.head.bias is None:
            return chunk.factors("linear.weight")
        if isinstance(self.head, SubspaceHead):  # M + cABᵀ is W + c(PA)(PB)ᵀ
            A, B = chunk.factors("core")
            return self.head.basis @ A, self.head.basis @ B
        if isinstance(self.head, AdapterHead):  # U + cABᵀ is W + cA(PB)ᵀ
            A, B = chunk.factors("up")
            return A, self.head.basis @ B
        return None

    def _population_scores(self, chunk, batch: PoolBatch) -> torch.Tensor:
        """[2J, B, P] scores of the chunk's members."""
        factors = self._weight_factors(chunk)
        if factors is not None:
            return bilinear_population_scores(
                self.head.weight, batch.query_emb, batch.doc_emb, *factors, chunk.sigma, normalize=self.config.normalize
            )
        q = population_forward(self.head, chunk, batch.query_emb, shared_inputs=True)  # [2J, B, m]
        d = population_forward(self.head, chunk, batch.doc_emb, shared_inputs=True)  # [2J, B, P, m]
        if self.config.normalize:
            q, d = nn.functional.normalize(q, dim=-1), nn.functional.normalize(d, dim=-1)
        return torch.einsum("nbpm,nbm->nbp", d, q)

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        """Score every member on the batch, take metric@k per member and query, update the head."""
        config = self.config
        timings = {"noise": 0.0, "scoring": 0.0, "metric": 0.0}
        population = self.engine.ask()
        fitness = torch.empty(population.num_members, batch.grades.shape[0], dtype=torch.float64,
                              device=batch.grades.device)
        with torch.no_grad():
            for chunk in population.chunks(config.pair_chunk):
                started = time.perf_counter()
                for spec in population.specs:  # generate (and cache in the chunk) this chunk's noise
                    chunk.factors(spec.name) if spec.kind == "lowrank" else chunk.full_noise(spec.name)
                timings["noise"] += time.perf_counter() - started
                started = time.perf_counter()
                scores = self._population_scores(chunk, batch)
                timings["scoring"] += time.perf_counter() - started
                started = time.perf_counter()
                fitness[chunk.members] = ranking_metrics(
                    scores, batch.grades, ks=[config.fitness_k], ideal_grades=batch.ideal_grades, mask=batch.mask,
                    measures=(config.fitness_metric,),
                )[config.fitness_metric][..., 0].double()
                timings["metric"] += time.perf_counter() - started
        started = time.perf_counter()
        stats = self.engine.tell(fitness)
        timings["update"] = time.perf_counter() - started
        record: dict[str, Any] = {f"fitness/{k[len('fitness_'):]}": v for k, v in stats.items() if k.startswith("fitness_")}
        record.update({k: v for k, v in stats.items() if not k.startswith("fitness_") and k != "step"})
        record.update({f"time/{k}": v for k, v in timings.items()})
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"engine": self.engine.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state["engine"])
