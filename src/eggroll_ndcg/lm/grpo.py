"""GRPO (TRL's `GRPOTrainer`) on the language-model task, with the same reward and token budget as ES.

One step: `prompts_per_step` prompts, `num_generations` sampled continuations each (temperature
`temperature`, no top-k / top-p: the model's full distribution; ES decodes greedily, as in Qiu et al. 2025),
rewards R from the same `reward_fn` as ES on `corpus.summary_of(completion)`, group-normalized advantages
A = (R - mean_group R) / std_group R, and one optimizer step (AdamW, `learning_rate`, no warm-up) on TRL's
clipped surrogate (`loss_type`) plus `beta` x the k3 KL to the reference model (the weights at the start).

Budget: the generated tokens of every completion are counted the way ES counts them (`judges.continuation_length`:
up to and including eos or the token that completes a stop string), summed over the run; a `TrainerCallback`
stops training at the end of the step in which the sum reaches `token_budget` (or after `steps`).

Stop strings: TRL's sampler stops only at eos, so the trainer here (a subclass of `GRPOTrainer` overriding its
`_generate_single_turn`, a private TRL 1.16 method; tests/lm/test_grpo.py checks it) cuts every completion at the
same end before anything else sees it: the reward, the budget and the policy-gradient loss all cover exactly
the tokens ES would have generated. The decoding compute past the stop string is still spent (not counted).

The model object is tuned in place (TRL trains the object it is given); the reference model for beta > 0 is a
copy of the starting weights saved under `work_dir/reference` (TRL loads it from the config's path).
Reproducible: same seed, same options -> same weights (TRL seeds torch/numpy/random and the data sampler).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from .corpus import Task, summary_of
from .judges import continuation_length

__all__ = ["GRPOOptions", "train_grpo"]


@dataclass(frozen=True)
class GRPOOptions:
    beta: float = 0.04              # KL coefficient (0: no reference model)
    learning_rate: float = 1e-5
    num_generations: int = 4        # completions per prompt (the group)
    prompts_per_step: int = 8
    steps: int = 100
    token_budget: int | None = None  # generated tokens (counted as ES counts them); None: only `steps`
    max_new_tokens: int = 32
    temperature: float = 1.0
    seed: int = 0
    loss_type: str = "grpo"         # TRL loss ("grpo", "dr_grpo", "dapo", "bnpo", ...)
    num_iterations: int = 1         # optimizer passes per generated batch (TRL's mu)
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        for name in ("num_generations", "prompts_per_step", "steps", "max_new_tokens", "num_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"GRPOOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ValueError("GRPOOptions.num_generations must be >= 2 (advantages are relative within a group)")
        if self.beta < 0 or self.learning_rate <= 0 or self.temperature <= 0:
            raise ValueError("GRPOOptions: beta must be >= 0, learning_rate and temperature > 0")
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"GRPOOptions.token_budget must be >= 1 or None, got {self.token_budget}")


class _Tally:
    """Generated tokens and per-step mean reward, filled by the reward wrapper."""

    def __init__(self) -> None:
        self.tokens = 0
        self.rewards: list[float] = []
        self.tokens_per_step: list[int] = []


def _reward_wrapper(reward_fn: Callable, tasks: Sequence[Task], tokenizer, tally: _Tally) -> Callable:
    """TRL's reward signature (prompts, completions, completion_ids, <dataset columns>) -> list[float]."""

    def conciseness_reward(prompts, completions, completion_ids, task_index, **_: object) -> list[float]:
        summaries = [summary_of(c if isinstance(c, str) else c[-1]["content"]) for c in completions]
        batch = [tasks[int(i)] for i in task_index]
        rewards = reward_fn(summaries, batch)
        counted = sum(continuation_length(ids, tokenizer) for ids in completion_ids)
        tally.tokens += counted
        tally.tokens_per_step.append(counted)
        values = [float(r) for r in rewards]
        tally.rewards.append(sum(values) / len(values))
        return values

    return conciseness_reward


