"""The gradient baselines: the same head, pools and batches as EGGROLL, trained by backpropagation."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..models.heads import score_pool
from .batches import PoolBatch, step_generator
from .config import TrainConfig
from .losses import LOSSES
from .optimizers import make_optimizer


class GradientMethod:
    """One optimizer step per batch on the differentiable loss `config.method` (see `train.losses`)."""

    def __init__(self, head: nn.Module, config: TrainConfig):
        self.head = head
        self.config = config
        self.loss_fn = LOSSES[config.method]
        self.optimizer = make_optimizer(config, head.parameters())

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        """Loss, backward, optional global-norm clipping, optimizer step. Returns log fields."""
        started = time.perf_counter()
        scores = score_pool(self.head, batch.query_emb, batch.doc_emb, normalize=self.config.normalize)
        options: dict[str, Any] = {"temperature": self.config.temperature}
        if self.config.method == "pl_pg":
            options.update(k=self.config.fitness_k, n_samples=self.config.pl_samples)
        loss = self.loss_fn(
            scores, batch.grades, batch.mask, batch.ideal_grades,
            generator=step_generator(self.config.seed, step, stream=1), **options,
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: the {self.config.method} loss is {loss.item()}")
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
