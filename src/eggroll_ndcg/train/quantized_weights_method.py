"""EGGROLL on the stored low-precision weights themselves: no float master copy.

The head is a `quant.weights.QuantizedLinearHead` (``head: linear-int8 | linear-mxfp4 | linear-nvfp4``):
W = LEVELS[i] · c with level indices i [m, n] (the stored codes) and per-element scales c fixed by the
head's rows / blocks. Each step:

1. Population: members W ± sigma·E_j on the dequantized W (E_j = A_j B_jᵀ/sqrt(r), the engine's
   counter-based factors, ``es.population``), scored with the exact closed form
   (``es.perturb.bilinear_population_scores``); fitness = the run's objective per member and query.
2. ES estimate (``es.shaping`` + ``es.estimate.es_gradient``, the engine's estimator): g [m, n], clipped
   to the global norm ``grad_clip``.
3. A rule moves the codes on the grid (section ``weight_es``, field ``rule``):

   * ``stochastic_rounding``: the SGD step in level units, u = LEVELS[i] + lr·g/c, is rounded to one of
     its two neighbouring levels lo <= u <= hi, to hi with probability (u - lo)/(hi - lo) (unbiased:
     E[W'] = W + lr·g inside the grid; saturating at its ends). The uniforms are counter-based
     (``es.noise.hash32`` of (seed, step, element)), so a resumed run draws the same ones.
   * ``momentum_rounding``: as ``stochastic_rounding`` on a heavy-ball momentum v <- beta·v + g (beta =
     the config's ``momentum``, default 0.9) kept in bfloat16: 2 bytes per weight of optimizer state, the
     one rule here with state (the float ES run averages its noisy estimates with ClipUp's momentum).
   * ``z_step`` (nano-egg's integer step, as read here): z = g / rms(g) over the tensor's entries; every
     weight with |z| > ``z_threshold`` moves one level in the direction of sign(g), the others stay. The
     learning rate is not used: a step is always one grid level.

The training state is the head's codes and scales plus the rule's state: none for ``stochastic_rounding``
and ``z_step`` beyond the step counter and the sigma controller, the bfloat16 v for ``momentum_rounding``.
``memory/state_bytes`` is in each step record, next to ``memory/float32_state_bytes``, what a float32 run of the same head with the config's optimizer keeps
(W plus 1 or 2 float32 copies). Per step the rule also forms transient [m, n] working tensors (the
dequantized W, g, the uniforms) that are freed after the step; they are not state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..es.estimate import clip_global_norm, es_gradient
from ..es.noise import base_key, hash32, param_id
from ..es.perturb import bilinear_population_scores
from ..es.population import ParamSpec, Population
from ..es.shaping import handle_nan, shape_fitness
from ..es.sigma import as_controller
from ..quant.codecs import LEVELS
from ..quant.weights import QuantizedLinearHead, float32_state_bytes
from .batches import PoolBatch
from .config import TrainConfig, register_section
from .es_method import sigma_controller
from .methods import MethodSpec, register_method
from .objectives import Objective

log = logging.getLogger(__name__)

RULES = ("stochastic_rounding", "z_step", "momentum_rounding")
QUANTIZED_HEADS = ("linear-int8", "linear-mxfp4", "linear-nvfp4")
WEIGHT = "weight"  # the engine name of W: its counter id and the noise of `QuantizedLinearHead.weight_noise`


@dataclass
class WeightESSection:
    """Native quantized-weight ES (config section `weight_es`): the update `rule` and the `z_threshold` of
    the integer step. Population, rank, sigma and shaping come from the `es` section."""

    rule: str = "stochastic_rounding"
    z_threshold: float = 3.0

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if self.rule not in RULES:
            fail("rule", f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if not self.z_threshold > 0:
            fail("z_threshold", f"must be > 0, got {self.z_threshold}")


register_section("weight_es", WeightESSection)


def stochastic_round_levels(index: Tensor, delta: Tensor, levels: Tensor, uniform: Tensor) -> Tensor:
    """New level indices after the step ``delta`` (in level units, [m, n]) from ``index`` (int64 [m, n]):
    u = levels[index] + delta rounded to its neighbour above with probability (u - lo)/(hi - lo), where
    ``uniform`` [m, n] (float64, in (0, 1)) decides; saturates at the grid's ends."""
    top = levels.numel() - 1
    u = levels[index] + delta
    lo = (torch.searchsorted(levels, u.contiguous(), right=True) - 1).clamp(0, top - 1)
    low, high = levels[lo], levels[lo + 1]
    p = ((u - low) / (high - low)).clamp(0.0, 1.0)
    return lo + (uniform < p.double()).to(lo.dtype)


def z_step_levels(index: Tensor, grad: Tensor, threshold: float, levels: Tensor) -> Tensor:
    """New level indices: ``index ± 1`` (toward sign(g)) where |g / rms(g)| > ``threshold``, clamped."""
    rms = grad.double().pow(2).mean().sqrt()
    if rms == 0:
        return index.clone()
    move = torch.where((grad.double() / rms).abs() > threshold, torch.sign(grad), torch.zeros_like(grad))
    return (index + move.to(index.dtype)).clamp(0, levels.numel() - 1)


def rounding_uniforms(seed: int, step: int, shape: tuple[int, int], device: torch.device) -> Tensor:
    """Counter-based uniforms in (0, 1), float64 [m, n], of (seed, step) (``es.noise``'s hash)."""
    key = base_key(seed, step, param_id("weight_es.stochastic_rounding"))
    counters = torch.arange(shape[0] * shape[1], dtype=torch.int64, device=device)
    bits = hash32(key ^ hash32(counters))
    return ((bits.to(torch.float64) + 0.5) / 2**32).reshape(shape)


