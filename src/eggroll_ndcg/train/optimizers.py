"""The torch optimizer named by a config; ES and gradient methods build theirs the same way."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..es.optim import ClipUp
from .config import TrainConfig


def make_optimizer(config: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (with `momentum`), Adam, AdamW or ClipUp at `learning_rate` with `weight_decay`. `momentum` None
    is the optimizer's default (0 for SGD, 0.9 for ClipUp); an explicit 0 means no momentum for both."""
    params = list(params)
    lr, decay = config.learning_rate, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum or 0.0, weight_decay=decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    return ClipUp(params, lr=lr, momentum=0.9 if config.momentum is None else config.momentum, max_speed=2 * lr, weight_decay=decay)
