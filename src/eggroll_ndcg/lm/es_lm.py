"""EGGROLL ES fine-tuning of a causal LM on a text reward (issue 18 §4, the ES half).

One step ``t``:

1. ``prompts_per_step`` tasks drawn without replacement by ``random.Random(f"{seed}:{t}")`` (deterministic);
2. the engine's population ``W ± sigma·E_j`` (``E_j = A_j B_jᵀ/sqrt r`` on every perturbed Linear weight,
   :func:`population.lm_parameters`) decodes all ``N·P`` rows in one batched ``generate``
   (:func:`population.generate_members`, in chunks of ``pairs_per_chunk`` pairs if set);
3. fitness ``f_i = mean_p reward_fn(summary_of(text[i][p]), task_p)`` ``[N]``;
4. ``EggrollES.tell(f)``: shaping (default ``zscore``), ``g = 1/(N sigma) Σ_i f̃_i E_i``, ``param.grad = -g``,
   ``optimizer.step()`` (SGD or Adam at ``learning_rate``).

Mapping from Qiu et al. 2025 (arXiv 2509.24372; their code ``es_fine-tuning_conciseness.py``): population
30, sigma 0.001, alpha 0.0005, greedy decoding, z-scored rewards ``z = (R - mean)/std``, update
``θ += alpha · (1/N) Σ_n z_n ε_n`` (no ``1/sigma``). The engine's SGD step is
``θ += lr · 1/(N sigma) Σ z_i E_i``, so the same step needs ``lr = alpha · sigma = 5e-7`` (the default
here). Differences that remain: their 30 members are independent full-rank Gaussians over all parameters;
here they are 15 antithetic pairs of rank-``r`` perturbations (entries of ``E_j`` have unit variance as
theirs) of the Linear weights only (no embeddings, norms, biases).

Token budget: every generated token of every member counts (up to and including the stop string / eos,
:class:`population.Generations`); training stops after ``steps`` steps or before the first step that would
start with ``generated_tokens >= token_budget`` (so the last step may overshoot the budget by < one step).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..es import EggrollES
from ..es.state import JSON_FILE, load_checkpoint, save_checkpoint
from .corpus import Task, summary_of
from .population import GROUPS, generate_members, generate_population, lm_parameters

RewardFn = Callable[[list[str], list[Task]], Tensor]


@dataclass
class ESOptions:
    """ES settings; defaults follow Qiu et al. 2025 (population 30, sigma 1e-3, alpha 5e-4 -> lr 5e-7)."""

    population: int = 30
    sigma: float = 1e-3
    learning_rate: float = 5e-7
    rank: int = 1
    prompts_per_step: int = 8
    steps: int = 100
    token_budget: int | None = None
    max_new_tokens: int = 32
    optimizer: str = "sgd"  # "sgd" | "adam"
    shaping: str = "zscore"
    seed: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    pairs_per_chunk: int | None = None  # None: all N·P rows in one generate call
    include: tuple[str, ...] = GROUPS
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.population < 2 or self.population % 2:
            raise ValueError(f"ESOptions.population must be even and >= 2, got {self.population}")
        if not self.sigma > 0 or not self.learning_rate >= 0:
            raise ValueError("ESOptions.sigma must be > 0 and learning_rate >= 0")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"ESOptions.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        for name in ("prompts_per_step", "steps", "max_new_tokens", "rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"ESOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"ESOptions.token_budget must be >= 1 or None, got {self.token_budget}")
        self.include = tuple(self.include)


def step_prompts(num_tasks: int, k: int, seed: int, step: int) -> list[int]:
    """Indices of the ``k`` tasks of step ``step`` (without replacement; all tasks if ``k >= num_tasks``)."""
    return random.Random(f"{seed}:{step}").sample(range(num_tasks), min(k, num_tasks))


def make_engine(model: nn.Module, options: ESOptions) -> EggrollES:
    """The engine over :func:`lm_parameters` of ``model`` with the options' optimizer."""
    params = lm_parameters(model, include=options.include)
    values = list(params.values())
    if options.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(values, lr=options.learning_rate)
    else:
        opt = torch.optim.Adam(values, lr=options.learning_rate)
    return EggrollES(params, population_size=options.population, rank=options.rank, sigma=options.sigma,
                     seed=options.seed, optimizer=opt, shaping=options.shaping, vector_noise="freeze",
                     grad_clip=options.grad_clip)


def population_fitness(model, tokenizer, engine: EggrollES, tasks: Sequence[Task], reward_fn: RewardFn,
                       options: ESOptions, step: int) -> tuple[Tensor, int, list[list[str]]]:
    """``(fitness [N], generated tokens, texts [N][P])`` of the engine's current population on ``tasks``."""
    population = engine.ask()
    gens = generate_members(model, tokenizer, population, [t.prompt for t in tasks],
                            pairs_per_chunk=options.pairs_per_chunk, max_new_tokens=options.max_new_tokens,
                            do_sample=options.do_sample, temperature=options.temperature,
                            seed=options.seed * 1_000_003 + step)
    summaries = [summary_of(text) for row in gens.texts for text in row]  # member-major
    rewards = torch.as_tensor(reward_fn(summaries, list(tasks) * population.num_members), dtype=torch.float64)
    if rewards.shape != (len(summaries),):
        raise ValueError(f"reward_fn returned shape {tuple(rewards.shape)}, expected ({len(summaries)},)")
    return rewards.view(population.num_members, len(tasks)).mean(1), gens.total_tokens, gens.texts


