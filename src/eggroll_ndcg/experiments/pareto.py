"""Fronts, not points: relevance against diversity or exposure fairness, for EGGROLL and the baselines.

Protocol (one collection, K objectives o_1 (relevance) .. o_K, a document grouping from `data.groups`):

1. **Evaluation pools.** Every validation and test query re-ranks one fixed pool: the zero-shot encoder's
   top `eval_pool` documents (no positives inserted). Every method ranks the same candidates, the pool shares
   of the groups (the `share@k` target) are the same for all, and NDCG's ideal comes from all judgments.
2. **Candidates** per method and seed, each a head or a re-ranking evaluated on validation and test:
   - `eggroll-weighted`: one EGGROLL run per weight w, fitness o_1 + w * (o_2 + ... + o_K);
   - `eggroll-pareto`: one EGGROLL run with NSGA-II shaping of the [N, B, K] fitness (`es.pareto`);
   - `genetic-weighted`, `genetic-pareto`: the same with genetic EGGROLL (`train.genetic_method`), whose
     selection and elitism then follow the NSGA-II order (Pareto selection);
   - `gradient-surrogate`: the gradient loss (`gradient_method`, InfoNCE by default) minus w times the
     differentiable surrogate of each extra objective (`set_objectives.SURROGATES`); skipped, and said so,
     when an objective has none;
   - `mmr-zero-shot`, `mmr-gradient`: MMR over a lambda sweep of the zero-shot scores and of the gradient
     head trained on o_1 alone (its best validation-o_1 checkpoint);
   - `exposure-rerank`: greedy exposure targeting of the zero-shot scores over a beta sweep;
   - `zero-shot`: the frozen encoder.
   A trained run contributes its head at every `eval_every` steps (an archive along the run).
3. **Selection on validation only**: a method's front for a seed is its candidates that are non-dominated on
   the validation queries; the front written is their test points, filtered to the non-dominated ones
   (dropping dominated points leaves the hypervolume unchanged).
4. **Hypervolume** of each test front against the stated reference point (`DEFAULT_REFERENCE`: a lower bound
   of each objective), mean and spread (std) over seeds, and the per-seed paired differences of EGGROLL's
   hypervolume minus each baseline's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..data.groups import document_groups
from ..data.pools import build_pools
from ..es.pareto import hypervolume, non_dominated
from ..models.heads import score_pool
from ..train.batches import PoolBatch, batch_rows, gather_batch, step_generator
from ..train.config import TrainConfig
from ..train.losses import LOSSES
from ..train.methods import METHODS
from ..train.objectives import parse_objective
from ..train.optimizers import make_optimizer
from ..train.prepare import PreparedData
from ..train.set_objectives import SURROGATES, parse_set_objective, vector_objective
from ..train.trainer import make_head
from .rerank import exposure_rerank, mmr_rerank

log = logging.getLogger(__name__)

DEFAULT_REFERENCE = {"ndcg": 0.0, "mrr": 0.0, "recall": 0.0, "map": 0.0, "diversity": 0.0, "groups": 0.0,
                     "alpha_ndcg": 0.0, "share": -1.0, "exposure": -4.0 * 5.0 ** 2}


EVOLVED = ("eggroll-weighted", "eggroll-pareto", "genetic-weighted", "genetic-pareto")  # the black-box searches


@dataclass
class ParetoSpec:
    """What a front run trains and sweeps (see the module docstring)."""

    objectives: tuple[str, ...]
    grouping: str = "train_positive"
    seeds: tuple[int, ...] = (0,)
    weights: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)
    surrogate_weights: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)
    gradient_method: str = "infonce"
    gradient_learning_rate: float = 1e-3
    mmr_lambdas: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3)
    exposure_betas: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)
    eval_pool: int = 100
    reference: tuple[float, ...] | None = None
    methods: tuple[str, ...] = (*EVOLVED, "gradient-surrogate", "mmr-zero-shot", "mmr-gradient", "exposure-rerank",
                                "zero-shot")

    def reference_point(self) -> list[float]:
        if self.reference is not None:
            if len(self.reference) != len(self.objectives):
                raise ValueError(f"reference has {len(self.reference)} values for {len(self.objectives)} objectives")
            return [float(v) for v in self.reference]
        return [DEFAULT_REFERENCE[name.partition("@")[0]] for name in self.objectives]


@dataclass
class Evaluator:
    """The fixed evaluation pools of one split as one PoolBatch, and the objectives' means on it."""

    batch: PoolBatch
    objectives: list = field(default_factory=list)
    normalize: bool = True

    def scores(self, head: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return score_pool(head, self.batch.query_emb, self.batch.doc_emb, normalize=self.normalize)

    def values(self, scores: torch.Tensor) -> list[float]:
        with torch.no_grad():
            return [float(objective(scores, self.batch).double().mean()) for objective in self.objectives]


def evaluation_batch(data: PreparedData, query_ids: tuple[str, ...], groups: torch.Tensor, config: TrainConfig,
                     size: int) -> PoolBatch:
    """The zero-shot top-`size` pools of `query_ids` (no positives inserted) as one batch with groups."""
    rows = torch.tensor([data.query_row[q] for q in query_ids], device=data.query_emb.device)
    pools = build_pools(data.collection, query_ids, data.query_emb[rows], data.doc_emb, size=size,
                        insert_positives=False, seed=config.split_seed,
                        ignore_identical_ids=config.ignore_identical_ids).to(data.doc_emb.device)
    return gather_batch(pools, torch.arange(len(query_ids)), data.query_emb[rows], data.doc_emb, groups=groups)


class SurrogateGradient:
    """Gradient baseline with surrogates: loss = LOSSES[name] - sum_i w_i * mean_q surrogate_i (higher-is-better
    surrogates, `set_objectives.SURROGATES`), one optimizer step per batch."""

    def __init__(self, head, config: TrainConfig, name: str, terms: list[tuple[float, Callable]]):
        self.head, self.config, self.name, self.terms = head, config, name, terms
        self.optimizer = make_optimizer(config, head.parameters())

    def step(self, batch: PoolBatch, step: int) -> None:
        temperature = self.config.loss.temperature
        scores = score_pool(self.head, batch.query_emb, batch.doc_emb, normalize=self.config.normalize)
        loss = LOSSES[self.name](scores, batch.grades, batch.mask, batch.ideal_grades, temperature=temperature,
                                 generator=step_generator(self.config.seed, step, stream=1))
        for weight, surrogate in self.terms:
            if weight:
                loss = loss - weight * surrogate(scores, batch, temperature).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.head.parameters(), self.config.grad_clip or float("inf"))
        self.optimizer.step()


