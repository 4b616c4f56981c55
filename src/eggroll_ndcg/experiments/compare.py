"""`compare`: zero-shot, EGGROLL and the gradient baselines on one collection, several seeds, one protocol.

Protocol (each step uses only what it may):
1. Every method trains the same head on the same pools, batches and splits (one `PreparedData`).
2. Tuning: each method gets its own grid (the same number of configurations for every trained method),
   each configuration trained once with the first seed and scored on validation queries only.
3. The chosen configuration is trained with every seed (and every fold, for k-fold collections); each run
   keeps its best-validation head, which is evaluated once on its test queries over the full corpus.
4. Test queries are compared per query (mean over seeds) with paired tests against zero-shot and against
   EGGROLL, Holm-corrected over all comparisons, overall and on unseen-document queries.

Outputs in `output_dir`: results.json (deterministic for a given config: no wall-clock values),
timings.json, results.md, plots/*.png and runs/<method>/... with every run's own folder.

Progress: `run()` counts the planned training runs first (sweep points + seeds x folds, per method) and
reports each one as "run i of n" (method, seed, fold, sweep point) with the elapsed time and an estimate of
the time left, as a log line and to an optional `on_run` callback. A final run identical to its sweep run is
reused (counted, instant). Nothing of this reaches results.json.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_json_atomic, write_text_atomic
from ..data.sources import resolve
from ..train.config import ConfigError, TrainConfig, read_yaml_mapping
from ..train.methods import METHODS
from ..train.prepare import EncodedCollection, PreparedData, data_key, encode_collection, prepare_data
from ..train.trainer import Trainer, check_resolvable, final_evaluation

log = logging.getLogger(__name__)

ZERO_SHOT = "zero-shot"


@dataclass
class CompareConfig:
    """A comparison: the shared `base` TrainConfig, the methods, seeds, folds and each method's grid.

    `sweep[method]` maps TrainConfig fields (any spelling: `learning_rate`, `es.population_size`) to lists of
    values; the grid is their product. A method with no grid trains with the base values. `folds` lists
    the fold numbers to run when `base.n_folds` is set. `tuned[method]` records the grid point this
    comparison's sweep chose on validation; `train --config NAME --method M` trains base + tuned[M] (a test
    checks each entry is a point of its grid). `compare` itself never reads it: it sweeps again.
    """

    base: TrainConfig
    methods: tuple[str, ...] = ("eggroll", "infonce", "listnet", "lambdaloss", "approx_ndcg", "pl_pg")
    seeds: tuple[int, ...] = (0, 1, 2)
    sweep: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    output_dir: str = "runs/compare"
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)

    def validate(self) -> "CompareConfig":
        self.base.validate()
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"compare: unknown method(s) {', '.join(unknown)}; "
                              f"choose from {', '.join(METHODS.names())}")
        if not self.seeds:
            raise ConfigError("compare: give at least one seed")
        for method, grid in self.sweep.items():
            if method not in self.methods:
                raise ConfigError(f"compare: sweep for {method!r}, which is not among the methods")
            for name, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ConfigError(f"compare: sweep.{method}.{name} must be a non-empty list")
                for value in values:
                    self.base.replace(method=method, **{name: value}).validate()
        for method in self.methods:
            self.base.replace(method=method).validate()
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> "CompareConfig":
        raw = read_yaml_mapping(path)
        unknown = sorted(set(raw) - {"base", "methods", "seeds", "sweep", "output_dir", "tuned"})
        if unknown:
            raise ConfigError(f"{path}: unknown top-level field(s) {', '.join(unknown)}")
        base = TrainConfig.from_dict(raw.get("base") or {}, source=f"{path}: base")
        for name in ("methods", "seeds"):
            if name in raw and not isinstance(raw[name], list):
                raise ConfigError(f"{path}: '{name}' must be a list, got {raw[name]!r}")
        for name in ("sweep", "tuned"):
            if not isinstance(raw.get(name) or {}, dict):
                raise ConfigError(f"{path}: '{name}' must be a mapping of method: settings, got {raw[name]!r}")
        kwargs = {k: tuple(raw[k]) for k in ("methods", "seeds") if k in raw}
        return cls(base=base, sweep=raw.get("sweep") or {}, output_dir=raw.get("output_dir", "runs/compare"),
                   tuned=raw.get("tuned") or {}, **kwargs)


def grid(sweep: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of a method's sweep lists, in a fixed order."""
    names = sorted(sweep)
    return [dict(zip(names, values)) for values in itertools.product(*(sweep[n] for n in names))] or [{}]


