"""The analysis of a set of finished runs: `analyze(run_dirs, out_dir)` (the Python API of
`eggroll-ndcg analyze`). Reads every run (`runs`), then per run: the update spectra (`spectra`), the judges
(`judges`), the flatness curve (`flatness`), the base -> solution path, and along the kept checkpoints the
judges and the distance from the base (`divergence`); per pair of comparable runs: the update cosines and
the linear path between them (`connectivity`); and writes analysis.json, analysis.md and plots/ (`report`).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..train.checkpoint import CheckpointError
from ..train.config import ConfigError
from ..train.methods import METHODS
from ..train.prepare import EncodedCollection
from . import connectivity, divergence, flatness, judges, spectra
from .runs import Run, attach_data, read_run, unique_labels, use_last_kept

log = logging.getLogger(__name__)
PAIRINGS = ("matched", "all", "none")
SOLUTIONS = ("best", "last")
JUDGING_FIELDS = ("normalize", "val_queries", "max_val_queries", "quantize", "ignore_identical_ids")  # own_figures reads


@dataclass
class AnalysisOptions:
    """`points` on each linear path; `pairs`: "matched" (same seed across methods, and same method across
    seeds), "all" or "none"; flatness `noise_scales` (relative to ||W||) with `draws` each; `pca_k` principal
    directions and `top_directions` singular directions for the alignment; `kl_samples` Monte-Carlo rankings
    on `kl_queries` training pools; `trajectories`: judge the kept checkpoints; `solution`: the head analysed as
    each run's solution, "best" (the validation-selected best_head) or "last" (the last kept checkpoint: the
    trained weights whatever validation chose, e.g. where the best head is the step-0 head)."""

    points: int = 21
    pairs: str = "matched"
    noise_scales: tuple[float, ...] = flatness.DEFAULT_SCALES
    draws: int = 5
    pca_k: int = 16
    top_directions: int = 5
    kl_samples: int = 64
    kl_queries: int = 256
    trajectories: bool = True
    solution: str = "best"
    device: str = "cpu"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "AnalysisOptions":
        if self.points < 2:
            raise ConfigError(f"--points: must be >= 2, got {self.points}")
        if self.pairs not in PAIRINGS:
            raise ConfigError(f"--pairs: expected one of {', '.join(PAIRINGS)}, got {self.pairs!r}")
        if self.solution not in SOLUTIONS:
            raise ConfigError(f"solution: expected one of {', '.join(SOLUTIONS)}, got {self.solution!r}")
        if self.draws < 1 or any(s < 0 for s in self.noise_scales) or not self.noise_scales:
            raise ConfigError("--draws must be >= 1 and --noise-scales non-negative numbers")
        if self.pca_k < 1 or self.top_directions < 1 or self.kl_samples < 1 or self.kl_queries < 1:
            raise ConfigError("--pca-k, --top-directions, --kl-samples and --kl-queries must be >= 1")
        return self


EVOLUTIONARY_SECTIONS = ("es", "genetic")  # a method reading one of these searches by fitness alone (or partly)
GRADIENT_SECTIONS = ("loss",)  # a method reading this one also follows a loss's gradient


def family(method: str) -> str:
    """The kind of learner, from the config sections the method reads (no method name is assumed):
    "hybrid" (an evolutionary section and `loss`: guided ES, the two-phase methods, es_targets), "genetic"
    (`genetic`: genetic EGGROLL and the ES + elite archive), "ES" (`es` only: EGGROLL), else "gradient"."""
    sections = set(METHODS.get(method).sections)
    if sections & set(EVOLUTIONARY_SECTIONS) and sections & set(GRADIENT_SECTIONS):
        return "hybrid"
    if "genetic" in sections:
        return "genetic"
    return "ES" if "es" in sections else "gradient"


def select_pairs(runs: list[Run], pairs: str) -> list[tuple[Run, Run]]:
    if pairs == "none":
        return []
    chosen = []
    for a, b in itertools.combinations(runs, 2):
        same_method, same_seed = a.config.method == b.config.method, a.config.seed == b.config.seed
        if pairs == "all" or (same_method and not same_seed) or (not same_method and same_seed):
            chosen.append((a, b))
    return chosen


def analyze_run(run: Run, options: AnalysisOptions, bases) -> dict[str, Any]:
    """Every per-run figure (module docstring)."""
    params = run.param_names
    head = run.head(run.best)
    log.info("%s: spectra, judges, paths", run.label)
    result: dict[str, Any] = {
        "label": run.label, "path": str(run.path), "method": run.config.method, "family": family(run.config.method),
        "seed": run.config.seed, "head": run.config.head, "task": run.config.task, "encoder": run.config.encoder,
        "kept_steps": sorted(run.kept), "best_step": run.metrics.get("best_step"),
        "solution": options.solution, "solution_step": run.solution_step,
        "metrics": {k: run.metrics.get(k) for k in ("val/ndcg@10", "test/ndcg@10", "test_unseen/ndcg@10")},
        "update_norm": connectivity.update_norm(run.best, run.base, params),
        "spectra": spectra.spectrum_report(spectra.update_matrices(head, run.best, run.base, params),
                                           bases=bases, top_directions=options.top_directions),
    }
    result["judges"] = judges.judge_table(head, run)
    if options.solution == "last":  # the figures of the analysed head, as final_evaluation computes them
        result["metrics"] = {"val/ndcg@10": result["judges"]["val_full/ndcg@10"],
                             **{k: result["judges"][k] for k in ("test/ndcg@10", "test_unseen/ndcg@10")}}
    result["judges_base"] = judges.judge_table(run.head(run.base), run)
    result["base_path"] = connectivity.linear_path(run, run.base, run.best, points=options.points)
    log.info("%s: flatness", run.label)
    result["flatness"] = flatness.flatness_curve(run, run.best, scales=options.noise_scales, draws=options.draws,
                                                 seed=options.seed)
    if options.trajectories and run.kept:
        log.info("%s: %d kept checkpoints", run.label, len(run.kept))
        result["trajectory"] = judges.trajectory(run)
        result["divergence"] = divergence.divergence_path(run, samples=options.kl_samples,
                                                          max_queries=options.kl_queries)
    result["divergence_best"] = {"weight_distance": result["update_norm"],
                                 **divergence.pl_divergence(run, run.best, samples=options.kl_samples,
                                                            max_queries=options.kl_queries)}
    return result


def analyze_pair(a: Run, b: Run, options: AnalysisOptions,
                 base_paths: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Update cosines and the linear path a -> b. When a's solution is its base head (a zero update, e.g. a
    best head of step 0), W(t) = (1 - t) W0 + t W_b is b's base -> solution path point for point (the same
    tensors, the same operations), so b's already computed `base_paths[b.label]` is reused."""
    kinds = sorted((family(a.config.method), family(b.config.method)))
    entry: dict[str, Any] = {"a": a.label, "b": b.label, "methods": f"{a.config.method} vs {b.config.method}",
                             "kind": " vs ".join(kinds), "same_method": a.config.method == b.config.method}
    why = connectivity.comparable(a, b)
    if why is not None:
        entry["skipped"] = why
        return entry
    log.info("path %s -> %s", a.label, b.label)
    entry["cosine"] = connectivity.update_cosines(a, b)
    unmoved = all(torch.equal(a.best[name], a.base[name]) for name in a.param_names)
    same_judging = all(getattr(a.config, f, None) == getattr(b.config, f, None) for f in JUDGING_FIELDS)
    if unmoved and same_judging and base_paths is not None and b.label in base_paths:
        entry["path"], entry["path_reused"] = dict(base_paths[b.label]), f"base -> {b.label}"
    else:
        entry["path"] = connectivity.linear_path(a, a.best, b.best, points=options.points)
    return entry


