"""`--method guided_es`: EGGROLL whose noise is partly drawn in the span of recent surrogate gradients.

Each step: (1) the surrogate gradient ∇L of a differentiable loss of `train.losses` (`guided.loss`, with the
options its gradient method gives it: LambdaLoss's cutoff, PL-PG's reward) on the same batch, by autograd;
(2) it joins the last `guided.k` gradients spanning the subspace U (`es.guided.GuidedES`); (3) the
population, with noise sqrt(α) E_j + sqrt((1-α) D/k) U eps'_j, is scored with the exact closed form and the
run's objective (the fitness stays the true NDCG@k); (4) the paper's estimator updates the head.

The step record adds `guided/cos_surrogate`, the cosine between the ES estimate g (the update direction
before the optimizer, read back from `param.grad = -g`) and the surrogate's descent direction -∇L, and
`guided/subspace_dim` (k after dropping collinear gradients). With `guided.alpha = 1` and `guided.beta = 1`
the run is plain EGGROLL, bit for bit (the surrogate is still computed, for the cosine).

Config section `guided` (`GuidedSection`); the `es` section gives population, rank, sigma and shaping.
Heads: those with the closed form (`weight_noise`: linear without bias, subspace, adapter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..es.guided import GuidedES
from ..models.heads import score_pool
from .batches import PoolBatch, step_generator
from .config import TrainConfig, register_section
from .es_method import EggrollMethod, sigma_controller
from .gradient_method import loss_cutoff, policy_options
from .losses import LOSSES
from .methods import MethodSpec, register_method
from .objectives import Objective
from .optimizers import make_optimizer

LOSS_OPTIONS = {"lambdaloss": loss_cutoff, "pl_pg": policy_options}  # the options the gradient methods give these losses


@dataclass
class GuidedSection:
    """Guided ES (config section `guided`): `alpha` in (0, 1] the share of the noise energy that is
    isotropic EGGROLL noise, `k` surrogate gradients spanning the subspace, `loss` the surrogate (a name of
    `train.losses`), `beta` the paper's scale of the estimate, `grad_rank` ρ of each stored gradient."""

    alpha: float = 0.5
    k: int = 1
    loss: str = "listnet"
    beta: float = 1.0
    grad_rank: int = 8

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if not 0 < self.alpha <= 1:
            fail("alpha", f"must be in (0, 1], got {self.alpha}")
        for name in ("k", "grad_rank"):
            if getattr(self, name) < 1:
                fail(name, f"must be >= 1, got {getattr(self, name)}")
        if not self.beta > 0:
            fail("beta", f"must be > 0, got {self.beta}")
        if self.loss not in LOSSES:
            fail("loss", f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")


register_section("guided", GuidedSection)


def surrogate_gradient(head: nn.Module, batch: PoolBatch, config: TrainConfig, objective: Objective, loss: str,
                       step: int) -> tuple[dict[str, torch.Tensor], float]:
    """``(∇L {name: Tensor}, L)`` of loss ``loss`` at the current head on ``batch``, as the gradient method
    `loss` would compute it at this step (same temperature, options and random stream); no update."""
    params = dict(head.named_parameters())
    with torch.enable_grad():
        scores = score_pool(head, batch.query_emb, batch.doc_emb, normalize=config.normalize)
        options: dict[str, Any] = {"temperature": config.loss.temperature}
        if loss in LOSS_OPTIONS:
            options.update(LOSS_OPTIONS[loss](config, objective, batch))
        value = LOSSES[loss](scores, batch.grades, batch.mask, batch.ideal_grades,
                             generator=step_generator(config.seed, step, stream=1), **options)
        grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads)}, float(value.detach())


def cosine(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> float:
    """Cosine of two parameter dicts seen as one vector each (float64); 0 when either is zero."""
    dot = sum(float((x[n].double() * y[n].double()).sum()) for n in x)
    nx = math.sqrt(sum(float(x[n].double().pow(2).sum()) for n in x))
    ny = math.sqrt(sum(float(y[n].double().pow(2).sum()) for n in x))
    return dot / (nx * ny) if nx > 0 and ny > 0 else 0.0


class GuidedESMethod(EggrollMethod):
    """EggrollMethod with a `GuidedES` engine and the surrogate step (module docstring)."""

    population_sharding = False  # one process: the guide is not gathered across ranks

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective):
        self.head, self.world, self.config, self.objective = head, None, config, objective
        es, guided = config.es, config.guided
        params = dict(head.named_parameters())
        self.engine = GuidedES(
            params, alpha=guided.alpha, k=guided.k, beta=guided.beta, grad_rank=guided.grad_rank,
            population_size=es.population_size, rank=es.rank, sigma=sigma_controller(es, config.num_steps),
            seed=config.seed, optimizer=make_optimizer(config, params.values()), noise_reuse=es.noise_reuse,
            shaping=es.shaping, grad_clip=config.grad_clip, pair_chunk=es.pair_chunk,
        )

    @torch.no_grad()
    def population_scores(self, chunk, batch: PoolBatch) -> torch.Tensor:
        """EggrollMethod's closed form, with each matrix's factors replaced by the guided ones."""
        def guided(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            return self.engine.member_factors(chunk.population, name, chunk.pairs, isotropic=chunk.factors(name))

        return super().population_scores(_WithFactors(chunk, guided), batch)

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        grads, loss = surrogate_gradient(self.head, batch, self.config, self.objective, self.config.guided.loss, step)
        self.engine.set_guide(grads)
        record = super().step(batch, step)
        es_estimate = {n: -p.grad for n, p in self.head.named_parameters() if p.grad is not None}
        record["guided/cos_surrogate"] = cosine(es_estimate, {n: -g for n, g in grads.items() if n in es_estimate})
        record["guided/surrogate_loss"] = loss
        record["guided/subspace_dim"] = float(self.engine.subspace.k if self.engine.subspace is not None else 0)
        return record


class _WithFactors:
    """A population chunk whose `factors(name)` are replaced (everything else delegates to the chunk)."""

    def __init__(self, chunk, factors: Callable[[str], tuple[torch.Tensor, torch.Tensor]]):
        self._chunk, self.factors = chunk, factors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chunk, name)


def _closed_form_only(config: TrainConfig) -> str | None:
    if config.head == "mlp":
        return "guided ES scores members with the closed form; the mlp head has none (use linear, subspace or adapter)"
    return None


register_method(MethodSpec(
    "guided_es", GuidedESMethod, sections=("es", "guided", "loss", "pl_pg"),
    summary="EGGROLL with noise partly in the span of recent surrogate gradients (Maheswaranathan et al. 2019)",
    refuses=_closed_form_only,
))
