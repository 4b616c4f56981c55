"""`lm compare`: base vs ES vs GRPO on the conciseness task, judged on held-out functions (issue 18 §4-5).

Protocol (docs/language_model.md):

1. Base model: `options.model` (a local folder or hub id, through `pretrain.load_model`) or the cached
   `pretrain()` default. Tasks: `corpus.load_tasks`, the first `train_prompts` / `val_prompts` /
   `test_prompts` of each package split (deterministic sha256 order).
2. Sweep at seed 0: ES over σ x learning rate, GRPO over KL β x learning rate (same grid size), each run
   trained on the TRAIN prompts under the same budget of generated tokens; a configuration's score is the
   mean training reward (conciseness of greedy summaries) on the VALIDATION prompts; the best score wins
   (ties: first in grid order). Test prompts are never generated on before step 4.
3. The chosen configuration of each method with every seed in `options.seeds` (seed 0 is the sweep's run).
   Models are saved (save_pretrained, safetensors) under out_dir/models/<method>-seed<s>/ with run.json
   written last; a rerun loads a folder whose run.json exists instead of training again.
4. `judges.judge` on the TEST prompts for base and every tuned model; per prompt, each method's values are
   averaged over seeds; paired tests (t-test, sign-flip randomization, bootstrap CI; metrics/stats.py) for
   ES vs base, GRPO vs base, ES vs GRPO, Holm over all rows (experiments/report.py formatting).
5. Weight space (weight_space.py) of seed 0: update share / spectra, ES-GRPO cosines (and across seeds),
   linear path ES -> GRPO and weight-noise robustness, both scored by the validation reward.

Outputs: results.json (deterministic: no timings), timings.json, results.md, plots/*.png, models/.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import write_json_atomic, write_text_atomic
from .report import write_markdown
from ..metrics.stats import bootstrap_ci, holm, paired_t_test, randomization_test, win_tie_loss
from . import weight_space as ws

RESAMPLES = 10_000
COMPARISONS = (("es", "base"), ("grpo", "base"), ("es", "grpo"))
EXAMPLES = 5  # test summaries kept per model in results.json


@dataclass(frozen=True)
class LMCompareOptions:
    model: str | None = None               # None: the cached `lm pretrain` default
    cache_root: str | None = None          # pretrain cache (None: the project's default)
    seeds: tuple[int, ...] = (0, 1, 2)
    es_sigmas: tuple[float, ...] = (0.01, 0.03)
    es_learning_rates: tuple[float, ...] = (2e-5, 1e-4)   # engine lr = alpha * sigma (es_lm.py)
    grpo_betas: tuple[float, ...] = (0.0, 0.04)
    grpo_learning_rates: tuple[float, ...] = (1e-4, 1e-3)
    population: int = 16
    es_rank: int = 1
    num_generations: int = 4
    prompts_per_step: int = 4
    token_budget: int = 36_000             # generated tokens per training run (ES and GRPO alike)
    max_steps: int = 10_000                # a safety cap; the budget is what stops a run
    max_new_tokens: int = 24
    train_prompts: int = 32
    val_prompts: int = 16
    test_prompts: int = 48
    kl_samples: int = 2
    interpolation_points: int = 5
    noise_scales: tuple[float, ...] = (0.0, 0.01, 0.03)
    noise_draws: int = 2
    retrieval_encoder: str = "minilm"
    device: str = "cpu"
    es_extra: dict = field(default_factory=dict)     # more ESOptions keywords
    grpo_extra: dict = field(default_factory=dict)   # more GRPOOptions keywords

    @classmethod
    def quick(cls, **overrides: Any) -> "LMCompareOptions":
        """Seconds on a micro model: 2 prompts per split, 2 x 1 grids, tiny budgets, 2 seeds."""
        values = dict(seeds=(0, 1), es_sigmas=(0.01,), es_learning_rates=(0.01, 0.05), grpo_betas=(0.0,),
                      grpo_learning_rates=(1e-4, 1e-3), population=4, num_generations=2, prompts_per_step=2,
                      token_budget=48, max_steps=2, max_new_tokens=6, train_prompts=2, val_prompts=2,
                      test_prompts=2, kl_samples=1, interpolation_points=3, noise_scales=(0.0, 0.1), noise_draws=1)
        values.update(overrides)
        return cls(**values)


# --------------------------------------------------------------------------------------------- helpers


def _state(model) -> dict:
    """A CPU copy of the state dict with each tensor once: a matrix shared under two names (tied input and
    output embeddings, as in Qwen2.5) keeps its first name, so update shares do not count it twice."""
    out, seen = {}, set()
    for name, value in model.state_dict().items():
        key = (value.data_ptr(), value.dtype, tuple(value.shape), value.stride())
        if key not in seen:
            seen.add(key)
            out[name] = value.detach().cpu().clone()
    return out


def _load(model, state: dict) -> None:
    """Load a `_state` dict back; only tied aliases may be missing (they share the loaded tensor)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(model.state_dict()) - set(state)
    if unexpected or set(missing) - tied:
        raise ValueError(f"state does not fit the model: missing {sorted(set(missing) - tied)}, "
                         f"unexpected {sorted(unexpected)}")


