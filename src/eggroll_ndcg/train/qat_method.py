"""Quantization-aware training (QAT) of a quantized-weight head: a float latent copy, a straight-through
estimator on the weights, and the best gradient loss.

The head is a `quant.weights.QuantizedLinearHead`; the method keeps a float32 latent W_f (initialized to
the head's dequantized W, the identity) and scores with its quantization,

    W_q = dequantize(quantize(W_f))            (scales re-derived from W_f each step, the head's min_amax)
    forward: f(h) = W_q h;  backward: dL/dW_f = dL/dW_q   (STE: W_f + stopgrad(W_q - W_f))

trained by a loss of `train.losses` (section `qat`, field `loss`; default ``lambdaloss``, the best gradient
loss on SciFact in docs/results.md) through `train.gradient_method.GradientMethod`, with the config's
optimizer. After every step the head's codes and scales are set to quantize(W_f), so validation, test and
the saved head are exactly the deployed quantized weights. Training state: W_f and the optimizer's
per-weight state (float32), plus the codes; ``memory/state_bytes`` reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..quant.codecs import dequantize, quantize
from ..quant.weights import QuantizedLinearHead
from .batches import PoolBatch
from .config import TrainConfig, register_section
from .gradient_method import GradientMethod, loss_cutoff, ndcg_only, policy_options
from .losses import LOSSES
from .methods import MethodSpec, register_method
from .objectives import Objective
from .quantized_weights_method import needs_quantized_head

_OPTIONS = {"lambdaloss": loss_cutoff, "pl_pg": policy_options}
_NDCG_LOSSES = ("lambdaloss", "approx_ndcg")


@dataclass
class QATSection:
    """QAT settings (config section `qat`): the gradient `loss` (a name in `train.losses.LOSSES`)."""

    loss: str = "lambdaloss"

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if self.loss not in LOSSES:
            fail("loss", f"unknown loss {self.loss!r}; choose one of {', '.join(sorted(LOSSES))}")


register_section("qat", QATSection)


class STELinear(nn.Module):
    """f(h) = W_q h with W_q the quantization of the latent ``latent`` [m, n] and a straight-through gradient."""

    def __init__(self, weight: Tensor, fmt: str, min_amax: float):
        super().__init__()
        self.latent = nn.Parameter(weight.detach().clone().to(torch.float32))
        self.fmt, self.min_amax = fmt, min_amax

    def quantized(self) -> Tensor:
        """W_q [m, n], no gradient."""
        with torch.no_grad():
            return dequantize(quantize(self.latent, self.fmt, min_amax=self.min_amax), self.fmt)

    def forward(self, h: Tensor) -> Tensor:
        weight = self.latent + (self.quantized() - self.latent).detach()
        return h @ weight.to(h.dtype).T


class QATMethod:
    """One gradient step on the latent weights per batch, then the head is set to their quantization."""

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective):
        if not isinstance(head, QuantizedLinearHead):
            raise TypeError(f"qat needs a QuantizedLinearHead, got {type(head).__name__}")
        self.head = head
        self.ste = STELinear(head.weight, head.fmt, head.min_amax)
        name = config.qat.loss
        self.inner = GradientMethod(self.ste, config, objective, name=name, options=_OPTIONS.get(name))

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        record = self.inner.step(batch, step)
        self.head.requantize(self.ste.latent)
        record["memory/state_bytes"] = float(self.state_bytes())
        return record

    def state_bytes(self) -> int:
        """Latent W_f, the optimizer's tensors, and the head's codes and scales."""
        tensors = [self.ste.latent] + [t for s in self.inner.optimizer.state.values() for t in s.values()
                                       if torch.is_tensor(t) and t.numel() > 1]
        return sum(t.numel() * t.element_size() for t in tensors) + self.head.state_bytes()

    def state_dict(self) -> dict[str, Any]:
        return {"latent": self.ste.latent.detach().clone(), **self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.ste.latent.copy_(state["latent"])
        self.inner.load_state_dict(state)


def _refuses(config: TrainConfig) -> str | None:
    problem = needs_quantized_head(config)
    if problem is None and config.qat.loss in _NDCG_LOSSES:
        problem = ndcg_only(config)
    return problem


register_method(MethodSpec(
    "qat", QATMethod, sections=("loss", "qat"), refuses=_refuses, trains_codes=True,
    summary="quantization-aware training: float latent weights, STE on int8/FP4 weights, a gradient loss",
))