def center_reward(model, tokenizer, tasks: Sequence[Task], reward_fn: RewardFn, *, max_new_tokens: int) -> Tensor:
    """Per-task reward ``[len(tasks)]`` of the unperturbed model's greedy continuations (a plain check)."""
    gens = generate_population(model, tokenizer, None, [t.prompt for t in tasks], max_new_tokens=max_new_tokens)
    return torch.as_tensor(reward_fn([summary_of(t) for t in gens.texts[0]], list(tasks)), dtype=torch.float64)


RESUMABLE_CHANGES = ("steps", "token_budget", "pairs_per_chunk")  # options a resumed run may change


def _save(folder: Path, engine: EggrollES, log: dict) -> None:
    """Checkpoint via es/state.py into ``folder`` (written beside it, then swapped in by rename)."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, engine, extra_json={"log": log})
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _resume(folder: Path, engine: EggrollES, options: ESOptions) -> dict:
    """Weights, engine state and log from ``folder``; the options must agree but for RESUMABLE_CHANGES."""
    _, extra = load_checkpoint(folder, engine)
    log = extra["log"]
    saved, mine = log["options"], asdict(options)
    diffs = [k for k in mine if k not in RESUMABLE_CHANGES and _jsonish(saved.get(k)) != _jsonish(mine[k])]
    if diffs:
        raise ValueError(f"{folder}: checkpoint ESOptions differ in {diffs}; start a new checkpoint_dir")
    log["options"] = mine
    return log


def frozen_fingerprint(model: nn.Module, engine: EggrollES) -> str:
    """sha256 of every parameter ES leaves alone (embedding, norms, ...): a resume must see the same base."""
    tuned = {id(p) for p in engine.params.values()}
    digest = hashlib.sha256()
    for name, p in model.named_parameters():
        if id(p) not in tuned:
            digest.update(name.encode())
            digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _jsonish(value):
    return list(value) if isinstance(value, tuple) else value


def train_es(model: nn.Module, tokenizer, tasks: Sequence[Task], reward_fn: RewardFn, options: ESOptions, *,
             progress: bool = True, device: str | torch.device = "cpu", checkpoint_dir: str | Path | None = None,
             checkpoint_every: int = 1) -> dict:
    """Tune ``model`` in place with EGGROLL ES; returns the log (see the module docstring).

    With ``checkpoint_dir`` the engine (perturbed weights, optimizer, step) and the log are saved there every
    ``checkpoint_every`` steps and at the end (es/state.py: safetensors + JSON); a later call with the same
    folder, the same base ``model`` and the same options (``steps``, ``token_budget``, ``pairs_per_chunk``
    may change) resumes, bit-identical to an uninterrupted run.

    Log: ``options``, ``steps`` (completed), ``generated_tokens`` (total), ``reward`` (mean population
    fitness per step = mean reward over members and the step's prompts), ``history`` (one dict per step:
    step, tokens, seconds, reward_mean/std/min/max, grad_norm, update_norm, sigma, prompt ids), ``seconds``.
    """
    from tqdm.auto import tqdm

    if not tasks:
        raise ValueError("train_es: no tasks")
    model.to(device)
    model.eval()
    engine = make_engine(model, options)
    fingerprint = frozen_fingerprint(model, engine)
    log: dict = {"options": asdict(options), "steps": 0, "generated_tokens": 0, "reward": [], "history": [],
                 "frozen_fingerprint": fingerprint}
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and (folder / JSON_FILE).exists():
        log = _resume(folder, engine, options)
        if log.get("frozen_fingerprint") != fingerprint:
            raise ValueError(f"{folder}: the checkpoint was trained from another base model (frozen weights differ)")
    if engine.step != log["steps"]:
        raise ValueError(f"{folder}: engine step {engine.step} but the log has {log['steps']} steps")
    start = time.perf_counter()
    by_tokens = options.token_budget is not None  # the budget, not the step cap, is what stops a run
    bar = tqdm(total=options.token_budget if by_tokens else options.steps,
               initial=log["generated_tokens"] if by_tokens else log["steps"], desc="es",
               unit="tok" if by_tokens else "step", disable=not progress)
    try:
        for step in range(log["steps"], options.steps):
            if options.token_budget is not None and log["generated_tokens"] >= options.token_budget:
                break
            t0 = time.perf_counter()
            chosen = [tasks[i] for i in step_prompts(len(tasks), options.prompts_per_step, options.seed, step)]
            fitness, tokens, _ = population_fitness(model, tokenizer, engine, chosen, reward_fn, options, step)
            stats = engine.tell(fitness)
            log["generated_tokens"] += tokens
            log["steps"] = step + 1
            log["reward"].append(stats["fitness_mean"])
            log["history"].append({
                "step": step, "tokens": log["generated_tokens"], "seconds": time.perf_counter() - t0,
                "reward_mean": stats["fitness_mean"], "reward_std": stats["fitness_std"],
                "reward_min": stats["fitness_min"], "reward_max": stats["fitness_max"],
                "grad_norm": stats["grad_norm"], "update_norm": stats["update_norm"], "sigma": stats["sigma"],
                "prompts": [t.id for t in chosen],
            })
            bar.update(tokens if by_tokens else 1)
            bar.set_postfix(step=log["steps"], reward=f"{stats['fitness_mean']:.3f}")
            if folder is not None and log["steps"] % checkpoint_every == 0:
                _save(folder, engine, log)
    finally:
        bar.close()
    for p in engine.params.values():
        p.grad = None
    log["seconds"] = log.get("seconds", 0.0) + time.perf_counter() - start
    if folder is not None:
        _save(folder, engine, log)
    return log