def _summaries(model, tokenizer, tasks, max_new_tokens: int) -> list[str]:
    """Greedy summaries of `tasks` (judges.generate_summaries: left-padded generate, stop strings)."""
    from .judges import generate_summaries
    return list(generate_summaries(model, tokenizer, list(tasks), max_new_tokens=max_new_tokens)[0])


def mean_reward(model, tokenizer, tasks, reward_fn, max_new_tokens: int) -> float:
    """Mean training reward of greedy summaries on `tasks`."""
    return float(reward_fn(_summaries(model, tokenizer, tasks, max_new_tokens), list(tasks)).double().mean())


def _log_summary(log: dict) -> dict:
    """The JSON-safe scalars and curves of a trainer's log (no tensors, no model objects)."""
    out = {}
    for key, value in log.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


def _grid(first: tuple, second: tuple, names: tuple[str, str]) -> list[dict]:
    return [{names[0]: a, names[1]: b} for a in first for b in second]


def paired_rows(per_prompt: dict[str, dict[str, np.ndarray]], metrics: list[str]) -> list[dict]:
    """Paired tests over prompts for COMPARISONS x metrics (KL only ES vs GRPO: the base's is 0 by
    definition), Holm over every row. `per_prompt[method][metric]` = values [n] in test-prompt order."""
    rows = []
    for a, b in COMPARISONS:
        for metric in metrics:
            if metric.startswith("kl") and b == "base":
                continue
            x, y = per_prompt[a][metric], per_prompt[b][metric]
            if len(x) < 2:
                continue
            ci = bootstrap_ci(x, y, seed=0)
            wtl = win_tie_loss(x, y, tol=1e-12)
            rows.append({"method": a, "reference": b, "metric": metric, "n": len(x),
                         "mean_difference": ci.estimate, "ci95": [ci.low, ci.high],
                         "t_test_p": paired_t_test(x, y).p_value,
                         "randomization_p": randomization_test(x, y, n_resamples=RESAMPLES, seed=0),
                         "randomization_resamples": RESAMPLES, "wins": wtl.wins, "ties": wtl.ties,
                         "losses": wtl.losses})
    for row, adjusted in zip(rows, holm([r["randomization_p"] for r in rows]) if rows else []):
        row["holm_p"] = adjusted
    return rows


# ------------------------------------------------------------------------------------------ training


class _Runner:
    """Trains (or reloads) one method/config/seed from the base model."""

    def __init__(self, options: LMCompareOptions, base, tokenizer, tasks, reward_fn, out_dir: Path, progress: bool):
        self.o, self.base, self.tok, self.tasks, self.reward_fn = options, base, tokenizer, tasks, reward_fn
        self.out, self.progress = out_dir, progress

    def train(self, method: str, config: dict, seed: int, work: Path) -> tuple[Any, dict]:
        o = self.o
        model = copy.deepcopy(self.base)
        if method == "es":
            from .es_lm import ESOptions, train_es
            opts = ESOptions(population=o.population, sigma=config["sigma"], learning_rate=config["learning_rate"],
                             rank=o.es_rank, prompts_per_step=o.prompts_per_step, steps=o.max_steps,
                             token_budget=o.token_budget, max_new_tokens=o.max_new_tokens, seed=seed, **o.es_extra)
            log = train_es(model, self.tok, self.tasks["train"], self.reward_fn, opts, progress=self.progress,
                           device=o.device)
        else:
            from .grpo import GRPOOptions, train_grpo
            opts = GRPOOptions(beta=config["beta"], learning_rate=config["learning_rate"],
                               num_generations=o.num_generations, prompts_per_step=o.prompts_per_step,
                               steps=o.max_steps, token_budget=o.token_budget, max_new_tokens=o.max_new_tokens,
                               seed=seed, **o.grpo_extra)
            work.mkdir(parents=True, exist_ok=True)
            log = train_grpo(model, self.tok, self.tasks["train"], self.reward_fn, opts, work_dir=work,
                             progress=self.progress, device=o.device)
            if isinstance(log, dict) and log.get("model") is not None:
                model = log["model"]
        model.eval()
        return model, _log_summary(log if isinstance(log, dict) else {})

    def val_reward(self, model) -> float:
        return mean_reward(model, self.tok, self.tasks["val"], self.reward_fn, self.o.max_new_tokens)

    def final(self, method: str, config: dict, seed: int, cached: tuple | None) -> tuple[Any, dict]:
        """The tuned model of the chosen config and `seed`: from models/<method>-seed<s> when complete, the
        sweep's in-memory model when given, else trained; saved with run.json last."""
        from .pretrain import load_model
        folder = self.out / "models" / f"{method}-seed{seed}"
        record_path = folder / "run.json"
        if record_path.exists():
            record = json.loads(record_path.read_text())
            if record.get("config") == config:
                model, _ = load_model(folder, device=self.o.device)
                return model, record
        if cached is not None:
            model, record = cached
        else:
            model, log = self.train(method, config, seed, self.out / "work" / f"{method}-seed{seed}")
            record = {"config": config, "seed": seed, "log": log, "val_reward": self.val_reward(model)}
        model.save_pretrained(folder, safe_serialization=True)
        self.tok.save_pretrained(folder)
        write_json_atomic(record_path, record)
        return model, record