def folds_of(base: TrainConfig) -> list[int | None]:
    return list(range(base.n_folds)) if base.n_folds else [None]


def planned_runs(config: CompareConfig) -> int:
    """How many training runs `Comparison.run()` makes (or reuses): per method, one per sweep point, then one
    per seed and fold with the chosen point."""
    per_method_final = len(config.seeds) * len(folds_of(config.base))
    return sum(len(grid(config.sweep.get(method, {}))) + per_method_final for method in config.methods)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


@dataclass(frozen=True)
class RunProgress:
    """One training run of a comparison, reported just before it starts.

    `index` counts from 1 to `total`; `stage` is "sweep" (point `point` of `points`, first seed and fold) or
    "final" (the chosen point, every seed and fold); `reused` is True when an identical sweep run is reused
    (instant). `elapsed` is the seconds since the first run; `remaining` the estimated seconds left (None
    until one run has trained).
    """

    index: int
    total: int
    method: str
    stage: str
    seed: int
    fold: int | None
    point: int
    points: int
    values: dict[str, Any]
    reused: bool
    elapsed: float
    remaining: float | None

    def describe(self) -> str:
        values = ", ".join(f"{k}={v}" for k, v in sorted(self.values.items())) or "base settings"
        where = f"seed {self.seed}" + (f" fold {self.fold}" if self.fold is not None else "")
        if self.stage == "sweep":
            what = f"sweep point {self.point + 1} of {self.points} ({values})"
        else:
            what = f"chosen point {self.point + 1} of {self.points} ({values})"
        timing = f"{_duration(self.elapsed)} elapsed, " + (
            f"about {_duration(self.remaining)} left" if self.remaining is not None else "time left unknown yet")
        state = "reused from the sweep" if self.reused else timing
        return f"run {self.index} of {self.total}: {self.method} {where}, {what}: {state}"


class _RunCounter:
    """Counts the runs of one `Comparison.run()` and estimates the time left from the runs that trained."""

    def __init__(self, config: CompareConfig, on_run: Callable[[RunProgress], None] | None):
        self.total = planned_runs(config)
        self.on_run = on_run
        self.index = 0
        self.trained = 0
        self.started = time.perf_counter()
        self.methods_left = list(config.methods)  # each method's first final run normally reuses its sweep run

    def announce(self, *, method: str, stage: str, seed: int, fold: int | None, point: int, points: int,
                 values: dict[str, Any], reused: bool) -> None:
        self.index += 1
        if stage == "final" and method in self.methods_left:
            self.methods_left.remove(method)
        elapsed = time.perf_counter() - self.started
        remaining = None
        if self.trained:
            to_train = max(self.total - self.index + (not reused) - len(self.methods_left), 0)
            remaining = elapsed / self.trained * to_train
        report = RunProgress(index=self.index, total=self.total, method=method, stage=stage, seed=seed, fold=fold,
                             point=point, points=points, values=dict(values), reused=reused, elapsed=elapsed,
                             remaining=remaining)
        log.info("compare: %s", report.describe())
        if self.on_run is not None:
            self.on_run(report)
        if not reused:
            self.trained += 1


