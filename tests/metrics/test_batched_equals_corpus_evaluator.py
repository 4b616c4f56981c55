"""The training fitness (batched NDCG@10 over pools) equals the corpus-level evaluator on the same rankings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _metrics_cases import METHODS

from eggroll_ndcg.metrics import evaluate, ranking_metrics


@pytest.mark.parametrize("method", METHODS)
def test_batched_ndcg_at_10_equals_trec_evaluate_including_positives_missing_from_the_pool(method):
    rng = np.random.default_rng(7)
    generator = torch.Generator().manual_seed(7)
    N, Q, P, corpus = 8, 40, 32, 500
    doc_ids = [f"doc{i}" for i in range(corpus)]
    qrels, pool_docs = {}, []
    for q in range(Q):
        judged = rng.choice(corpus, size=8, replace=False)
        qrels[f"q{q}"] = {doc_ids[d]: int(rng.integers(0, 4)) for d in judged}
        # the pool holds some judged documents and misses others (judged ones past index 4 are never in it)
        in_pool = set(judged[: rng.integers(0, 5)].tolist())
        rest = [d for d in rng.permutation(corpus).tolist() if d not in set(judged.tolist())]
        pool = list(in_pool) + rest[: P - len(in_pool)]
        pool_docs.append(sorted((doc_ids[d] for d in pool), reverse=True))  # doc-id-descending byte order
    grades = torch.tensor([[qrels[f"q{q}"].get(d, 0) for d in pool_docs[q]] for q in range(Q)], dtype=torch.float32)
    ideal = torch.zeros(Q, 8)
    for q in range(Q):
        positives = sorted((g for g in qrels[f"q{q}"].values() if g > 0), reverse=True)
        ideal[q, : len(positives)] = torch.tensor(positives, dtype=torch.float32)
    mask = torch.rand(Q, P, generator=generator) < 0.9
    scores = torch.randint(0, 4, (N, Q, P), generator=generator).float()  # float32 with many ties

    fitness = ranking_metrics(scores, grades, ks=[10], ideal_grades=ideal, mask=mask, measures=("ndcg",),
                              method=method)["ndcg"]

    run = {f"m{n}-q{q}": {pool_docs[q][p]: float(scores[n, q, p]) for p in range(P) if mask[q, p]}
           for n in range(N) for q in range(Q)}
    member_qrels = {f"m{n}-q{q}": qrels[f"q{q}"] for n in range(N) for q in range(Q)}
    per_query = evaluate(run, member_qrels, measures=["ndcg@10"]).per_query
    expected = torch.tensor([[per_query[f"m{n}-q{q}"]["ndcg@10"] for q in range(Q)] for n in range(N)])
    torch.testing.assert_close(fitness[..., 0], expected, atol=1e-6, rtol=0)
    assert (expected > 0).any() and (expected < 1).any()
    # some queries have a positive outside the pool: their best possible pool ranking stays below 1
    capped = [q for q in range(Q) if (grades[q] * mask[q]).sum() < ideal[q].sum()]
    assert len(capped) > Q // 2
    oracle = ranking_metrics(grades, grades, ks=[10], ideal_grades=ideal, mask=mask, measures=("ndcg",),
                             method=method)["ndcg"]
    assert all(oracle[q, 0].item() < 1 for q in capped if ideal[q].sum() > 0)
