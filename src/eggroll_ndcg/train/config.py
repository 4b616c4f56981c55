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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..models.heads import HEADS
from ..registry import Registry, UnknownNameError, did_you_mean
from .methods import METHODS
from .objectives import parse_objective

OPTIMIZERS = ("sgd", "adam", "adamw", "clipup")
VAL_QUERIES = ("all", "unseen-documents")
TREC_MEASURES = ("ndcg", "mrr", "recall", "map")  # what full-corpus validation can select on
# Shared fields that never change a run's numbers: a resume ignores them.
NOT_RESULT_FIELDS = ("output_dir",)
# Old flat names that are not simply a section's field name.
RENAMED = {"pl_samples": "pl_pg.samples"}


class ConfigError(ValueError):
    """A configuration that cannot run; raised before any data is loaded or encoded."""


SECTIONS: Registry[type] = Registry("config section")


def register_section(name: str, section: type) -> type:
    """Register a section dataclass under `name` (its fields are then `name.FIELD` in every spelling). The
    class may define `validate(self, fail)`, calling `fail(field, why)` for a setting that cannot run."""
    if not dataclasses.is_dataclass(section):
        raise TypeError(f"section {name!r} must be a dataclass")
    return SECTIONS.register(name, section)


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


def check_type(name: str, value: Any, annotation: str) -> Any:
    """`value` checked against a field annotation such as "int", "float | None", "str", "bool"; ints are
    accepted for floats (and returned as float). Raises `ConfigError` naming the field."""
    optional = annotation.endswith("| None")
    kind = annotation.replace("| None", "").strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config field '{name}': must be set (got null)")
    expected = {"int": int, "float": (int, float), "str": str, "bool": bool}.get(kind)
    if expected is None:  # dicts and other structured fields: the field's own validation checks them
        return value
    if isinstance(value, bool) and kind != "bool" or not isinstance(value, expected):
        raise ConfigError(f"config field '{name}': expected {kind}{' or null' if optional else ''}, "
                          f"got {value!r} ({type(value).__name__})")
    if kind == "float":
        if not math.isfinite(value):
            raise ConfigError(f"config field '{name}': must be finite, got {value!r}")
        return float(value)
    return value


def _typed(cls: type, values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`values` of dataclass `cls`'s fields, each checked against its annotation."""
    types = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
             for f in dataclasses.fields(cls)}
    return {name: check_type(prefix + name, value, types[name]) for name, value in values.items()}


def _section_of(flat_name: str) -> str | None:
    """"section.field" for an old flat name, or None."""
    if flat_name in RENAMED:
        return RENAMED[flat_name]
    owners = [s for s, cls in SECTIONS.items() if flat_name in {f.name for f in dataclasses.fields(cls)}]
    return f"{owners[0]}.{flat_name}" if len(owners) == 1 else None


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

    pool_size: int = 128
    bm25_negatives: int = 0
    random_negatives: int = 0
    insert_positives: bool = True
    ignore_identical_ids: bool = True

    objective: str = "ndcg@10"
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
    momentum: float | None = None
    grad_clip: float | None = 1.0

    sections: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **values: Any):
        shared, sections = _route(values)
        shared = _typed(TrainConfig, shared)
        for spec in dataclasses.fields(self):
            if spec.name != "sections":
                setattr(self, spec.name, shared.get(spec.name, spec.default))
        self.sections = {}
        for name, cls in SECTIONS.items():
            self.sections[name] = cls(**_typed(cls, sections.pop(name, {}), prefix=f"{name}."))
        if sections:  # sections no method registered (yet): keep them as given, so nothing is lost
            self.sections.update(sections)

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
        if (self.n_folds is None) != (self.fold is None):
            fail("fold", "n_folds and fold go together")
        if self.n_folds is not None and not 0 <= self.fold < self.n_folds:
            fail("fold", f"must be in [0, n_folds={self.n_folds}), got {self.fold}")
        try:
            parse_objective(self.objective)
        except ValueError as error:
            fail("objective", str(error))
        metric, _, k = self.val_metric.partition("@")
        if metric not in TREC_MEASURES or not k.isdigit() or int(k) < 1:
            fail("val_metric", f"expected one of {', '.join(TREC_MEASURES)} at a cutoff, e.g. 'ndcg@10', "
                               f"got {self.val_metric!r}")
        if self.val_queries not in VAL_QUERIES:
            fail("val_queries", f"expected one of {', '.join(VAL_QUERIES)}, got {self.val_queries!r}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            fail("device", f"expected 'cpu' or 'cuda[:N]', got {self.device!r}")
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
        """A copy with `changes` in any spelling (`population_size=`, `**{"es.population_size": ...}`)."""
        return TrainConfig(**_merge(self.to_dict(), changes))

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
        return cls.from_dict(_merge(_merge({}, base), {"method": method, **tuned}), source=f"{path}: base")


def _route(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split keyword values into shared fields and {section: {field: value}}, accepting nested, dotted and
    old flat spellings. Unknown names raise `ConfigError` with a "did you mean"."""
    shared_names = {f.name for f in dataclasses.fields(TrainConfig)} - {"sections"}
    shared: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    values = dict(values)
    for name, section in (values.pop("sections", None) or {}).items():
        sections.setdefault(name, {}).update(
            dataclasses.asdict(section) if dataclasses.is_dataclass(section) else dict(section))
    legacy_metric, legacy_k = values.pop("fitness_metric", None), values.pop("fitness_k", None)
    if legacy_metric is not None or legacy_k is not None:
        values.setdefault("objective", f"{legacy_metric or 'ndcg'}@{legacy_k or 10}")
    if values.pop("extra", None):
        raise ConfigError("config field 'extra' is no longer read; put method options in their section")
    for name, value in values.items():
        if name in shared_names:
            shared[name] = value
            continue
        if name in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{name}': expected a mapping of field: value, got {value!r}")
            for key, item in value.items():
                _put(sections, f"{name}.{key}", item)
            continue
        dotted = name if "." in name else _section_of(name)
        if dotted is None:
            choices = sorted(shared_names) + [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]
            raise ConfigError(f"unknown field(s) {name}{did_you_mean(name, choices)}; "
                              "`eggroll-ndcg train --list-fields` lists them")
        _put(sections, dotted, value)
    return shared, sections


def _put(sections: dict[str, dict[str, Any]], dotted: str, value: Any) -> None:
    section, _, name = dotted.partition(".")
    if section in SECTIONS:
        names = [f.name for f in dataclasses.fields(SECTIONS.get(section))]
        if name not in names:
            raise ConfigError(f"unknown field(s) {dotted}{did_you_mean(name, names)}; "
                              f"section '{section}' has {', '.join(names)}")
    elif not section or not name:
        raise ConfigError(f"unknown field(s) {dotted}")
    sections.setdefault(section, {})[name] = value


def _merge(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`values` (the `to_dict` form) with `changes` in any spelling applied on top."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    shared, sections = _route(changes)
    merged.update(shared)
    for section, fields in sections.items():
        current = merged.get(section)
        merged[section] = {**(current if isinstance(current, dict) else {}), **fields}
    return merged


def list_fields() -> str:
    """Every field a config accepts with its default, one per line (for `train --list-fields`)."""
    config = TrainConfig()
    lines = [f"{f.name} = {getattr(config, f.name)!r}" for f in dataclasses.fields(TrainConfig) if f.name != "sections"]
    for name, section in config.sections.items():
        lines += [f"{name}.{key} = {value!r}" for key, value in dataclasses.asdict(section).items()]
    return "\n".join(lines)
