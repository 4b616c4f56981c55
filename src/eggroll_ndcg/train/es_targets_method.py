"""`--method es_targets`: sample with ES, optimize with gradients.

The EGGROLL population is drawn and scored exactly as in `eggroll` (same counter noise, same closed form,
the run's objective as the fitness f [N, B] per member and query), but the ES update rule is replaced by a
gradient step on a differentiable loss whose targets come from that fitness: per query q, a
fitness-weighted mixture of the members' top-one distributions (reward-weighted regression, Peters & Schaal
2007, applied per query),

    w_iq = softmax_i( z_iq / τ_w ),            z_iq = (f_iq - mean_i f_iq) / std_i f_iq   (0 when std = 0)
    t_q  = Σ_i w_iq softmax( s_iq / τ )        (s_iq [P]: member i's scores of q's pool, masked)
    L    = mean_q  - Σ_p t_qp log softmax( s_q / τ )_p        (s_q: the head's own scores, by autograd)

with τ = `loss.temperature` and τ_w = `es_targets.weight_temperature`; one optimizer step of the shared
optimizer settings per batch (`optimizer`, `learning_rate`, `grad_clip`). What changes against `eggroll`
is only the update rule: the same members and fitness, but (i) credit is assigned per query instead of
through one shaped scalar per member, and (ii) the step is a gradient of a cross-entropy towards the
better members' rankings instead of Σ f̃_i E_i. At τ_w → ∞ the target is the population's mean ranking
(the head barely moves); at τ_w → 0 it is each query's best member.

Config: the `es` section (population, rank, sigma, shaping is not used), `es_targets`, `loss`. The adaptive
sigma rule is refused (it observes `tell`, which this method never calls).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..models.heads import score_pool
from . import distributed
from .batches import PoolBatch
from .config import TrainConfig, register_section
from .es_method import EggrollMethod
from .methods import MethodSpec, register_method
from .objectives import Objective


@dataclass
class EsTargetsSection:
    """`weight_temperature` τ_w of the per-query softmax over the members' standardized fitness."""

    weight_temperature: float = 0.5

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if not self.weight_temperature > 0:
            fail("weight_temperature", f"must be > 0, got {self.weight_temperature}")


register_section("es_targets", EsTargetsSection)


def fitness_targets(member_scores: torch.Tensor, fitness: torch.Tensor, mask: torch.Tensor, *, temperature: float,
                    weight_temperature: float) -> torch.Tensor:
    """``t [B, P]`` from member scores ``[N, B, P]``, fitness ``[N, B]`` and the pool mask ``[B, P]``
    (module docstring); rows sum to 1 over the real candidates, 0 on padding."""
    f = fitness.double()
    std = f.std(dim=0, unbiased=False, keepdim=True)
    z = torch.where(std > 0, (f - f.mean(dim=0, keepdim=True)) / std.clamp_min(1e-300), torch.zeros_like(f))
    weights = torch.softmax(z / weight_temperature, dim=0)  # [N, B]
    logits = (member_scores.double() / temperature).masked_fill(~mask, float("-inf"))
    return torch.einsum("nb,nbp->bp", weights, torch.softmax(logits, dim=-1)).to(member_scores.dtype)


class EsTargetsMethod(EggrollMethod):
    """The EGGROLL population and fitness, a cross-entropy gradient step (module docstring)."""

    population_sharding = False

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective):
        super().__init__(head, config, objective)  # the engine draws and names the population; tell is never called
        self.optimizer = self.engine.optimizer
        self.steps = 0

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        es = self.config.es
        population = dataclasses.replace(self.engine.ask(), step=step, epoch=step // es.noise_reuse,
                                         sigma=self.engine.sigma_controller.sigma(step))
        n_q, pool = batch.grades.shape
        scores = torch.empty(population.num_members, n_q, pool, dtype=batch.doc_emb.dtype, device=batch.doc_emb.device)
        fitness = torch.empty(population.num_members, n_q, dtype=torch.float64, device=batch.grades.device)
        with torch.no_grad():
            for chunk in distributed.rank_chunks(population, es.pair_chunk, None):
                scores[chunk.members] = self.population_scores(chunk, batch)
                fitness[chunk.members] = self.objective(scores[chunk.members], batch).double()
        temperature = self.config.loss.temperature
        targets = fitness_targets(scores, fitness, batch.mask, temperature=temperature,
                                  weight_temperature=self.config.es_targets.weight_temperature)
        own = score_pool(self.head, batch.query_emb, batch.doc_emb, normalize=self.config.normalize)
        log_p = torch.log_softmax((own / temperature).masked_fill(~batch.mask, torch.finfo(own.dtype).min / 4), dim=-1)
        loss = -(targets * log_p.masked_fill(~batch.mask, 0.0)).sum(-1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.head.parameters(), self.config.grad_clip if self.config.grad_clip else float("inf"))
        self.optimizer.step()
        self.steps += 1
        per_member = fitness.mean(dim=1)
        return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "sigma": population.sigma,
                "fitness/mean": float(per_member.mean()), "fitness/max": float(per_member.max()),
                "time/step": time.perf_counter() - started}

    def steps_done(self) -> int:
        return self.steps

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"]


def _refuses(config: TrainConfig) -> str | None:
    if config.es.sigma_schedule == "adaptive":
        return "es.sigma_schedule 'adaptive' observes ES updates, which es_targets does not make; use a schedule"
    return None


register_method(MethodSpec(
    "es_targets", EsTargetsMethod, sections=("es", "es_targets", "loss"),
    summary="the EGGROLL population's fitness as per-query targets of a cross-entropy gradient step",
    refuses=_refuses,
))