def run_training(config: TrainConfig, data: PreparedData, groups: torch.Tensor, build: Callable,
                 on_checkpoint: Callable[[int, torch.nn.Module], None]) -> None:
    """Train a fresh head with `build(head) -> method` for `config.num_steps` on the training pools (batches
    of `train.batches`, with groups), calling `on_checkpoint(step, head)` at step 0 and every `eval_every`."""
    torch.manual_seed(config.seed)
    head = make_head(config, data.doc_emb)
    method = build(head)
    pools = data.train_pools
    rows = torch.tensor([data.query_row[q] for q in pools.query_ids], device=data.query_emb.device)
    pool_query_emb = data.query_emb[rows]
    trainable = torch.nonzero(pools.ideal_grades[:, 0] > 0).flatten()
    on_checkpoint(0, head)
    for step in range(config.num_steps):
        batch = gather_batch(pools, batch_rows(trainable, config.batch_queries, seed=config.seed, step=step),
                             pool_query_emb, data.doc_emb, groups=groups)
        method.step(batch, step)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.num_steps:
            on_checkpoint(step + 1, head)


def _front(candidates: list[dict[str, Any]], reference: list[float]) -> dict[str, Any]:
    """Validation selection, then the non-dominated test points and their hypervolume."""
    val = np.array([c["val"] for c in candidates])
    chosen = non_dominated(val)
    for c, keep in zip(candidates, chosen):
        c["selected_on_val"] = bool(keep)
    test = np.array([c["test"] for c, keep in zip(candidates, chosen) if keep])
    front = np.unique(test[non_dominated(test)], axis=0)  # sorted, one copy of equal points
    return {"candidates": candidates, "front": front.tolist(), "hypervolume": hypervolume(front, reference)}


