"""Training: one config and one loop for every registered method (EGGROLL and the gradient baselines).

Importing the package registers the built-in methods and their config sections (`es_method`,
`gradient_method`); see `methods.py` for adding one.
"""

from . import es_method, gradient_method, set_objectives  # noqa: F401  (registration)
from . import qat_method, quantized_weights_method  # noqa: F401  (registration: int8/FP4 weights)
from . import surrogate_method  # noqa: F401  (registration: ste, tanh_relax on quantized outputs)
from . import es_targets_method, guided_es_method, two_phase_method  # noqa: F401  (registration: hybrids)
from .config import ConfigError, TrainConfig
from . import genetic_method  # noqa: F401,E402  (registration: genetic, genetic_es)
from .methods import METHODS, MethodSpec, register_method
from .objectives import OBJECTIVES, Objective, parse_objective
from .trainer import EGGROLLTrainer, Trainer

__all__ = ["METHODS", "OBJECTIVES", "ConfigError", "EGGROLLTrainer", "MethodSpec", "Objective", "TrainConfig",
           "Trainer", "parse_objective", "register_method"]