class Comparison:
    """Runs a `CompareConfig`; `run()` returns the results dict also written to results.json."""

    def __init__(self, config: CompareConfig, *, encoded: EncodedCollection | None = None, progress: bool = True,
                 on_run: Callable[[RunProgress], None] | None = None):
        """`encoded` supplies the embeddings of the collection (default: resolve and encode `base.task`);
        `on_run` is called with a `RunProgress` before each training run (a log line is written either way)."""
        self.config = config.validate()
        check_resolvable(config.base)
        self.progress = progress
        self.on_run = on_run
        self.output = Path(config.output_dir)
        self._encoded = encoded
        self._data: dict[tuple, PreparedData] = {}
        self._runs: dict[str, tuple[dict[str, Any], dict[str, dict[str, float]]]] = {}

    def data_for(self, config: TrainConfig) -> PreparedData:
        key = data_key(config)
        if key not in self._data:
            if self._encoded is None:
                self._encoded = encode_collection(
                    resolve(config.task, data_dir=config.data_dir), config.encoder, device=config.device,
                    progress=self.progress,
                )
            self._data[key] = prepare_data(config, encoded=self._encoded, progress=self.progress)
        return self._data[key]

    @staticmethod
    def _key(config: TrainConfig) -> str:
        return json.dumps(config.result_fields(), sort_keys=True)

    def _train(self, config: TrainConfig, run_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
        """Train (or reuse the identical run made for the sweep) and return metrics and test per-query values."""
        key = self._key(config)
        if key not in self._runs:
            trainer = Trainer(config.replace(output_dir=str(run_dir)), data=self.data_for(config),
                              progress=self.progress)
            self._runs[key] = (trainer.train(), trainer.test_per_query)
            trainer.folder.drop_checkpoint()  # a complete run is read back from its outputs, not resumed
        metrics, per_query = self._runs[key]
        return dict(metrics), per_query

    def _zero_shot(self, config: TrainConfig) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
        metrics, per_query, _ = final_evaluation(
            None, self.data_for(config), normalize=config.normalize, val_queries=config.val_queries,
            ignore_identical_ids=config.ignore_identical_ids, quantize=config.quantize,
        )
        return metrics, per_query

    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.output.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {"config": {"base": cfg.base.to_dict(), "methods": list(cfg.methods),
                                              "seeds": list(cfg.seeds), "sweep": cfg.sweep}, "methods": {}}
        timings: dict[str, Any] = {}
        per_query: dict[str, dict[str, dict[str, float]]] = {}
        seen: dict[str, bool] = {}
        folds = folds_of(cfg.base)
        counter = _RunCounter(cfg, self.on_run)

        # zero-shot: deterministic, one evaluation per fold
        zero_runs = []
        for fold in folds:
            fold_cfg = cfg.base.replace(fold=fold)
            metrics, pq = self._zero_shot(fold_cfg)
            zero_runs.append(metrics)
            per_query.setdefault(ZERO_SHOT, {}).update(pq)
            data = self.data_for(fold_cfg)
            test_ids = data.queries("test")
            seen_ids = set(data.seen_document_queries(test_ids))
            seen.update({q: q in seen_ids for q in test_ids})
        results["methods"][ZERO_SHOT] = {"runs": {"-": zero_runs}}

        for method in cfg.methods:
            method_cfg = cfg.base.replace(method=method)
            candidates = grid(cfg.sweep.get(method, {}))
            sweep_rows = []
            for index, values in enumerate(candidates):
                trial = method_cfg.replace(seed=cfg.seeds[0], fold=folds[0], **values)
                counter.announce(method=method, stage="sweep", seed=cfg.seeds[0], fold=folds[0], point=index,
                                 points=len(candidates), values=values, reused=self._key(trial) in self._runs)
                metrics, _ = self._train(trial, self.output / "runs" / method / f"sweep-{index}")
                sweep_rows.append({"values": values, f"val/{trial.val_metric}": metrics[f"val/{trial.val_metric}"]})
            key = f"val/{method_cfg.val_metric}"
            chosen = max(range(len(candidates)), key=lambda i: (sweep_rows[i][key], -i))
            runs: dict[str, list[dict[str, Any]]] = {}
            method_pq: dict[str, dict[str, list[float]]] = {}
            for seed in cfg.seeds:
                for fold in folds:
                    run_cfg = method_cfg.replace(seed=seed, fold=fold, **candidates[chosen])
                    name = f"seed-{seed}" + (f"-fold-{fold}" if fold is not None else "")
                    counter.announce(method=method, stage="final", seed=seed, fold=fold, point=chosen,
                                     points=len(candidates), values=candidates[chosen],
                                     reused=self._key(run_cfg) in self._runs)
                    metrics, pq = self._train(run_cfg, self.output / "runs" / method / name)
                    timings.setdefault(method, []).append(
                        {"run": name, "train_time": metrics.pop("train_time"), "time_to_best": metrics.pop("time_to_best")}
                    )
                    runs.setdefault(str(seed), []).append(metrics)
                    for qid, values in pq.items():
                        for measure, value in values.items():
                            method_pq.setdefault(qid, {}).setdefault(measure, []).append(value)
            per_query[method] = {q: {m: sum(v) / len(v) for m, v in ms.items()} for q, ms in method_pq.items()}
            results["methods"][method] = {"sweep": sweep_rows, "chosen": candidates[chosen], "runs": runs}

        from .report import summarize, write_markdown
        from .plots import chosen_sweep_indices, plot_learning_curves

        results["summary"] = summarize(results, per_query, seen)
        write_json_atomic(self.output / "results.json", results)
        write_json_atomic(self.output / "timings.json", timings)
        write_json_atomic(self.output / "test_per_query.json", per_query)
        write_text_atomic(self.output / "results.md", write_markdown(results, timings))
        plot_learning_curves(self.output / "runs", self.output / "plots", cfg.methods, cfg.base.val_metric,
                             chosen_sweep=chosen_sweep_indices(results))
        return results

