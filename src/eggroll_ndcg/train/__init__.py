"""Training: one config and one loop for EGGROLL and the gradient baselines."""

from .config import ConfigError, TrainConfig
from .trainer import EGGROLLTrainer, Trainer

__all__ = ["ConfigError", "EGGROLLTrainer", "TrainConfig", "Trainer"]
