"""Gradient baselines on quantized outputs: a surrogate makes the codes differentiable.

The served scores (``quantize: binary | binary_asym | int8``, see ``quant.outputs``) are piecewise constant
in the weights, so their gradient is zero almost everywhere. Two surrogates, each trained with a gradient
loss of ``train.losses`` (section ``surrogate``: ``loss``, default infonce, the best gradient loss on SciFact):

* ``ste`` (straight-through estimator): the forward pass uses the exact codes c(x) (±1 bits, or int8 codes
  rescaled to [-1, 1)), the backward pass the identity: x + (c(x) - x).detach(), x the normalized output.
* ``tanh_relax``: b = tanh(β_t·sqrt(m)·x) for binary codes (as BPR does), with β annealed geometrically
  from ``beta_start`` to ``beta_end`` over the run (β_t = β_0 (β_1/β_0)^(t/T)); int8 is refused.

Scores are code dot products divided by m (binary: b_q·b_d/m in [-1, 1], like a cosine, so the loss
temperature keeps its meaning); ``binary_asym`` keeps the float query. Validation and test are always the
exact quantized index (the trainer's evaluation), so only the training signal is relaxed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..quant.outputs import make_codec
from .batches import PoolBatch, step_generator
from .config import TrainConfig, register_section
from .losses import LOSSES
from .methods import MethodSpec, register_method
from .objectives import Objective
from .optimizers import make_optimizer


@dataclass
class SurrogateSection:
    """Config section `surrogate`: the gradient `loss`, and the tanh slope schedule `beta_start` -> `beta_end`."""

    loss: str = "infonce"
    beta_start: float = 1.0
    beta_end: float = 30.0

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if self.loss not in LOSSES or self.loss == "pl_pg":
            fail("loss", f"expected one of {', '.join(k for k in LOSSES if k != 'pl_pg')}, got {self.loss!r}")
        if not 0 < self.beta_start <= self.beta_end:
            fail("beta_start", f"need 0 < beta_start <= beta_end, got {self.beta_start}, {self.beta_end}")


register_section("surrogate", SurrogateSection)


def straight_through(x: Tensor, codes: Tensor) -> Tensor:
    """Forward: ``codes``; backward: the identity in x."""
    return x + (codes - x).detach()


class SurrogateMethod:
    """One optimizer step per batch on `surrogate.loss` of relaxed code scores (module docstring)."""

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective, *, relax: str):
        self.head, self.config, self.objective, self.relax = head, config, objective, relax
        self.section: SurrogateSection = config.surrogate
        self.loss_fn = LOSSES[self.section.loss]
        self.optimizer = make_optimizer(config, head.parameters())

    def beta(self, step: int) -> float:
        s = self.section
        return s.beta_start * (s.beta_end / s.beta_start) ** (step / max(1, self.config.num_steps - 1))

    def codes(self, x: Tensor, step: int, calibration: Tensor) -> Tensor:
        """Relaxed codes of normalized outputs x [..., m] (rescaled to about [-1, 1])."""
        kind = self.config.quantize
        if self.relax == "tanh":
            return torch.tanh(self.beta(step) * x.shape[-1] ** 0.5 * x)
        if kind == "int8":
            codec = make_codec("int8", calibration.detach(), normalize=False)
            return straight_through(x, (codec.doc_codes(x.detach()) + 0.5) / 128)
        return straight_through(x, torch.where(x > 0, 1.0, -1.0).to(x.dtype))

    def scores(self, batch: PoolBatch, step: int) -> Tensor:
        """[B, P] differentiable surrogate of the served scores."""
        q = F.normalize(self.head(batch.query_emb), dim=-1)
        d = F.normalize(self.head(batch.doc_emb), dim=-1)
        m = d.shape[-1]
        d_codes = self.codes(d, step, d[batch.mask])
        q_codes = q if self.config.quantize == "binary_asym" else self.codes(q, step, d[batch.mask])
        scale = m ** -0.5 if self.config.quantize == "binary_asym" else 1.0 / m
        return torch.einsum("bpm,bm->bp", d_codes, q_codes) * scale

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        options: dict[str, Any] = {"temperature": self.config.loss.temperature}
        if self.section.loss == "lambdaloss":
            options["k"] = self.objective.k
        loss = self.loss_fn(self.scores(batch, step), batch.grades, batch.mask, batch.ideal_grades,
                            generator=step_generator(self.config.seed, step, stream=1), **options)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: the {self.section.loss} surrogate loss is {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.head.parameters(), self.config.grad_clip if self.config.grad_clip else float("inf"))
        self.optimizer.step()
        record = {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "time/step": time.perf_counter() - started}
        if self.relax == "tanh":
            record["beta"] = self.beta(step)
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


def _needs_quantize(config: TrainConfig) -> str | None:
    return None if config.quantize != "none" else "needs quantized outputs: set quantize to binary, binary_asym or int8"


def _tanh_refuses(config: TrainConfig) -> str | None:
    if config.quantize == "int8":
        return "the tanh relaxation is for binary codes; use ste for int8"
    return _needs_quantize(config)


register_method(MethodSpec(
    "ste", lambda h, c, o: SurrogateMethod(h, c, o, relax="ste"), sections=("loss", "surrogate"),
    summary="straight-through estimator through the quantized codes (gradient loss surrogate.loss)",
    refuses=_needs_quantize))
register_method(MethodSpec(
    "tanh_relax", lambda h, c, o: SurrogateMethod(h, c, o, relax="tanh"), sections=("loss", "surrogate"),
    summary="tanh relaxation of binary codes with an annealed slope (gradient loss surrogate.loss)",
    refuses=_tanh_refuses))
