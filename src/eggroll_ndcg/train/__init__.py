"""Training: one config and one loop for every registered method (EGGROLL and the gradient baselines).

Importing the package registers the built-in methods and their config sections (`es_method`,
`gradient_method`); see `methods.py` for adding one.
"""

from . import es_method, gradient_method  # noqa: F401  (registration)
from .config import ConfigError, TrainConfig
from .methods import METHODS, MethodSpec, register_method
from .objectives import OBJECTIVES, Objective, parse_objective
from .trainer import EGGROLLTrainer, Trainer

__all__ = ["METHODS", "OBJECTIVES", "ConfigError", "EGGROLLTrainer", "MethodSpec", "Objective", "TrainConfig",
           "Trainer", "parse_objective", "register_method"]