class QuantizedWeightsES:
    """One ES step on the stored codes per batch; see the module docstring."""

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective):
        if not isinstance(head, QuantizedLinearHead):
            raise TypeError(f"quantized_es needs a QuantizedLinearHead, got {type(head).__name__}")
        self.head, self.config, self.objective = head, config, objective
        self.sigma = as_controller(sigma_controller(config.es, config.num_steps))
        self.spec = ParamSpec(WEIGHT, head.shape, "lowrank", param_id(WEIGHT))
        self._step = 0
        self.velocity = None  # momentum_rounding: v [m, n] in bfloat16
        if config.weight_es.rule == "momentum_rounding":
            self.velocity = torch.zeros(head.shape, dtype=torch.bfloat16, device=head.codes.device)
        rule_bytes = 0 if self.velocity is None else self.velocity.numel() * self.velocity.element_size()
        self.memory = {"memory/state_bytes": float(head.state_bytes() + rule_bytes),
                       "memory/float32_state_bytes": float(float32_state_bytes(head.shape, config.optimizer))}
        log.info("quantized_es %s (%s): training state %d bytes; a float32 run with %s keeps %d bytes",
                 head.fmt, config.weight_es.rule, self.memory["memory/state_bytes"], config.optimizer,
                 self.memory["memory/float32_state_bytes"])

    def population(self, weight: Tensor) -> Population:
        """The population of the current step around the dequantized ``weight``."""
        es = self.config.es
        return Population(step=self._step, epoch=self._step // es.noise_reuse, seed=self.config.seed,
                          sigma=self.sigma.sigma(self._step), num_members=es.population_size, rank=es.rank,
                          specs=(self.spec,), params={WEIGHT: weight})

    @torch.no_grad()
    def fitness(self, population: Population, batch: PoolBatch) -> Tensor:
        """[N, B] objective of every member on the batch (closed-form scores, chunks of ``es.pair_chunk``)."""
        weight = population.params[WEIGHT]
        fitness = torch.empty(population.num_members, batch.grades.shape[0], dtype=torch.float64,
                              device=batch.grades.device)
        for chunk in population.chunks(self.config.es.pair_chunk):
            A, B = chunk.factors(WEIGHT)
            scores = bilinear_population_scores(weight, batch.query_emb, batch.doc_emb, A, B, chunk.sigma,
                                                normalize=self.config.normalize)
            fitness[chunk.members] = self.objective(scores, batch).double()
        return fitness

    @torch.no_grad()
    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        """Score the population, estimate g, move the codes by the rule. Returns log fields."""
        started = time.perf_counter()
        head, section = self.head, self.config.weight_es
        weight = head.weight
        population = self.population(weight)
        fitness = handle_nan(self.fitness(population, batch), "raise")
        scored = time.perf_counter()
        shaped = shape_fitness(fitness, self.config.es.shaping)
        grads, grad_norm = clip_global_norm(es_gradient(population, shaped, pair_chunk=self.config.es.pair_chunk),
                                            self.config.grad_clip)
        grad = grads[WEIGHT]
        if not bool(torch.isfinite(grad).all()):
            raise ValueError(f"step {step}: non-finite ES gradient; nothing changed")
        levels = LEVELS[head.fmt].to(weight.device)
        index = head.levels()
        if section.rule in ("stochastic_rounding", "momentum_rounding"):
            if self.velocity is not None:
                beta = 0.9 if self.config.momentum is None else self.config.momentum
                self.velocity.copy_((beta * self.velocity.float() + grad).to(torch.bfloat16))
                grad = self.velocity.float()
            delta = self.config.learning_rate * grad / head.element_scale()
            uniform = rounding_uniforms(self.config.seed, self._step, head.shape, weight.device)
            new = stochastic_round_levels(index, delta, levels, uniform)
        else:
            new = z_step_levels(index, grad, section.z_threshold, levels)
        head.set_levels(new)
        per_member = fitness.mean(dim=1)
        record: dict[str, Any] = {
            "fitness/mean": float(per_member.mean()), "fitness/std": float(per_member.std(unbiased=False)),
            "grad_norm": grad_norm, "sigma": population.sigma,
            "moved_fraction": float((new != index).double().mean()),
            "update_norm": float((head.weight - weight).double().norm()),
            **self.memory,
        }
        record.update(self.sigma.observe(self._step, per_member))
        self._step += 1
        record["time/scoring"] = scored - started
        record["time/update"] = time.perf_counter() - scored
        return record

    def steps_done(self) -> int:
        return self._step

    def state_dict(self) -> dict[str, Any]:
        state = {"step": self._step, "sigma": self.sigma.state_dict(), "rule": self.config.weight_es.rule}
        if self.velocity is not None:
            state["velocity"] = self.velocity.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rule") != self.config.weight_es.rule:
            raise ValueError(f"the checkpoint was trained with rule {state.get('rule')!r}, "
                             f"this run has {self.config.weight_es.rule!r}")
        self.sigma.load_state_dict(state["sigma"])
        self._step = int(state["step"])
        if self.velocity is not None:
            self.velocity.copy_(state["velocity"])


def needs_quantized_head(config: TrainConfig) -> str | None:
    """Why a method on stored quantized weights cannot run this config's head, or None."""
    if config.head in QUANTIZED_HEADS:
        return None
    return f"needs a quantized-weight head (head: {' | '.join(QUANTIZED_HEADS)}), got head {config.head!r}"


register_method(MethodSpec(
    "quantized_es", QuantizedWeightsES, sections=("es", "weight_es"), refuses=needs_quantized_head,
    trains_codes=True,
    summary="EGGROLL on int8/FP4 stored weights, no float master copy (stochastic rounding or z-step)",
))
