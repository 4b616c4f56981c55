"""Merge `pareto` reports run method by method into one report (`eggroll-ndcg pareto --merge A B ...`).

A front costs one training run per method, weight and seed, so users run the families in several commands
(e.g. the genetic fronts after the EGGROLL and gradient fronts) and compare them afterwards. Merging is only
meaningful when every report measured the same thing, so the protocol must be equal in all of them:

* the objectives, the document grouping, the hypervolume reference point, the evaluation pool depth;
* the collection, encoder, head, normalization and number of validation queries of the base config;
* the seeds (hypervolume differences are paired per seed).

Any other config field that differs (e.g. ``genetic.mutation_sigma`` set for the genetic fronts only) is
allowed and written to the merged report's ``notes`` as ``field: value in report i, ...``. A method may
appear in several reports only with identical per-seed fronts (a deterministic baseline such as
``zero-shot``, which then also checks that the reports agree). The merged report gets fresh hypervolume means and paired comparisons
(`pareto.summarize_fronts`); the per-seed fronts and candidates are copied unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

from ..train.config import ConfigError
from .pareto import summarize_fronts

PROTOCOL_FIELDS = ("task", "encoder", "head", "normalize", "max_val_queries")


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"es": {"sigma": 0.02}}`` -> ``{"es.sigma": 0.02}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _protocol(report: dict[str, Any]) -> dict[str, Any]:
    seeds = {tuple(sorted(entry["seeds"])) for entry in report["methods"].values()}
    return {"objectives": report["objectives"], "grouping": report["grouping"], "reference": report["reference"],
            "eval_pool": report["spec"].get("eval_pool"), "seeds": sorted(seeds),
            **{field: report["config"].get(field) for field in PROTOCOL_FIELDS}}


def merge_reports(reports: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """One report from ``reports`` (named ``names`` in errors and notes); `ConfigError` when the protocol
    differs or a method is in two reports."""
    if len(reports) < 2:
        raise ConfigError("--merge: give at least two front.json files")
    first = _protocol(reports[0])
    for report, name in zip(reports[1:], names[1:]):
        other = _protocol(report)
        differ = [key for key in first if first[key] != other[key]]
        if differ:
            raise ConfigError(f"{name}: measured another protocol than {names[0]} ({', '.join(differ)}: "
                              + "; ".join(f"{first[k]} vs {other[k]}" for k in differ) + "); fronts cannot be merged")
    merged = copy.deepcopy(reports[0])
    merged["methods"] = {}
    merged["notes"] = []
    owner: dict[str, str] = {}
    for report, name in zip(reports, names):
        for method, entry in report["methods"].items():
            if method in owner:
                if merged["methods"][method]["seeds"] == entry["seeds"]:  # e.g. zero-shot: a check that both agree
                    continue
                raise ConfigError(f"{name}: method {method} is also in {owner[method]}, with other fronts; merge "
                                  "reports of distinct methods")
            owner[method] = name
            merged["methods"][method] = {"seeds": copy.deepcopy(entry["seeds"])}
        merged["notes"].extend(f"{name}: {note}" for note in report.get("notes", []))
    configs = [_flat(r["config"]) for r in reports]
    for field in sorted(set().union(*configs) - {"output_dir"}):
        values = [c.get(field) for c in configs]
        if any(v != values[0] for v in values):
            merged["notes"].append(f"{field}: " + ", ".join(f"{v!r} in {n}" for v, n in zip(values, names)))
    merged["spec"]["methods"] = list(owner)
    merged["merged_from"] = {name: sorted(r["methods"]) for r, name in zip(reports, names)}
    merged["elapsed_s"] = sum(r.get("elapsed_s", 0.0) for r in reports)
    summarize_fronts(merged)
    return merged