def sweep(runner: _Runner, method: str, grid: list[dict], out_dir: Path, bar) -> dict:
    """Seed-0 runs of every grid config, scored on validation prompts; {grid, chosen, best (model, record)}."""
    entries, best = [], None
    for index, config in enumerate(grid):
        bar.set_description(f"lm compare: {method} sweep {index + 1}/{len(grid)} {config}")
        model, log = runner.train(method, config, 0, out_dir / "work" / f"{method}-sweep{index}")
        score = runner.val_reward(model)
        entries.append({"config": config, "val_reward": score, "log": log})
        if best is None or score > best[1]["val_reward"]:
            best = (model, {"config": config, "seed": 0, "log": log, "val_reward": score})
        bar.update(1)
    return {"grid": entries, "chosen": best[1]["config"], "best": best}


# -------------------------------------------------------------------------------------------- compare


def _mean_sd(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def run_compare(options: LMCompareOptions, out_dir: str | Path, *, progress: bool = True,
                judge_fn: Callable | None = None) -> dict[str, Any]:
    """Run the protocol of the module docstring; write the outputs into `out_dir`; return results."""
    from tqdm.auto import tqdm

    from .corpus import load_tasks
    from .judges import judge
    from .pretrain import load_model, pretrain
    from .rewards import make_reward_fn

    from .judges import generate_summaries

    judge_fn = judge_fn or judge
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model_ref = options.model if options.model is not None else str(pretrain(cache_root=options.cache_root,
                                                                             progress=progress, device=options.device))
    base, tok = load_model(model_ref, device=options.device)
    timings["base_model_s"] = time.perf_counter() - start
    wanted = {"train": options.train_prompts, "val": options.val_prompts, "test": options.test_prompts}
    all_tasks = load_tasks(max_per_split=max(wanted.values()))
    tasks = {split: all_tasks[split][: wanted[split]] for split in wanted}
    reward_fn = make_reward_fn(tok)
    runner = _Runner(options, base, tok, tasks, reward_fn, out, progress)

    grids = {"es": _grid(options.es_sigmas, options.es_learning_rates, ("sigma", "learning_rate")),
             "grpo": _grid(options.grpo_betas, options.grpo_learning_rates, ("beta", "learning_rate"))}
    finals = sum(len([s for s in options.seeds if s != 0]) for _ in grids)
    bar = tqdm(total=sum(map(len, grids.values())) + finals, desc="lm compare", unit="run", disable=not progress)
    selection, models, records = {}, {}, {}
    for method, grid in grids.items():
        t0 = time.perf_counter()
        result = sweep(runner, method, grid, out, bar)
        selection[method] = {"grid": result["grid"], "chosen": result["chosen"]}
        timings[f"{method}_sweep_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for seed in options.seeds:
            bar.set_description(f"lm compare: {method} seed {seed} {result['chosen']}")
            cached = result["best"] if seed == 0 else None
            models[(method, seed)], records[(method, seed)] = runner.final(method, result["chosen"], seed, cached)
            if seed != 0:
                bar.update(1)
        timings[f"{method}_seeds_s"] = time.perf_counter() - t0
    bar.close()

    # judges on TEST prompts (first generation on them in the whole protocol)
    t0 = time.perf_counter()
    test = tasks["test"]
    examples: dict[str, list[dict[str, str]]] = {}

    def judge_model(model, label: str) -> dict[str, np.ndarray]:
        summaries, _ = generate_summaries(model, tok, test, max_new_tokens=options.max_new_tokens)
        examples[label] = [{"id": t.id, "target": t.target, "summary": s} for t, s in zip(test[:EXAMPLES], summaries)]
        return judge_fn(model, base, tok, test, max_new_tokens=options.max_new_tokens, device=options.device,
                        encoder=options.retrieval_encoder, kl_samples=options.kl_samples, seed=0,
                        summaries=summaries)

    judged: dict[str, list[dict[str, np.ndarray]]] = {"base": [judge_model(base, "base")]}
    for method in grids:
        judged[method] = [judge_model(models[(method, s)], f"{method}-seed{s}") for s in options.seeds]
    metrics = list(judged["base"][0])
    timings["judges_s"] = time.perf_counter() - t0
    per_prompt = {m: {k: np.mean([np.asarray(j[k], dtype=np.float64) for j in runs], axis=0) for k in metrics}
                  for m, runs in judged.items()}
    train_reward = {"base": [mean_reward(base, tok, tasks["train"], reward_fn, options.max_new_tokens)]}
    val_reward = {"base": [runner.val_reward(base)]}
    for method in grids:
        train_reward[method] = [mean_reward(models[(method, s)], tok, tasks["train"], reward_fn,
                                            options.max_new_tokens) for s in options.seeds]
        val_reward[method] = [records[(method, s)]["val_reward"] for s in options.seeds]
    table = {m: {"train/reward": _mean_sd(train_reward[m]), "val/reward": _mean_sd(val_reward[m]),
                 **{f"test/{k}": _mean_sd([float(np.mean(j[k])) for j in judged[m]]) for k in metrics}}
             for m in judged}
    for method in grids:
        table[method]["generated_tokens"] = _mean_sd([float(records[(method, s)]["log"].get("generated_tokens", 0))
                                                     for s in options.seeds])
    significance = paired_rows(per_prompt, metrics)

    # weight space of seed 0 (validation reward as the score along paths and under noise)
    t0 = time.perf_counter()
    weights = weight_space(base, {m: [models[(m, s)] for s in options.seeds] for m in grids}, runner, options)
    ws.plots(weights, out / "plots")
    timings["weight_space_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start

    results = {
        "config": {**dataclasses.asdict(options), "model": model_ref},
        "tasks": {split: [t.id for t in ts] for split, ts in tasks.items()},
        "selection": selection,
        "runs": {f"{m}-seed{s}": records[(m, s)] for (m, s) in records},
        "table": table, "metrics": metrics,
        "per_prompt": {m: {k: v.tolist() for k, v in d.items()} for m, d in per_prompt.items()},
        "significance": significance, "weight_space": weights, "examples": examples,
    }
    results = json.loads(json.dumps(results, default=_jsonable))
    write_json_atomic(out / "results.json", results)
    write_json_atomic(out / "timings.json", timings)
    write_text_atomic(out / "results.md", write_markdown(results, timings))
    return results


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def weight_space(base, tuned: dict[str, list], runner: _Runner, options: LMCompareOptions) -> dict[str, Any]:
    """Footprints of seed 0, cosines (ES0-GRPO0 per layer; all pairs of seeds overall), ES0 -> GRPO0 path
    and weight-noise robustness of base / ES0 / GRPO0, scored by the mean validation reward."""
    base_state = _state(base)
    states = {m: [_state(model) for model in ms] for m, ms in tuned.items()}
    work = copy.deepcopy(base)

    def evaluate(state: dict) -> float:
        _load(work, state)
        return runner.val_reward(work)

    seeds = list(options.seeds)
    across = {}
    for m1 in states:
        for m2 in states:
            for i, s1 in enumerate(seeds):
                for j, s2 in enumerate(seeds):
                    if (m1, i) < (m2, j):
                        across[f"{m1}-seed{s1}|{m2}-seed{s2}"] = ws.update_cosines(base_state, states[m1][i],
                                                                                  states[m2][j])["all"]
    path = ws.interpolation_path(states["es"][0], states["grpo"][0], evaluate, points=options.interpolation_points)
    path["label"] = "validation reward"
    robust = {name: ws.perturbation_robustness(state, evaluate, options.noise_scales, options.noise_draws, seed=0)
              for name, state in (("base", base_state), ("es", states["es"][0]), ("grpo", states["grpo"][0]))}
    return {"footprints": {m: ws.footprint(base_state, states[m][0]) for m in states},
            "cosines": ws.update_cosines(base_state, states["es"][0], states["grpo"][0]),
            "cosines_across_seeds": across, "interpolation": path, "robustness": robust}


