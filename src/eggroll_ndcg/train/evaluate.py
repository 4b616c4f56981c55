"""Full-corpus evaluation of a head (or of the zero-shot encoder) with trec_eval semantics.

Queries and every document of the corpus go through the same head and normalization as in training; the
top `depth` documents per query form a TREC run, which `metrics.trec.evaluate` scores against all judgments.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.retrieval import retrieve, to_run
from ..metrics.trec import Evaluation, evaluate
from .prepare import EncodedCollection, PreparedData

REPORT_MEASURES = ("ndcg@10", "mrr@10", "recall@100")


def head_outputs(head: nn.Module | None, embeddings: torch.Tensor, *, normalize: bool) -> torch.Tensor:
    """f(h) for a batch of embeddings [n, dim] -> [n, out]; `head=None` is the identity (zero-shot).

    Normalization is applied the same way with and without a head, so an identity head reproduces the
    zero-shot scores bit for bit.
    """
    with torch.no_grad():
        out = embeddings if head is None else head(embeddings)
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out


def retrieve_run(
    head: nn.Module | None, data: EncodedCollection, query_ids: tuple[str, ...], *, normalize: bool, depth: int = 100,
    ignore_identical_ids: bool = True, quantize: str = "none",
) -> dict[str, dict[str, float]]:
    """The top-`depth` full-corpus run {qid: {doc_id: score}} of `head` for `query_ids`; with
    `ignore_identical_ids` a query's own id is left out unless it judges that document relevant. With
    `quantize` (binary, binary_asym, int8) the run is served from the quantized index (`quant.serving`)."""
    if quantize != "none":
        from ..quant.serving import quantized_run
        return quantized_run(quantize, head, data, query_ids, normalize=normalize, depth=depth,
                             ignore_identical_ids=ignore_identical_ids)
    rows = torch.tensor([data.query_row[qid] for qid in query_ids], dtype=torch.long, device=data.query_emb.device)
    queries = head_outputs(head, data.query_emb[rows], normalize=normalize)
    docs = head_outputs(head, data.doc_emb, normalize=normalize)
    scores, indices = retrieve(queries, docs, min(depth, docs.shape[0]), doc_ids=data.collection.doc_ids,
                               query_ids=query_ids, ignore_identical_ids=ignore_identical_ids,
                               judgments=data.collection.judgments)
    return to_run(list(query_ids), list(data.collection.doc_ids), scores.cpu(), indices.cpu())


def evaluate_head(
    head: nn.Module | None,
    data: EncodedCollection,
    query_ids: tuple[str, ...],
    *,
    normalize: bool,
    measures: tuple[str, ...] = REPORT_MEASURES,
    depth: int = 100,
    ignore_identical_ids: bool = True,
    quantize: str = "none",
) -> tuple[Evaluation, dict[str, dict[str, float]]]:
    """Evaluate `head` on `query_ids` over the full corpus; returns the evaluation and the run."""
    run = retrieve_run(head, data, query_ids, normalize=normalize, depth=depth,
                       ignore_identical_ids=ignore_identical_ids, quantize=quantize)
    qrels = {qid: data.collection.judgments[qid] for qid in query_ids}
    return evaluate(run, qrels, measures=measures, missing_as_zero=True), run


def evaluation_record(head: nn.Module | None, data: PreparedData, val_ids: tuple[str, ...],
                      train_ids: tuple[str, ...], *, normalize: bool, val_metric: str,
                      ignore_identical_ids: bool = True, quantize: str = "none") -> dict[str, float]:
    """The validation-time record: `val/…` on `val_ids` and `train/…` on `train_ids` (the report measures
    plus `val_metric`)."""
    measures = tuple(dict.fromkeys(REPORT_MEASURES + (val_metric,)))
    record: dict[str, float] = {}
    for split, ids in (("val", val_ids), ("train", train_ids)):
        evaluation, _ = evaluate_head(head, data, ids, normalize=normalize, measures=measures,
                                      ignore_identical_ids=ignore_identical_ids, quantize=quantize)
        record.update({f"{split}/{name}": value for name, value in evaluation.mean.items()})
    return record


def final_evaluation(
    head: nn.Module | None, data: PreparedData, *, normalize: bool, val_queries: str = "all",
    ignore_identical_ids: bool = True, quantize: str = "none", run_depth: int = 100,
) -> tuple[dict[str, Any], dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """The report of a head (None: the zero-shot encoder): `train/…` on as many training queries as there
    are validation queries, `val/…` on the validation subset `val_queries` selects on, `test/…`, and
    `test_seen/…` / `test_unseen/…` with their counts (a group with no query gets None). Returns (metrics,
    test per-query values, test run of the top `run_depth` documents per query). `ignore_identical_ids` applies
    BEIR's identical-id rule throughout."""
    metrics: dict[str, Any] = {}
    rule = {"normalize": normalize, "ignore_identical_ids": ignore_identical_ids, "quantize": quantize}
    val_ids, test_ids = data.validation_queries(val_queries), data.queries("test")
    for split, ids in (("train", data.queries("train")[: max(len(val_ids), 1)]), ("val", val_ids)):
        evaluation, _ = evaluate_head(head, data, ids, **rule)
        metrics.update({f"{split}/{name}": value for name, value in evaluation.mean.items()})
    evaluation, run = evaluate_head(head, data, test_ids, depth=run_depth, **rule)
    metrics.update({f"test/{name}": value for name, value in evaluation.mean.items()})
    seen = set(data.seen_document_queries(test_ids))
    for group, ids in (("seen", [q for q in test_ids if q in seen]), ("unseen", [q for q in test_ids if q not in seen])):
        metrics[f"test_{group}/count"] = len(ids)
        for name in REPORT_MEASURES:
            values = [evaluation.per_query[q][name] for q in ids]
            metrics[f"test_{group}/{name}"] = sum(values) / len(values) if values else None
    return metrics, evaluation.per_query, run
