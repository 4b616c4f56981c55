"""The training loop shared by every registered method.

A run: prepare data (shared, cached) -> build the head -> step 0 validation (the zero-shot encoder, for an
identity head) -> steps, each asking the method (`train.methods`) for one update on a minibatch of training
pools -> every `eval_every` steps, full-corpus validation on validation queries only, a checkpoint, and the
best head so far -> the best head is evaluated once on the test queries. Early stopping (`patience`, counted
in evaluations) and the best checkpoint are chosen on validation queries only. The files are those of
`train.run_folder`; the selection rule is `Selection`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..models.heads import HeadSettings, build_head, score_pool
from . import distributed
from .batches import batch_rows, gather_batch
from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig
from .evaluate import evaluation_record, final_evaluation
from .methods import METHODS, Method
from .objectives import Objective, parse_objective
from .prepare import PreparedData, prepare_data
from .run_folder import keep_head

log = logging.getLogger(__name__)


def check_resolvable(config: TrainConfig) -> None:
    """Fail before any work when the task or the encoder cannot be found."""
    from ..data.sources import is_known_source
    from ..encoders.registry import ALIASES, is_known_encoder

    if not is_known_source(config.task, data_dir=config.data_dir):
        raise ConfigError(
            f"config field 'task': unknown dataset {config.task!r}; run `eggroll-ndcg data list` for the names, "
            "or pass a BEIR folder path"
        )
    if not is_known_encoder(config.encoder):
        raise ConfigError(
            f"config field 'encoder': unknown encoder {config.encoder!r}; use one of "
            f"{', '.join(sorted(ALIASES))} or a sentence-transformers model folder"
        )


def make_head(config: TrainConfig, doc_emb: torch.Tensor) -> torch.nn.Module:
    """The registered head `config.head` for corpus embeddings `doc_emb` [D, n], on their device."""
    settings = HeadSettings(out_dim=config.head_output_size, hidden=config.head_hidden_size,
                            subspace_dim=config.subspace_dim)
    return build_head(config.head, doc_emb, settings)


def make_method(config: TrainConfig, head: torch.nn.Module, objective: Objective | None = None) -> Method:
    """The registered method `config.method` on `head`, optimizing `objective` (default: the config's)."""
    spec = METHODS.get(config.method)
    if not spec.trains_codes and not any(p.is_floating_point() for p in head.parameters()):
        able = ", ".join(name for name, other in METHODS.items() if other.trains_codes)
        raise ConfigError(f"method {config.method!r} trains float parameters and head {config.head!r} stores "
                          f"quantized codes only; use one of {able}, or a float head")
    return spec.build(head, config, objective or parse_objective(config.objective))


@dataclass
class Selection:
    """Model selection on validation: the best value, its step and time, and evaluations since it improved."""

    step: int = 0
    elapsed: float = 0.0
    best_value: float | None = None
    best_step: int = 0
    best_elapsed: float = 0.0
    evals_without_improvement: int = 0

    def update(self, value: float) -> bool:
        """Record an evaluation at the current step; True when it is the new best (strictly higher)."""
        if self.best_value is None or value > self.best_value:
            self.best_value, self.best_step, self.best_elapsed = value, self.step, self.elapsed
            self.evals_without_improvement = 0
            return True
        self.evals_without_improvement += 1
        return False

    def stopped(self, patience: int | None) -> bool:
        return patience is not None and self.evals_without_improvement >= patience


class Anchor:
    """`anchor_decay`: p <- p - decay * (p - p_0) after each step, p_0 the initial weights."""

    def __init__(self, head: torch.nn.Module, decay: float):
        self.decay = decay
        self.initial = {n: t.detach().clone() for n, t in head.named_parameters()} if decay else {}

    @torch.no_grad()
    def apply(self, head: torch.nn.Module) -> None:
        for name, param in head.named_parameters():
            if name in self.initial:
                param.sub_(self.decay * (param - self.initial[name]))


class Trainer:
    """Train one head with one method; `train()` returns the final metrics (see module docstring)."""

    def __init__(self, config: TrainConfig, *, data: PreparedData | None = None, progress: bool = True):
        self.config = config.validate()
        check_resolvable(config)
        self.data = data
        self.world = distributed.setup(config)  # the process group under torchrun (WORLD_SIZE > 1), else None
        self.progress = progress and (self.world is None or self.world.writes)
        self.folder = distributed.run_folder(config.output_dir, self.world)  # ranks > 0: reads only
        self.output_dir = self.folder.path

    def _validate(self, head, step: int, elapsed: float) -> dict[str, Any]:
        record = {"step": step, "event": "eval", "elapsed": elapsed}
        record.update(evaluation_record(head, self.data, self.val_ids, self.train_eval_ids,
                                        normalize=self.config.normalize, val_metric=self.config.val_metric,
                                        ignore_identical_ids=self.config.ignore_identical_ids,
                                        quantize=self.config.quantize))
        return record

    def _batch_fitness(self, head, batch, objective: Objective) -> float:
        with torch.no_grad():
            scores = score_pool(head, batch.query_emb, batch.doc_emb, normalize=self.config.normalize)
            return float(objective(scores, batch).mean())

    def _setup_queries(self) -> None:
        config, data = self.config, self.data
        pools = data.train_pools
        rows = torch.tensor([data.query_row[q] for q in pools.query_ids], device=data.query_emb.device)
        self.pool_query_emb = data.query_emb[rows]
        self.trainable = torch.nonzero(pools.ideal_grades[:, 0] > 0).flatten()
        if self.trainable.numel() == 0:
            raise ConfigError(f"{config.task}: no training query has a relevant document")
        self.val_ids = data.validation_queries(config.val_queries)[: config.max_val_queries]
        if not self.val_ids:
            raise ConfigError(f"{config.task}: no validation query in the subset val_queries={config.val_queries!r}")
        self.train_eval_ids = data.queries("train")[: max(len(self.val_ids), 1)]

    def _resume(self, head, method: Method, saved: dict[str, Any]) -> tuple[Selection, dict[str, torch.Tensor]]:
        head.load_state_dict(saved["head"])
        method.load_state_dict(saved["method"])
        selection = Selection(**saved["trainer"])
        steps_done = getattr(method, "steps_done", None)
        if steps_done is not None and steps_done() != selection.step:
            raise CheckpointError(f"{self.folder.checkpoint_dir}: the method state is at step {steps_done()} but the "
                                  f"trainer state at step {selection.step}; the checkpoint was edited or damaged")
        self.folder.truncate_log(selection.step)
        log.info("resumed %s at step %d", self.folder.checkpoint_dir, selection.step)
        return selection, saved["best_head"]

    def train(self, *, stop_after: int | None = None) -> dict[str, Any]:
        """Run (or resume) training. `stop_after` ends this call after that many steps without the final
        test evaluation, as if the process were killed there; calling `train()` again resumes."""
        config = self.config
        complete = self.folder.load_complete(config)
        if complete is not None:
            log.info("%s is a complete run: its metrics are returned without training", self.folder.path)
            metrics, self.test_per_query = complete
            return metrics
        torch.manual_seed(config.seed)
        if self.data is None:
            self.data = prepare_data(config, progress=self.progress)
        data = self.data
        head = make_head(config, data.doc_emb)
        objective = parse_objective(config.objective)
        method = make_method(config, head, objective)
        anchor = Anchor(head, config.anchor_decay)  # the initial weights, before any resume
        self._setup_queries()

        saved = self.folder.load_resumable(config)
        self.folder.start(config, data.splits)  # only once a resume is known to be allowed
        if saved is not None:
            selection, best_head = self._resume(head, method, saved)
        else:
            self.folder.reset_log()
            selection, record = Selection(), self._validate(head, 0, 0.0)
            selection.update(record[f"val/{config.val_metric}"])
            best_head = {name: t.detach().clone() for name, t in head.state_dict().items()}
            self.folder.append_log(record)
            if config.keep_checkpoints:
                keep_head(self.folder, 0, head)

        start = selection.step
        last = start if selection.stopped(config.patience) else min(
            start + stop_after if stop_after is not None else config.num_steps, config.num_steps)
        bar = tqdm(range(start, last), disable=not self.progress, initial=start, total=config.num_steps,
                   desc=f"{config.method} {config.task}")
        for step in bar:
            started = time.perf_counter()
            batch = gather_batch(data.train_pools, batch_rows(self.trainable, config.batch_queries, seed=config.seed,
                                                              step=step), self.pool_query_emb, data.doc_emb)
            stats = method.step(batch, step)
            anchor.apply(head)
            stats["train/batch_" + objective.measure] = self._batch_fitness(head, batch, objective)
            selection.elapsed += time.perf_counter() - started
            selection.step = step + 1
            self.folder.append_log({"step": step + 1, "event": "step", "elapsed": selection.elapsed, **stats})
            bar.set_postfix({k: f"{v:.4f}" for k, v in stats.items() if k in ("loss", "fitness/mean", "sigma")})
            if (step + 1) % config.eval_every and step + 1 != config.num_steps:
                continue
            record = self._validate(head, step + 1, selection.elapsed)
            if selection.update(record[f"val/{config.val_metric}"]):
                best_head = {name: t.detach().clone() for name, t in head.state_dict().items()}
            if hasattr(method, "observe_validation"):  # optional hook (train.methods), before the checkpoint
                method.observe_validation(step + 1, record[f"val/{config.val_metric}"])
            self.folder.append_log(record)
            if config.keep_checkpoints:  # before the checkpoint: a resume rewrites it
                keep_head(self.folder, step + 1, head)
            self.folder.save_checkpoint({
                "config": config.to_dict(), "head": head.state_dict(), "method": method.state_dict(),
                "trainer": asdict(selection), "best_head": best_head,
            })
            if selection.stopped(config.patience):
                log.info("early stop at step %d: no val gain for %d evaluations", step + 1, config.patience)
                break
        bar.close()
        self.head, self.state = head, asdict(selection)
        if stop_after is not None and selection.step < config.num_steps and not selection.stopped(config.patience):
            return {"stopped_at": selection.step}
        head.load_state_dict(best_head)
        return self._finish(head, selection)

    def _finish(self, head, selection: Selection) -> dict[str, Any]:
        """Evaluate the best head once: train/val summaries and the held-out test queries."""
        config = self.config
        if selection.best_step == 0:
            log.warning("no validation improvement over the starting head in %d steps: the saved head is the "
                        "step-0 head (%s %.4f)", selection.step, config.val_metric, selection.best_value)
        else:
            log.info("best validation %s %.4f at step %d of %d", config.val_metric, selection.best_value,
                     selection.best_step, selection.step)
        metrics: dict[str, Any] = {"best_step": selection.best_step, "steps": selection.step,
                                   "time_to_best": selection.best_elapsed, "train_time": selection.elapsed,
                                   "ignore_identical_ids": config.ignore_identical_ids}
        summary, self.test_per_query, run = final_evaluation(
            head, self.data, normalize=config.normalize, val_queries=config.val_queries,
            ignore_identical_ids=config.ignore_identical_ids, quantize=config.quantize, run_depth=config.run_depth)
        metrics.update(summary)
        self.folder.write_outputs(head, run, tag=config.method, per_query=self.test_per_query, metrics=metrics)
        return metrics


class EGGROLLTrainer(Trainer):
    """`Trainer` for the EGGROLL method, the reference system's programmatic API:
    `EGGROLLTrainer(TrainConfig(task=..., es={"population_size": 256, "sigma": 0.02}, learning_rate=...)).train()`."""

    def __init__(self, config: TrainConfig, **kwargs: Any):
        if config.method != "eggroll":
            raise ConfigError(f"EGGROLLTrainer trains method 'eggroll', got {config.method!r}; use Trainer")
        super().__init__(config, **kwargs)