def run_pareto(base: TrainConfig, data: PreparedData, spec: ParetoSpec) -> dict[str, Any]:
    """The whole protocol of the module docstring; returns the JSON-ready report."""
    started = time.time()
    groups = document_groups(spec.grouping, data.collection, data.doc_emb, data.queries("train"))
    objectives = [parse_objective(name) for name in spec.objectives]
    k = objectives[0].k
    val_ids = data.queries("val")[: base.max_val_queries]
    splits = {name: Evaluator(evaluation_batch(data, ids, groups, base, spec.eval_pool), objectives, base.normalize)
              for name, ids in (("val", val_ids), ("test", data.queries("test")))}
    zero_head = make_head(base, data.doc_emb)
    zero = {name: ev.scores(zero_head) for name, ev in splits.items()}
    reference = spec.reference_point()
    extra = list(spec.objectives[1:])
    surrogates = [SURROGATES.get(name.partition("@")[0]) for name in extra]
    report: dict[str, Any] = {"objectives": list(spec.objectives), "grouping": spec.grouping, "reference": reference,
                              "spec": {k_: list(v) if isinstance(v, tuple) else v for k_, v in vars(spec).items()},
                              "config": base.to_dict(), "methods": {}, "notes": []}

    def evaluate(setting: dict[str, Any], score_of: Callable[[str], torch.Tensor]) -> dict[str, Any]:
        return {**setting, **{name: ev.values(score_of(name)) for name, ev in splits.items()}}

    for seed in spec.seeds:
        config = base.replace(seed=seed)
        per_method: dict[str, list[dict[str, Any]]] = {}

        def trained(method: str, setting: dict[str, Any], build: Callable, cfg: TrainConfig = config) -> None:
            sink = per_method.setdefault(method, [])
            run_training(cfg, data, groups, build, lambda step, head: sink.append(
                evaluate({**setting, "step": step}, lambda split: splits[split].scores(head))))
            log.info("seed %d %s %s done (%.0f s)", seed, method, setting, time.time() - started)

        for family in ("eggroll", "genetic"):  # black-box searches: a weighted sum per weight, and NSGA-II
            build = METHODS.get(family).build
            if f"{family}-weighted" in spec.methods:
                for w in spec.weights:
                    text = "+".join([spec.objectives[0]] + [f"{w}*{name}" for name in extra])
                    trained(f"{family}-weighted", {"weight": w}, lambda head, o=parse_set_objective(text), b=build,
                            f=family: b(head, config.replace(method=f), o))
            if f"{family}-pareto" in spec.methods:
                trained(f"{family}-pareto", {"weight": None}, lambda head, b=build, f=family: b(
                    head, config.replace(method=f), vector_objective(spec.objectives)))
        gradient_config = config.replace(learning_rate=spec.gradient_learning_rate, optimizer="adam")
        if "gradient-surrogate" in spec.methods or "mmr-gradient" in spec.methods:
            if any(s is None for s in surrogates):
                missing = [n for n, s in zip(extra, surrogates) if s is None]
                report["notes"].append(f"no differentiable surrogate for {missing}: gradient-surrogate trains "
                                       "with weight 0 only")
            weights = spec.surrogate_weights if all(s is not None for s in surrogates) else (0.0,)
            for w in weights:
                terms = [(w, s) for s in surrogates if s is not None]
                trained("gradient-surrogate", {"weight": w}, lambda head, t=terms: SurrogateGradient(
                    head, gradient_config, spec.gradient_method, t), gradient_config)
        if "mmr-gradient" in spec.methods:  # the gradient head trained on o_1 alone: its best val-o_1 checkpoint
            plain = [c for c in per_method["gradient-surrogate"] if c["weight"] == 0.0]
            best = max(plain, key=lambda c: c["val"][0])
            best_head = _retrain_to(gradient_config, data, groups, spec, best["step"])
            grad_scores = {name: ev.scores(best_head) for name, ev in splits.items()}
            per_method["mmr-gradient"] = [evaluate({"lambda": lam, "base_step": best["step"]},
                                                   lambda split, lam=lam: mmr_rerank(grad_scores[split],
                                                                                     splits[split].batch, k, lam))
                                          for lam in spec.mmr_lambdas]
            if "gradient-surrogate" not in spec.methods:
                per_method.pop("gradient-surrogate")
        if "mmr-zero-shot" in spec.methods:
            per_method["mmr-zero-shot"] = [evaluate({"lambda": lam}, lambda split, lam=lam: mmr_rerank(
                zero[split], splits[split].batch, k, lam)) for lam in spec.mmr_lambdas]
        if "exposure-rerank" in spec.methods:
            per_method["exposure-rerank"] = [evaluate({"beta": beta}, lambda split, beta=beta: exposure_rerank(
                zero[split], splits[split].batch, k, beta)) for beta in spec.exposure_betas]
        if "zero-shot" in spec.methods:
            per_method["zero-shot"] = [evaluate({}, lambda split: zero[split])]
        for method, candidates in per_method.items():
            entry = report["methods"].setdefault(method, {"seeds": {}})
            entry["seeds"][str(seed)] = _front(candidates, reference)
    summarize_fronts(report)
    report["elapsed_s"] = time.time() - started
    return report


