"""How a head is judged: the run's own figures, the training judge, and judges the run never saw.

A run's fitness is its training judge: `config.objective` (e.g. NDCG@10, binary gain) on the training pools
(the encoder's top candidates with the judged positives inserted). Held-out judges of the same head:

- full-corpus retrieval instead of pools (the training queries ranked against the whole corpus);
- other measures and cutoffs on the test queries: MRR@10, Recall@100, NDCG@100;
- graded instead of binarized judgments where a collection has grades above 1 (TREC DL: binarized means
  grade >= 2 is relevant, the TREC DL convention; graded NDCG uses the grades as gains);
- the unseen-document test group (test queries none of whose relevant documents was a training positive).

`own_figures` recomputes `val/...` and `test/...` exactly as `train.evaluate.final_evaluation` does (same
queries, same calls), so at the run's own weights it reproduces metrics.json bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.heads import score_pool
from ..train.batches import gather_batch
from ..train.evaluate import REPORT_MEASURES, retrieve_run
from ..metrics.trec import evaluate
from ..train.objectives import parse_objective
from .runs import Run

HELD_OUT_MEASURES = ("ndcg@10", "mrr@10", "recall@100", "ndcg@100")


def split_ids(run: Run, split: str) -> tuple[str, ...]:
    """The query ids of `split` as final_evaluation reads them: "val" is the selection subset of the config."""
    if split == "val":
        return run.data.validation_queries(run.config.val_queries)
    return run.data.queries(split)


def split_evaluation(head: nn.Module | None, run: Run, split: str, measures=REPORT_MEASURES,
                     qrels_map=None):
    """trec_eval-exact full-corpus evaluation of `head` on `split` (as `train.evaluate.evaluate_head`);
    `qrels_map(judged) -> judged` rewrites each query's judgments (binarization)."""
    ids = split_ids(run, split)
    data = run.data
    rule = {"quantize": run.config.quantize} if getattr(run.config, "quantize", "none") != "none" else {}
    ranked = retrieve_run(head, data, ids, normalize=run.config.normalize,
                          ignore_identical_ids=run.config.ignore_identical_ids, depth=100, **rule)
    qrels = {q: data.collection.judgments[q] for q in ids}
    if qrels_map is not None:
        qrels = {q: qrels_map(j) for q, j in qrels.items()}
    return evaluate(ranked, qrels, measures=measures, missing_as_zero=True)


def own_figures(head: nn.Module | None, run: Run, splits: tuple[str, ...] = ("val", "test"),
                measure: str = "ndcg@10") -> dict[str, float]:
    """{split: mean `measure`} over the full corpus, computed as final_evaluation computes metrics.json."""
    return {split: split_evaluation(head, run, split).mean[measure] for split in splits}


@torch.no_grad()
def pool_fitness(head: nn.Module, run: Run, *, chunk: int = 128) -> float:
    """The training judge: mean `config.objective` over every trainable training pool (all of them, not a
    minibatch), with the run's normalization."""
    data, pools = run.data, run.data.train_pools
    objective = parse_objective(run.config.objective)
    rows_all = torch.tensor([data.query_row[q] for q in pools.query_ids], device=data.query_emb.device)
    query_emb = data.query_emb[rows_all]
    trainable = torch.nonzero(pools.ideal_grades[:, 0] > 0).flatten()
    total = 0.0
    for start in range(0, trainable.numel(), chunk):
        batch = gather_batch(pools, trainable[start:start + chunk], query_emb, data.doc_emb)
        scores = score_pool(head, batch.query_emb, batch.doc_emb, normalize=run.config.normalize)
        total += float(objective(scores, batch).sum())
    return total / max(trainable.numel(), 1)


def binarize_threshold(run: Run) -> int | None:
    """2 for collections graded above 1 (TREC DL's convention), None for binary collections."""
    top = max((g for judged in run.data.collection.judgments.values() for g in judged.values()), default=0)
    return 2 if top >= 2 else None


def judge_table(head: nn.Module | None, run: Run) -> dict[str, Any]:
    """Every judge of one head: the training judge (pools), full-corpus train/val/test, the held-out
    measures, binarized vs graded test NDCG@10, and the seen / unseen-document test groups."""
    table: dict[str, Any] = {}
    if head is not None:
        table[f"train_pool/{run.config.objective}"] = pool_fitness(head, run)
    else:
        table[f"train_pool/{run.config.objective}"] = pool_fitness(nn.Identity(), run)
    for split in ("train", "val"):
        table[f"{split}_full/ndcg@10"] = split_evaluation(head, run, split, measures=("ndcg@10",)).mean["ndcg@10"]
    test = split_evaluation(head, run, "test", measures=HELD_OUT_MEASURES)
    table.update({f"test/{m}": v for m, v in test.mean.items()})
    threshold = binarize_threshold(run)
    if threshold is not None:
        binary = split_evaluation(head, run, "test", measures=("ndcg@10",),
                                  qrels_map=lambda j: {d: int(g >= threshold) for d, g in j.items()})
        table["test_binarized/ndcg@10"] = binary.mean["ndcg@10"]
        table["test_graded/ndcg@10"] = test.mean["ndcg@10"]
    ids = split_ids(run, "test")
    seen = set(run.data.seen_document_queries(ids))
    for group, members in (("seen", [q for q in ids if q in seen]), ("unseen", [q for q in ids if q not in seen])):
        values = [test.per_query[q]["ndcg@10"] for q in members]
        table[f"test_{group}/ndcg@10"] = sum(values) / len(values) if values else None
    return table


def trajectory(run: Run, measure_split: tuple[str, ...] = ("val", "test")) -> list[dict[str, Any]]:
    """Per kept step: the training judge (pool fitness) and the held-out judges (full-corpus NDCG@10 on the
    validation and test queries, and on the unseen-document test group)."""
    points = []
    for step, state in sorted(run.kept.items()):
        head = run.head(state)
        row: dict[str, Any] = {"step": step, "train_pool": pool_fitness(head, run)}
        for split in measure_split:
            evaluation = split_evaluation(head, run, split, measures=("ndcg@10",))
            row[split] = evaluation.mean["ndcg@10"]
            if split == "test":
                ids = split_ids(run, "test")
                seen = set(run.data.seen_document_queries(ids))
                unseen = [evaluation.per_query[q]["ndcg@10"] for q in ids if q not in seen]
                row["test_unseen"] = sum(unseen) / len(unseen) if unseen else None
        points.append(row)
    return points
