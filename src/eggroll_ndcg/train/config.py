"""`TrainConfig`: every setting of a training run, validated before any work is done.

A config has *shared* fields (task, encoder, head, pool, splits, budget, objective, optimizer), which every
method honours, so EGGROLL and the gradient baselines share the head, the pool, the normalization and the
splits by construction, and one *section* per method family (`es`, `loss`, `pl_pg`, ...), read and
validated only by the methods that declare it (see `train.methods`). A section is a small dataclass
registered with `register_section`; a new method family brings its own.

Three spellings of a section field are accepted everywhere (Python, YAML, `--set`, `compare` sweeps):
nested (`es: {population_size: 2048}`), dotted (`es.population_size=2048`), and the old flat name
(`population_size=2048`), which is moved into the one section that has that field (old flat configs and
run folders load unchanged). `fitness_metric`/`fitness_k` of old configs become `objective: METRIC@K`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..models.heads import HEADS
from ..registry import UnknownNameError
from .config_sections import SECTIONS, ConfigError, check_type, merge, register_section, route, typed
from .methods import METHODS
from .objectives import parse_objective

OPTIMIZERS = ("sgd", "adam", "adamw", "clipup")
VAL_QUERIES = ("all", "unseen-documents")
TREC_MEASURES = ("ndcg", "mrr", "recall", "map")  # what full-corpus validation can select on
# Shared fields that never change a run's numbers: a resume ignores them.
NOT_RESULT_FIELDS = ("output_dir",)
WEIGHT_FORMATS = ("float", "int8", "mxfp4", "nvfp4")  # "float" and quant.codecs.FORMATS


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; `ConfigError` naming the file for invalid YAML or a non-mapping."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value at the top level")
    return values


@dataclass(init=False)
class TrainConfig:
    """Settings of one training run (shared fields below; method sections in `sections`, read as
    `config.es`, `config.loss`, ...).

    Data: `task` is a short name (see `eggroll-ndcg data list`) or a BEIR folder; `data_dir` overrides
    $EGGROLL_NDCG_DATA. Splits are query-level and seeded by `split_seed`; `n_folds`/`fold` select a k-fold
    split for collections with one labelled split.
    Pool: the top `pool_size` documents of the frozen encoder per training query, plus optional BM25 and random
    negatives; `insert_positives` adds judged positives the encoder missed (a training aid).
    `ignore_identical_ids` (BEIR / MTEB's rule, on by default) leaves a query's own id out of its pool and of
    every full-corpus ranking, unless the query judges that document relevant.
    Head: a name in `models.HEADS`: "linear" (W, identity start), "mlp" (residual, zero-initialized output
    layer), "subspace" (W = I + P M Pᵀ, P the top `subspace_dim` principal directions of the corpus) or
    "adapter" (W = I + U Pᵀ). All start exactly at the zero-shot encoder.
    Objective: `objective` ("ndcg@10", "mrr@10", "recall@100", "map@100"; linear gain) is what every method
    optimizes: the ES fitness, the policy-gradient reward, the cutoff of LambdaLoss; a loss that cannot
    target it refuses the config. Model selection uses `val_metric` on validation queries only: all of them
    (`val_queries: all`) or those none of whose relevant documents was a training positive
    (`unseen-documents`).
    Regularization: `anchor_decay` pulls every head parameter toward its initial value after each step,
    p <- p - anchor_decay * (p - p_0), the same for every method.
    Optimizer (every method steps a torch.optim optimizer): `optimizer`, `learning_rate`, `weight_decay`,
    `momentum` (None: the optimizer's default, 0 for SGD and 0.9 for ClipUp), `grad_clip` (global norm; None
    for none).
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
    quantize: str = "none"  # output codes the index stores: none | binary | binary_asym | int8 (quant.outputs)
    weights: str = "float"  # float | int8 | mxfp4 | nvfp4: the linear head stored in that format (quant.weights)

    pool_size: int = 128
    bm25_negatives: int = 0
    random_negatives: int = 0
    insert_positives: bool = True
    ignore_identical_ids: bool = True
    train_qrels: str | None = None  # soft/replacement judgments of the training queries (docs/soft_labels.md)
    pool_denoise: bool = False      # with train_qrels: drop its fractional-grade documents from the pools instead

    objective: str = "ndcg@10"
    batch_queries: int = 32
    num_steps: int = 300
    eval_every: int = 25
    patience: int | None = None
    val_metric: str = "ndcg@10"
    max_val_queries: int | None = None
    val_queries: str = "all"
    keep_checkpoints: bool = False  # keep checkpoints/step-NNNNNN.safetensors (the head) at every evaluation
    run_depth: int = 100  # documents per test query in test_run.trec.gz (recall@100, a reported measure, needs 100)

    learning_rate: float = 0.05
    optimizer: str = "adam"
    weight_decay: float = 0.0
    anchor_decay: float = 0.0
    momentum: float | None = None
    grad_clip: float | None = 1.0

    sections: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **values: Any):
        shared, sections = route(values, SHARED_FIELDS)
        shared = typed(TrainConfig, shared)
        for spec in dataclasses.fields(self):
            if spec.name != "sections":
                setattr(self, spec.name, shared.get(spec.name, spec.default))
        self.sections = {}
        for name, cls in SECTIONS.items():
            self.sections[name] = cls(**typed(cls, sections.pop(name, {}), prefix=f"{name}."))
        if sections:  # sections no method registered (yet): keep them as given, so nothing is lost
            self.sections.update(sections)
        # `weights` is the short form of the quantized linear heads: weights=int8 on head=linear is head=linear-int8
        if self.weights in WEIGHT_FORMATS[1:] and self.head == "linear":
            self.head = f"linear-{self.weights}"
        elif self.weights == "float" and self.head.removeprefix("linear-") in WEIGHT_FORMATS[1:]:
            self.weights = self.head.removeprefix("linear-")

    def __getattr__(self, name: str) -> Any:  # only for names that are not fields: the sections
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"TrainConfig has no field or section {name!r}")

    def validate(self) -> "TrainConfig":
        """Raise `ConfigError` naming the field for any setting that cannot run, checking the shared fields
        and the sections of `method` only. Returns self."""
        def fail(name: str, why: str) -> None:
            raise ConfigError(f"config field '{name}': {why}")

        try:
            spec = METHODS.get(self.method)
        except UnknownNameError as error:
            fail("method", str(error))
        try:
            HEADS.get(self.head)
        except UnknownNameError as error:
            fail("head", str(error))
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        for name in ("pool_size", "batch_queries", "num_steps", "eval_every", "subspace_dim", "head_hidden_size"):
            if getattr(self, name) < 1:
                fail(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("patience", "head_output_size", "max_val_queries"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                fail(name, f"must be >= 1 or null, got {getattr(self, name)}")
        if self.run_depth < 100:
            fail("run_depth", f"must be >= 100 (recall@100, a reported measure, reads the top 100), got {self.run_depth}")
        for name in ("bm25_negatives", "random_negatives"):
            if getattr(self, name) < 0:
                fail(name, f"must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            fail("learning_rate", f"must be > 0, got {self.learning_rate}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            fail("grad_clip", f"must be > 0 (a global-norm bound) or null for no clipping, got {self.grad_clip}")
        if self.weight_decay < 0:
            fail("weight_decay", f"must be >= 0, got {self.weight_decay}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            fail("momentum", f"must be in [0, 1) or null (the optimizer's default), got {self.momentum}")
        if not 0.0 <= self.anchor_decay < 1.0:
            fail("anchor_decay", f"must be in [0, 1), got {self.anchor_decay}")
        if not 0 < self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            fail("val_fraction", "val_fraction must be in (0, 1) and test_fraction in [0, 1)")
        if self.pool_denoise and not self.train_qrels:
            fail("pool_denoise", "needs train_qrels (the file whose fractional grades mark likely false negatives)")
        if (self.n_folds is None) != (self.fold is None):
            fail("fold", "n_folds and fold go together")
        if self.n_folds is not None and not 0 <= self.fold < self.n_folds:
            fail("fold", f"must be in [0, n_folds={self.n_folds}), got {self.fold}")
        try:
            objective = parse_objective(self.objective)
        except ValueError as error:
            fail("objective", str(error))
        from .set_objectives import needs_groups

        if needs_groups(objective):
            fail("objective", f"{self.objective} reads document groups, which `train` does not load; "
                              "train it with `eggroll-ndcg pareto --groups NAME`")
        metric, _, k = self.val_metric.partition("@")
        if metric not in TREC_MEASURES or not k.isdigit() or int(k) < 1:
            fail("val_metric", f"expected one of {', '.join(TREC_MEASURES)} at a cutoff, e.g. 'ndcg@10', "
                               f"got {self.val_metric!r}")
        if self.val_queries not in VAL_QUERIES:
            fail("val_queries", f"expected one of {', '.join(VAL_QUERIES)}, got {self.val_queries!r}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            fail("device", f"expected 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.weights not in WEIGHT_FORMATS:
            fail("weights", f"expected one of {', '.join(WEIGHT_FORMATS)}, got {self.weights!r}")
        if self.weights != "float" and self.head != f"linear-{self.weights}":
            fail("weights", f"weights={self.weights} stores a linear head (head: linear, which becomes "
                            f"linear-{self.weights}); got head {self.head!r}")
        if self.quantize not in ("none", "binary", "binary_asym", "int8"):
            fail("quantize", f"expected none, binary, binary_asym or int8, got {self.quantize!r}")
        for section in spec.sections:
            checker = getattr(self.sections[section], "validate", None)
            if checker is not None:
                checker(lambda name, why, s=section: fail(f"{s}.{name}", why))
        problem = spec.refuses(self) if spec.refuses else None
        if problem:
            fail("objective" if "objective" in problem else "method", f"{self.method}: {problem}")
        return self

    # -- views -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Shared fields, then each section as a nested mapping (the YAML / JSON form)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sections"}
        for name, section in self.sections.items():
            values[name] = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else dict(section)
        return values

    def result_fields(self) -> dict[str, Any]:
        """The fields that change this run's numbers: the shared fields but `NOT_RESULT_FIELDS`, and the
        sections its method reads (another method's section cannot change it)."""
        values = self.to_dict()
        kept = set(METHODS.get(self.method).sections) if self.method in METHODS else set(self.sections)
        return {k: v for k, v in values.items()
                if k not in NOT_RESULT_FIELDS and (k not in self.sections or k in kept)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with `changes` in any spelling (`population_size=`, `**{"es.population_size": ...}`). A new
        `head` without `weights` re-derives `weights` from it."""
        values = self.to_dict()
        if "head" in changes and "weights" not in changes:
            values["weights"] = "float"
        return TrainConfig(**merge(values, changes, SHARED_FIELDS))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of field: value, got {type(values).__name__}")
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, *, method: str | None = None) -> "TrainConfig":
        """Fields from a YAML mapping, or, for a `compare` config, its `base` settings plus the `tuned`
        settings of `method` (what that config's sweep chose on validation), so that
        `train --config scifact --method eggroll` trains what the comparison trained."""
        values = read_yaml_mapping(path)
        if "base" not in values:
            config = cls.from_dict(values, source=str(path))
            return config.replace(method=method) if method else config
        base = values["base"] or {}
        if not isinstance(base, dict):
            raise ConfigError(f"{path}: 'base' must be a mapping of field: value, got {type(base).__name__}")
        method = method or base.get("method", "eggroll")
        tuned = (values.get("tuned") or {}).get(method, {})
        return cls.from_dict(merge(merge({}, base, SHARED_FIELDS), {"method": method, **tuned}, SHARED_FIELDS),
                             source=f"{path}: base")


SHARED_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"sections"}
__all__ = ["SECTIONS", "ConfigError", "TrainConfig", "check_type", "list_fields", "read_yaml_mapping",
           "register_section"]


def list_fields() -> str:
    """Every field a config accepts with its default, one per line (for `train --list-fields`)."""
    config = TrainConfig()
    lines = [f"{f.name} = {getattr(config, f.name)!r}" for f in dataclasses.fields(TrainConfig) if f.name != "sections"]
    for name, section in config.sections.items():
        lines += [f"{name}.{key} = {value!r}" for key, value in dataclasses.asdict(section).items()]
    return "\n".join(lines)
