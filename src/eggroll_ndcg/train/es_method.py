"""EGGROLL on a retrieval head: population scores over the batch pools, NDCG@k per member and query as the
fitness, one engine update per step.

A head that describes its own noise (`weight_noise`, see `models.heads`: linear, subspace, adapter) is
scored with the exact closed form of the shared bilinear score, never materializing a member's weights; any
other head (the residual MLP) runs its Linear layers as a population. Fitness is the [N, B] matrix of the
run's objective per member and query, so per-query shapings can use the query structure.

Config section `es` (`ESSection`): population size, rank, sigma and its schedule, shaping, noise reuse and
the pair chunk of the scoring loop.

Under torchrun (WORLD_SIZE > 1, see `train.distributed`) each rank scores a contiguous block of the pair
chunks, the [N, B] fitness is all-gathered in the one-process member order, and every rank runs the same
`tell`: the weights stay bit-identical on every rank and to one process (`es.pair_chunk` set; with null,
see `train.distributed`). The step record then has `time/communication` (the all_gather, including the
wait for the slowest rank).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..es import AdaptiveSigma, CosineSigma, EggrollES, ExponentialSigma, LinearSigma, population_forward
from ..es.pareto import nsga2_fitness
from ..es.perturb import bilinear_population_scores
from ..es.shaping import get_shaping
from . import distributed
from .batches import PoolBatch
from .config import TrainConfig, register_section
from .methods import MethodSpec, register_method
from .objectives import Objective
from .optimizers import make_optimizer

SIGMA_SCHEDULES = ("constant", "linear", "cosine", "exponential", "adaptive")


@dataclass
class ESSection:
    """EGGROLL settings (config section `es`): `population_size` N members in N/2 antithetic pairs of rank
    `rank` noise at scale `sigma` (constant, or scheduled to `sigma_final` over the run, or adaptive),
    `shaping` of the fitness, `noise_reuse` steps per noise epoch, `pair_chunk` pairs scored at once."""

    population_size: int = 256
    rank: int = 1
    sigma: float = 0.02
    sigma_schedule: str = "constant"
    sigma_final: float | None = None
    shaping: str = "centered_rank"
    noise_reuse: int = 1
    pair_chunk: int | None = None

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if self.population_size < 2 or self.population_size % 2:
            fail("population_size", f"must be an even number >= 2 (antithetic pairs), got {self.population_size}")
        for name in ("rank", "noise_reuse"):
            if getattr(self, name) < 1:
                fail(name, f"must be >= 1, got {getattr(self, name)}")
        if self.pair_chunk is not None and self.pair_chunk < 1:
            fail("pair_chunk", f"must be >= 1 or null (all pairs at once), got {self.pair_chunk}")
        if not self.sigma > 0:
            fail("sigma", f"must be > 0, got {self.sigma}")
        if self.sigma_final is not None and not self.sigma_final > 0:
            fail("sigma_final", f"must be > 0 or null, got {self.sigma_final}")
        if self.sigma_schedule not in SIGMA_SCHEDULES:
            fail("sigma_schedule", f"unknown schedule {self.sigma_schedule!r}; choose one of {', '.join(SIGMA_SCHEDULES)}")
        try:
            get_shaping(self.shaping)
        except ValueError as error:
            fail("shaping", str(error))


register_section("es", ESSection)


def sigma_controller(es: ESSection, num_steps: int):
    """The sigma rule of an `es` section: a constant, a schedule from `sigma` to `sigma_final` over
    `num_steps`, or the adaptive rule (bounded to [sigma/10, sigma*10])."""
    final = es.sigma_final if es.sigma_final is not None else es.sigma / 10
    schedules = {"linear": LinearSigma, "cosine": CosineSigma, "exponential": ExponentialSigma}
    if es.sigma_schedule in schedules:
        return schedules[es.sigma_schedule](es.sigma, final, num_steps)
    if es.sigma_schedule == "adaptive":
        return AdaptiveSigma(es.sigma, lower=es.sigma / 10, upper=es.sigma * 10)
    return es.sigma


class EggrollMethod:
    """One EGGROLL step per batch; see the module docstring. Sharded over the ranks of the default process
    group when there is one (`train.distributed`)."""

    population_sharding = True  # train.distributed: this method may run under torchrun with WORLD_SIZE > 1

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective):
        self.head = head
        self.world = distributed.current()  # None in one process
        self.config = config
        self.objective = objective
        es = config.es
        params = dict(head.named_parameters())
        self.engine = EggrollES(
            params, population_size=es.population_size, rank=es.rank, sigma=sigma_controller(es, config.num_steps),
            seed=config.seed, optimizer=make_optimizer(config, params.values()), noise_reuse=es.noise_reuse,
            shaping=es.shaping, grad_clip=config.grad_clip, pair_chunk=es.pair_chunk,
        )

    @torch.no_grad()
    def population_scores(self, chunk, batch: PoolBatch) -> torch.Tensor:
        """[2J, B, P] scores of the chunk's members: the closed form when the head describes its noise on an
        effective weight (`weight_noise`), else its Linear layers run as a population."""
        if self.config.quantize != "none":  # exactly the served codes' scores (quant.outputs)
            from ..quant.outputs import head_population_scores
            return head_population_scores(self.head, chunk, batch.query_emb, batch.doc_emb, batch.mask,
                                          kind=self.config.quantize, normalize=self.config.normalize)
        describe = getattr(self.head, "weight_noise", None)
        factors = describe(chunk.factors) if describe is not None else None
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
        """Score every member on the batch, take the objective per member and query, update the head."""
        timings = {"noise": 0.0, "scoring": 0.0, "metric": 0.0}
        population = self.engine.ask()
        width = getattr(self.objective, "width", None)  # K for a multi-objective (vector) objective
        fitness = torch.empty((population.num_members, batch.grades.shape[0]) + ((width,) if width else ()),
                              dtype=torch.float64, device=batch.grades.device)
        with torch.no_grad():
            for chunk in distributed.rank_chunks(population, self.config.es.pair_chunk, self.world):
                started = time.perf_counter()
                for spec in population.specs:  # generate (and cache in the chunk) this chunk's noise
                    chunk.factors(spec.name) if spec.kind == "lowrank" else chunk.full_noise(spec.name)
                timings["noise"] += time.perf_counter() - started
                started = time.perf_counter()
                scores = self.population_scores(chunk, batch)
                timings["scoring"] += time.perf_counter() - started
                started = time.perf_counter()
                fitness[chunk.members] = self.objective(scores, batch).double()
                timings["metric"] += time.perf_counter() - started
        if self.world is not None:
            started = time.perf_counter()
            fitness = distributed.gather_fitness(
                self.world, fitness, population, self.config.es.pair_chunk, step=step, engine_step=self.engine.step,
                weights=distributed.fingerprint(self.head.parameters()))
            timings["communication"] = time.perf_counter() - started
        if fitness.dim() == 3:  # [N, B, K]: NSGA-II rank + crowding -> the [N] vector tell takes (es.pareto)
            fitness = nsga2_fitness(fitness)
        started = time.perf_counter()
        stats = self.engine.tell(fitness)
        timings["update"] = time.perf_counter() - started
        record: dict[str, Any] = {f"fitness/{k[len('fitness_'):]}": v for k, v in stats.items() if k.startswith("fitness_")}
        record.update({k: v for k, v in stats.items() if not k.startswith("fitness_") and k != "step"})
        record.update({f"time/{k}": v for k, v in timings.items()})
        return record

    def steps_done(self) -> int:
        """The engine's step counter (the trainer checks it against its own on resume)."""
        return self.engine.step

    def state_dict(self) -> dict[str, Any]:
        return {"engine": self.engine.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state["engine"])


register_method(MethodSpec(
    "eggroll", EggrollMethod, sections=("es",),
    summary="EGGROLL low-rank evolution strategies on the objective itself",
))