@contextlib.contextmanager
def _quiet():
    """transformers' logging at error level, its progress bars off and TRL's FutureWarnings (it calls
    transformers' deprecated names) muted, restored afterwards."""
    import transformers
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _trainer_class():
    """GRPOTrainer whose completions end where ES's do (eos or the token completing a stop string)."""
    from trl import GRPOTrainer

    class StopStringGRPOTrainer(GRPOTrainer):
        def _generate_single_turn(self, *args, **kwargs):
            completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
            lengths = [continuation_length(ids, self._tokenizer) for ids in completion_ids]
            completion_ids = [list(ids[:n]) for ids, n in zip(completion_ids, lengths)]
            if logprobs is not None:
                logprobs = [list(lp[:n]) for lp, n in zip(logprobs, lengths)]
            return completion_ids, logprobs

    return StopStringGRPOTrainer


def _budget_callback(tally: _Tally, budget: int | None, total: int, progress: bool):
    """Stops training at the end of the step in which the counted tokens reach `budget`; draws the one
    progress bar (TRL's printing callbacks are removed, so nothing else is printed)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class TokenBudget(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=budget if budget is not None else total, desc="grpo",
                            unit="tok" if budget is not None else "step", disable=not progress, leave=False)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:  # counts tokens when a budget stops the run, steps otherwise
                self.bar.update(tally.tokens - self.bar.n if budget is not None else 1)
                self.bar.set_postfix(step=state.global_step,
                                     reward=f"{tally.rewards[-1]:.2f}" if tally.rewards else "-")
            if budget is not None and tally.tokens >= budget:
                control.should_training_stop = True
            return control

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return TokenBudget()


def train_grpo(model, tokenizer, tasks: Sequence[Task], reward_fn: Callable, options: GRPOOptions, *,
               work_dir: str | Path, progress: bool = True, device: str = "cpu") -> dict:
    """Tune `model` in place with GRPO on `tasks`; returns the log {steps, generated_tokens, reward curve,
    tokens per step, seconds, options}. `reward_fn(summaries, tasks) -> Tensor` is the ES reward."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig

    tasks = list(tasks)
    if not tasks:
        raise ValueError("train_grpo needs at least one task")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tally = _Tally()
    dataset = Dataset.from_dict({"prompt": [t.prompt for t in tasks], "target": [t.target for t in tasks],
                                 "task_index": list(range(len(tasks)))})
    batch = options.prompts_per_step * options.num_generations
    start = time.perf_counter()
    renamed = None
    with _quiet():
        config = GRPOConfig(
            output_dir=str(work_dir / "trl"), max_steps=options.steps, learning_rate=options.learning_rate,
            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=options.max_grad_norm,
            per_device_train_batch_size=batch, gradient_accumulation_steps=1, generation_batch_size=batch,
            num_generations=options.num_generations, max_completion_length=options.max_new_tokens,
            temperature=options.temperature, top_k=0, top_p=1.0, beta=options.beta, loss_type=options.loss_type,
            num_iterations=options.num_iterations, seed=options.seed, data_seed=options.seed,
            use_cpu=str(device) == "cpu", bf16=False, fp16=False, report_to="none", logging_strategy="no",
            save_strategy="no", disable_tqdm=True, log_level="error", remove_unused_columns=False,
            dataloader_num_workers=0, disable_dropout=True,
        )
        try:
            if options.beta > 0:  # TRL builds the reference model from the config's path: the start weights
                reference = work_dir / "reference"
                model.save_pretrained(reference, safe_serialization=True)
                renamed = model.config._name_or_path
                model.config._name_or_path = str(reference)
            trainer = _trainer_class()(
                model=model, reward_funcs=_reward_wrapper(reward_fn, tasks, tokenizer, tally), args=config,
                train_dataset=dataset, processing_class=tokenizer,
                callbacks=[_budget_callback(tally, options.token_budget, options.steps, progress)],
            )
            for printer in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(printer)
            trainer.train()
            steps = int(trainer.state.global_step)
        finally:
            if renamed is not None:
                model.config._name_or_path = renamed
    model.eval()
    return {
        "method": "grpo", "steps": steps, "generated_tokens": tally.tokens, "reward": tally.rewards,
        "tokens_per_step": tally.tokens_per_step, "seconds": time.perf_counter() - start, "options": asdict(options),
    }
