"""Full-corpus evaluation of a head (or of the zero-shot encoder) with trec_eval semantics.

Queries and every document of the corpus go through the same head and normalization as in training; the
top `depth` documents per query form a TREC run, which `metrics.trec.evaluate` scores against all judgments.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.retrieval import retrieve, to_run
from ..metrics.trec import Evaluation, evaluate
from .prepare import EncodedCollection

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
    head: nn.Module | None, data: EncodedCollection, query_ids: tuple[str, ...], *, normalize: bool, depth: int = 100
) -> dict[str, dict[str, float]]:
    """The top-`depth` full-corpus run {qid: {doc_id: score}} of `head` for `query_ids`."""
    rows = torch.tensor([data.query_row[qid] for qid in query_ids], dtype=torch.long, device=data.query_emb.device)
    queries = head_outputs(head, data.query_emb[rows], normalize=normalize)
    docs = head_outputs(head, data.doc_emb, normalize=normalize)
    scores, indices = retrieve(queries, docs, min(depth, docs.shape[0]), doc_ids=data.collection.doc_ids)
    return to_run(list(query_ids), list(data.collection.doc_ids), scores.cpu(), indices.cpu())


def evaluate_head(
    head: nn.Module | None,
    data: EncodedCollection,
    query_ids: tuple[str, ...],
    *,
    normalize: bool,
    measures: tuple[str, ...] = REPORT_MEASURES,
    depth: int = 100,
) -> tuple[Evaluation, dict[str, dict[str, float]]]:
    """Evaluate `head` on `query_ids` over the full corpus; returns the evaluation and the run."""
    run = retrieve_run(head, data, query_ids, normalize=normalize, depth=depth)
    qrels = {qid: data.collection.judgments[qid] for qid in query_ids}
    return evaluate(run, qrels, measures=measures, missing_as_zero=True), run
