"""`TrainConfig`: every setting of a training run, validated before any work is done.

One config drives every method, so EGGROLL and the gradient baselines share the head, the pool, the
normalization and the splits by construction; only the method-specific fields differ.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..es.shaping import get_shaping
from ..models.heads import HEADS

ES_METHODS = ("eggroll",)
GRADIENT_METHODS = ("infonce", "listnet", "lambdaloss", "approx_ndcg", "pl_pg")
METHODS = ES_METHODS + GRADIENT_METHODS
FITNESS_METRICS = ("ndcg", "mrr", "recall")
OPTIMIZERS = ("sgd", "adam", "adamw", "clipup")
VAL_QUERIES = ("all", "unseen-documents")
SIGMA_SCHEDULES = ("constant", "linear", "cosine", "exponential", "adaptive")


class ConfigError(ValueError):
    """A configuration that cannot run; raised before any data is loaded or encoded."""


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; `ConfigError` naming the file for invalid YAML or a non-mapping."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value at the top level")
    return values


@dataclass
class TrainConfig:
    """Settings of one training run. Field names follow the reference system where it had them.

    Data: `task` is a short name (see `eggroll-ndcg data list`) or a BEIR folder; `data_dir` overrides
    $EGGROLL_NDCG_DATA. Splits are query-level and seeded by `split_seed`; `n_folds`/`fold` select a k-fold
    split for collections with one labelled split.
    Pool: the top `pool_size` documents of the frozen encoder per training query, plus optional BM25 and random
    negatives; `insert_positives` adds judged positives the encoder missed (a training aid).
    Head: "linear" (W, identity start), "mlp" (residual, zero-initialized output layer), "subspace"
    (W = I + P M Pᵀ with P the top `subspace_dim` principal directions of the corpus embeddings and M
    learned; k² parameters instead of n²) or "adapter" (W = I + U Pᵀ, the same P frozen as the
    down-projection and U [n, k] learned; n·k parameters). All four start exactly at the zero-shot encoder.
    Regularization: `anchor_decay` pulls every head parameter toward its initial value after each step,
    p <- p - anchor_decay * (p - p_0) (for the identity head: a decay toward the zero-shot encoder), the
    same for every method.
    Fitness (EGGROLL) and validation: `fitness_metric`@`fitness_k` per training query; model selection uses
    `val_metric` on validation queries only: all of them (`val_queries: all`), or only those none of whose
    relevant documents was a training positive (`val_queries: unseen-documents`), the validation twin of the
    unseen-document test group, for selecting what generalizes to new documents rather than a document prior.
    """

    task: str = "stdlib-code"
    data_dir: str | None = None
    encoder: str = "minilm"
    method: str = "eggroll"
    seed: int = 0
    device: str = "cpu"
    output_dir: str | None = None

    split_seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.3
    n_folds: int | None = None
    fold: int | None = None

    head: str = "linear"
    head_output_size: int | None = None
    head_hidden_size: int = 512
    subspace_dim: int = 32
    normalize: bool = True

    pool_size: int = 128
    bm25_negatives: int = 0
    random_negatives: int = 0
    insert_positives: bool = True

    fitness_metric: str = "ndcg"
    fitness_k: int = 10
    batch_queries: int = 32
    num_steps: int = 300
    eval_every: int = 25
    patience: int | None = None
    val_metric: str = "ndcg@10"
    max_val_queries: int | None = None
    val_queries: str = "all"

    learning_rate: float = 0.05
    optimizer: str = "adam"
    weight_decay: float = 0.0
    anchor_decay: float = 0.0
    momentum: float = 0.0
    grad_clip: float | None = 1.0

    population_size: int = 256
    rank: int = 1
    sigma: float = 0.02
    sigma_schedule: str = "constant"
    sigma_final: float | None = None
    shaping: str = "centered_rank"
    noise_reuse: int = 1
    pair_chunk: int | None = None

    temperature: float = 0.05
    pl_samples: int = 16

    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Raise `ConfigError` naming the field for any setting that cannot run. Returns self."""
        def fail(name: str, why: str) -> None:
            raise ConfigError(f"config field '{name}': {why}")

        if self.method not in METHODS:
            fail("method", f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.head not in HEADS:
            fail("head", f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.fitness_metric not in FITNESS_METRICS:
            fail("fitness_metric", f"unknown metric {self.fitness_metric!r}; choose one of {', '.join(FITNESS_METRICS)}")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        try:
            get_shaping(self.shaping)
        except ValueError as error:
            fail("shaping", str(error))
        if self.sigma_schedule not in SIGMA_SCHEDULES:
            fail("sigma_schedule", f"unknown schedule {self.sigma_schedule!r}; choose one of {', '.join(SIGMA_SCHEDULES)}")
        if self.population_size < 2 or self.population_size % 2:
            fail("population_size", f"must be an even number >= 2 (antithetic pairs), got {self.population_size}")
        for name in ("fitness_k", "pool_size", "batch_queries", "num_steps", "eval_every", "rank", "noise_reuse", "pl_samples"):
            if int(getattr(self, name)) < 1:
                fail(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.anchor_decay < 1.0:
            fail("anchor_decay", f"must be in [0, 1), got {self.anchor_decay}")
        for name in ("bm25_negatives", "random_negatives"):
            if int(getattr(self, name)) < 0:
                fail(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "sigma", "temperature"):
            if not float(getattr(self, name)) > 0:
                fail(name, f"must be > 0, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            fail("val_fraction", "val_fraction must be in (0, 1) and test_fraction in [0, 1)")
        if (self.n_folds is None) != (self.fold is None):
            fail("fold", "n_folds and fold go together")
        if self.n_folds is not None and not 0 <= self.fold < self.n_folds:
            fail("fold", f"must be in [0, n_folds={self.n_folds}), got {self.fold}")
        if self.head_output_size is not None and self.head_output_size < 1:
            fail("head_output_size", f"must be >= 1, got {self.head_output_size}")
        if self.head in ("mlp", "subspace", "adapter") and self.head_output_size is not None:
            fail("head_output_size", f"the {self.head} head keeps the encoder's dimension; leave it unset")
        if self.subspace_dim < 1:
            fail("subspace_dim", f"must be >= 1, got {self.subspace_dim}")
        metric, _, k = self.val_metric.partition("@")
        if metric not in ("ndcg", "mrr", "recall", "map") or not k.isdigit() or int(k) < 1:
            fail("val_metric", f"expected e.g. 'ndcg@10', got {self.val_metric!r}")
        if self.val_queries not in VAL_QUERIES:
            fail("val_queries", f"expected one of {', '.join(VAL_QUERIES)}, got {self.val_queries!r}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            fail("device", f"expected 'cpu' or 'cuda[:N]', got {self.device!r}")
        return self

    @property
    def is_es(self) -> bool:
        return self.method in ES_METHODS

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """Fields from a YAML mapping, or from the `base` section of a `compare` config."""
        values = read_yaml_mapping(path)
        if "base" in values:  # a `compare` config: its shared base settings
            return cls.from_dict(values["base"] or {}, source=f"{path}: base")
        return cls.from_dict(values, source=str(path))
