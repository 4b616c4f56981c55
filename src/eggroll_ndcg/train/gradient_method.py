"""The gradient baselines: the same head, pools and batches as EGGROLL, trained by backpropagation.

Each loss of `train.losses` is registered as a method. Config sections: `loss` (`temperature`, the score
scale of every loss) and, for the Plackett-Luce policy gradient, `pl_pg` (`samples` per query). The run's
objective is honoured where a loss can target it: LambdaLoss weights its pairs by NDCG@k at the objective's
cutoff, PL-PG rewards the objective itself, InfoNCE and ListNet are metric-agnostic contrastive surrogates
(the objective only drives selection), and the NDCG-based losses refuse any other metric.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..models.heads import score_pool
from .batches import PoolBatch, step_generator
from .config import TrainConfig, register_section
from .losses import LOSSES
from .methods import MethodSpec, register_method
from .objectives import Objective
from .optimizers import make_optimizer


@dataclass
class LossSection:
    """Settings of every gradient loss (config section `loss`): `temperature` scales the scores."""

    temperature: float = 0.05

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if not self.temperature > 0:
            fail("temperature", f"must be > 0, got {self.temperature}")


@dataclass
class PolicyGradientSection:
    """Settings of the Plackett-Luce policy gradient (config section `pl_pg`): `samples` rankings drawn per
    query (the group of the leave-one-out baseline)."""

    samples: int = 16

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if self.samples < 2:
            fail("samples", f"must be >= 2 (a group baseline), got {self.samples}")


register_section("loss", LossSection)
register_section("pl_pg", PolicyGradientSection)

LossOptions = Callable[[TrainConfig, Objective, PoolBatch], dict[str, Any]]


class GradientMethod:
    """One optimizer step per batch on the differentiable loss `LOSSES[name]`, called with the options
    `options(config, objective, batch)` adds to the loss section's temperature."""

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective, *, name: str,
                 options: LossOptions | None = None):
        self.head = head
        self.config = config
        self.objective = objective
        self.name = name
        self.loss_fn = LOSSES[name]
        self.options = options
        self.optimizer = make_optimizer(config, head.parameters())

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        """Loss, backward, optional global-norm clipping, optimizer step. Returns log fields."""
        started = time.perf_counter()
        scores = score_pool(self.head, batch.query_emb, batch.doc_emb, normalize=self.config.normalize)
        options: dict[str, Any] = {"temperature": self.config.loss.temperature}
        if self.options is not None:
            options.update(self.options(self.config, self.objective, batch))
        loss = self.loss_fn(
            scores, batch.grades, batch.mask, batch.ideal_grades,
            generator=step_generator(self.config.seed, step, stream=1), **options,
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: the {self.name} loss is {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        before = [p.detach().clone() for p in self.head.parameters()]
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.head.parameters(), self.config.grad_clip if self.config.grad_clip else float("inf")
        )
        self.optimizer.step()
        update = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(self.head.parameters(), before)))
        return {
            "loss": float(loss.detach()),
            "grad_norm": float(grad_norm),
            "update_norm": float(update),
            "time/step": time.perf_counter() - started,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


def loss_cutoff(config: TrainConfig, objective: Objective, batch: PoolBatch) -> dict[str, Any]:
    """LambdaLoss@k: only pairs with a candidate in the objective's top k."""
    return {"k": objective.k}


def policy_options(config: TrainConfig, objective: Objective, batch: PoolBatch) -> dict[str, Any]:
    """PL-PG: prefixes of the objective's length, rewarded by the objective ([Q, S, P] -> [Q, S]: the batch's
    grades, mask and ideal grades get a sample axis, [Q, 1, ...], so every sample is scored against its query)."""
    per_sample = dataclasses.replace(batch, grades=batch.grades[:, None, :], mask=batch.mask[:, None, :],
                                     ideal_grades=batch.ideal_grades[:, None, :])  # broadcast over the samples
    reward = lambda order_scores: objective(order_scores, per_sample)  # noqa: E731
    return {"k": objective.k, "n_samples": config.pl_pg.samples, "reward": reward}


def ndcg_only(config: TrainConfig) -> str | None:
    measure, _, k = config.objective.partition("@")
    if measure == "ndcg" and k.isdigit():  # not a weighted sum such as ndcg@10+0.5*diversity@10
        return None
    return (f"this loss is a smooth NDCG and cannot target objective {config.objective!r}; use an "
            "ndcg@K objective, or eggroll or pl_pg, which optimize any objective")


def _gradient(name: str, summary: str, *, options: LossOptions | None = None, sections: tuple[str, ...] = ("loss",),
              refuses: Callable[[TrainConfig], str | None] | None = None) -> MethodSpec:
    build = lambda head, config, objective: GradientMethod(head, config, objective, name=name, options=options)  # noqa: E731
    return MethodSpec(name, build, sections=sections, summary=summary, refuses=refuses)


register_method(_gradient("infonce", "contrastive InfoNCE, metric-agnostic"))
register_method(_gradient("listnet", "ListNet top-one cross-entropy, metric-agnostic"))
register_method(_gradient("lambdaloss", "LambdaLoss NDCG-Loss2++ at the objective's cutoff", options=loss_cutoff,
                          refuses=ndcg_only))
register_method(_gradient("approx_ndcg", "ApproxNDCG, full-list smooth NDCG", refuses=ndcg_only))
register_method(_gradient("pl_pg", "Plackett-Luce policy gradient rewarded by the objective", options=policy_options,
                          sections=("loss", "pl_pg")))
