"""EGGROLL: low-rank antithetic evolution strategies for the Linear layers of any torch module.

See ``es/README.md`` for the conventions (noise layout, closed form, ES gradient) and the trainer API.
"""

from .engine import EggrollES, StateMismatchError
from .estimate import BLOCK_PAIRS, clip_global_norm, es_gradient, global_norm
from .noise import full_noise, hash32, lowrank_factors, param_id, standard_normal
from .optim import ClipUp
from .perturb import bilinear_population_scores, bilinear_scores, lowrank_delta, materialize, perturbed_linear
from .population import ParamSpec, Population, PopulationChunk, population_forward
from .shaping import (
    antithetic_differences,
    centered_rank,
    get_shaping,
    handle_nan,
    query_zscore,
    raw,
    shape_fitness,
    zscore,
)
from .sigma import (
    AdaptiveSigma,
    ConstantSigma,
    CosineSigma,
    ExponentialSigma,
    LinearSigma,
    SigmaSchedule,
    as_controller,
    pair_statistics,
)
from .state import load_checkpoint, save_checkpoint

__all__ = [
    "AdaptiveSigma",
    "BLOCK_PAIRS",
    "ClipUp",
    "ConstantSigma",
    "CosineSigma",
    "EggrollES",
    "ExponentialSigma",
    "LinearSigma",
    "ParamSpec",
    "Population",
    "PopulationChunk",
    "SigmaSchedule",
    "StateMismatchError",
    "antithetic_differences",
    "as_controller",
    "bilinear_population_scores",
    "bilinear_scores",
    "centered_rank",
    "clip_global_norm",
    "es_gradient",
    "full_noise",
    "get_shaping",
    "global_norm",
    "handle_nan",
    "hash32",
    "load_checkpoint",
    "lowrank_delta",
    "lowrank_factors",
    "materialize",
    "pair_statistics",
    "param_id",
    "perturbed_linear",
    "population_forward",
    "query_zscore",
    "raw",
    "save_checkpoint",
    "shape_fitness",
    "standard_normal",
    "zscore",
]
