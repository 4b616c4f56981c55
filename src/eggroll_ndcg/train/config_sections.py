"""Config sections and the spellings of config fields, for `TrainConfig` (train/config.py).

A *section* is a small dataclass of one method family's settings (`es`, `loss`, `pl_pg`, ...), registered with
`register_section`. `route` splits keyword values into shared fields and sections, accepting three
spellings: nested (`es: {population_size: 2048}`), dotted (`es.population_size`) and the old flat name
(`population_size`, moved into the one section that has that field, or renamed through `RENAMED`). Every
value is checked against its field's annotation (`check_type`), so `num_steps: abc` or `2.5` is refused
with the field named, before any work.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..registry import Registry, did_you_mean

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


def typed(cls: type, values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`values` of dataclass `cls`'s fields, each checked against its annotation."""
    types = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
             for f in dataclasses.fields(cls)}
    return {name: check_type(prefix + name, value, types[name]) for name, value in values.items()}


def section_of(flat_name: str) -> str | None:
    """"section.field" for an old flat name, or None."""
    if flat_name in RENAMED:
        return RENAMED[flat_name]
    owners = [s for s, cls in SECTIONS.items() if flat_name in {f.name for f in dataclasses.fields(cls)}]
    return f"{owners[0]}.{flat_name}" if len(owners) == 1 else None


def route(values: dict[str, Any], shared_names: set[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split keyword values into shared fields and {section: {field: value}}, accepting nested, dotted and
    old flat spellings. Unknown names raise `ConfigError` with a "did you mean"."""
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
                put(sections, f"{name}.{key}", item)
            continue
        dotted = name if "." in name else section_of(name)
        if dotted is None:
            choices = sorted(shared_names) + [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]
            raise ConfigError(f"unknown field(s) {name}{did_you_mean(name, choices)}; "
                              "`eggroll-ndcg train --list-fields` lists them")
        put(sections, dotted, value)
    return shared, sections


def put(sections: dict[str, dict[str, Any]], dotted: str, value: Any) -> None:
    section, _, name = dotted.partition(".")
    if section in SECTIONS:
        names = [f.name for f in dataclasses.fields(SECTIONS.get(section))]
        if name not in names:
            raise ConfigError(f"unknown field(s) {dotted}{did_you_mean(name, names)}; "
                              f"section '{section}' has {', '.join(names)}")
    elif not section or not name:
        raise ConfigError(f"unknown field(s) {dotted}")
    sections.setdefault(section, {})[name] = value


def merge(values: dict[str, Any], changes: dict[str, Any], shared_names: set[str]) -> dict[str, Any]:
    """`values` (the `to_dict` form) with `changes` in any spelling applied on top."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    shared, sections = route(changes, shared_names)
    merged.update(shared)
    for section, fields in sections.items():
        current = merged.get(section)
        merged[section] = {**(current if isinstance(current, dict) else {}), **fields}
    return merged