def _retrain_to(config: TrainConfig, data: PreparedData, groups: torch.Tensor, spec: ParetoSpec,
                step: int) -> torch.nn.Module:
    """The gradient (weight 0) head at `step`, retrained deterministically (same seed, same batches)."""
    holder: dict[int, torch.nn.Module] = {}
    config = config.replace(num_steps=max(step, 1))
    run_training(config, data, groups, lambda head: SurrogateGradient(head, config, spec.gradient_method, []),
                 lambda s, head: holder.__setitem__(s, head) if s == step else None)
    return holder[step]


def summarize_fronts(report: dict[str, Any]) -> None:
    """Hypervolume mean/std over seeds per method, and paired evolved-minus-baseline differences."""
    for entry in report["methods"].values():
        values = [s["hypervolume"] for s in entry["seeds"].values()]
        entry["hypervolume_mean"] = float(np.mean(values))
        entry["hypervolume_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    comparisons = {}
    for ours in EVOLVED:
        for other in ("mmr-zero-shot", "mmr-gradient", "gradient-surrogate", "exposure-rerank", "zero-shot"):
            if ours in report["methods"] and other in report["methods"]:
                a, b = report["methods"][ours]["seeds"], report["methods"][other]["seeds"]
                diffs = [a[s]["hypervolume"] - b[s]["hypervolume"] for s in a if s in b]
                comparisons[f"{ours} - {other}"] = {"per_seed": diffs, "mean": float(np.mean(diffs)),
                                                    "wins": int(sum(d > 0 for d in diffs)), "seeds": len(diffs)}
    report["comparisons"] = comparisons


MARKERS = {"eggroll-weighted": ("o-", "tab:red"), "eggroll-pareto": ("s-", "tab:purple"),
           "genetic-weighted": ("p-", "tab:brown"), "genetic-pareto": ("h-", "tab:pink"),
           "gradient-surrogate": ("^-", "tab:blue"), "mmr-zero-shot": ("v--", "tab:green"),
           "mmr-gradient": ("D--", "tab:cyan"), "exposure-rerank": ("x--", "tab:orange"),
           "zero-shot": ("*", "black")}


def plot_fronts(report: dict[str, Any], path: str, seed: str | None = None) -> None:
    """PNG of the test fronts (first two objectives) of one seed (default: the first), baselines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    seed = seed if seed is not None else next(iter(next(iter(report["methods"].values()))["seeds"]))
    for method, entry in report["methods"].items():
        key = seed
        front = np.array(entry["seeds"][key]["front"])
        style, colour = MARKERS.get(method, (".-", None))
        label = f"{method} (HV {entry['hypervolume_mean']:.4f})"
        ax.plot(front[:, 0], front[:, 1], style, color=colour, label=label, markersize=12 if style == "*" else 5)
    names = report["objectives"]
    ax.set_xlabel(f"{names[0]} (test)")
    ax.set_ylabel(f"{names[1]} (test)")
    ax.set_title(f"test fronts, grouping {report['grouping']}, seed {seed} (HV: mean over seeds); "
                 f"ref {report['reference']}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