def analyze(run_dirs: Sequence[str | Path], out_dir: str | Path, options: AnalysisOptions | None = None, *,
            progress: bool = False, encoded: EncodedCollection | None = None) -> dict[str, Any]:
    """Analyse the run folders `run_dirs` and write analysis.json, analysis.md and plots/ under `out_dir`;
    returns the analysis (the content of analysis.json). `encoded`: the runs' embeddings when they were not
    made by the embedding cache (`prepare_data`'s argument)."""
    from . import report

    options = (options or AnalysisOptions()).validate()
    if not run_dirs:
        raise ConfigError("analyze: give at least one run folder")
    runs = [read_run(path) for path in run_dirs]
    if options.solution == "last":
        for run in runs:
            use_last_kept(run)
    if len({run.path.resolve() for run in runs}) != len(runs):
        raise ConfigError("analyze: the same run folder was given twice")
    unique_labels(runs)
    attach_data(runs, device=options.device, progress=progress, encoded=encoded)
    bases_by_data: dict[int, Any] = {}
    results = []
    for run in runs:
        key = id(run.data)
        if key not in bases_by_data:
            bases_by_data[key] = spectra.embedding_bases(run.data.doc_emb, run.data.query_emb, options.pca_k)
        results.append(analyze_run(run, options, bases_by_data[key]))
    base_paths = {r["label"]: r["base_path"] for r in results}
    pairs = [analyze_pair(a, b, options, base_paths) for a, b in select_pairs(runs, options.pairs)]
    analysis = {"format": "eggroll-ndcg-analysis/1", "options": asdict(options), "runs": results, "pairs": pairs}
    analysis["summary"] = report.summarize(analysis)
    report.write_outputs(analysis, Path(out_dir))
    return analysis


__all__ = ["AnalysisOptions", "CheckpointError", "analyze"]
