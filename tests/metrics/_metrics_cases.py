"""Random runs and qrels with many tied scores, shared by the metrics tests (seeded, deterministic)."""

from __future__ import annotations

import numpy as np
import torch

KS = (1, 5, 10, 100)
METHODS = ("topk", "rank")  # the two paths of ranking_metrics, forced with method=...


def random_cases(n_queries: int, seed: int) -> tuple[dict, dict]:
    """{qid: {docid: score}} and {qid: {docid: grade}} with ties, graded and binary qrels, positives off the run.

    Doc ids are "d<i>" without zero padding, so byte order differs from numeric order ("d10" < "d9").
    Run lengths go from 0 to 150 (k = 100 is sometimes longer than the run).
    """
    rng = np.random.default_rng(seed)
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(n_queries):
        qid = f"q{q}"
        universe = int(rng.integers(1, 200))
        length = int(min(universe, rng.choice([0, 1, 3, 8, 20, 60, 150])))
        docs = rng.choice(universe, size=length, replace=False)
        style = rng.integers(3)
        if style == 0:  # heavy ties
            scores = rng.integers(0, 3, size=length).astype(np.float64)
        elif style == 1:  # some ties
            scores = np.round(rng.normal(size=length), 1)
        else:  # continuous
            scores = rng.normal(size=length)
        run[qid] = {f"d{d}": float(s) for d, s in zip(docs, scores)}
        n_judged = int(rng.integers(1, min(universe, 40) + 1))
        judged = rng.choice(universe, size=n_judged, replace=False)
        max_grade = 1 if rng.random() < 0.5 else 3
        p_zero = rng.choice([0.3, 0.7, 1.0])  # 1.0: a query with no relevant document
        grades = np.where(rng.random(n_judged) < p_zero, 0, rng.integers(1, max_grade + 1, size=n_judged))
        qrels[qid] = {f"d{d}": int(g) for d, g in zip(judged, grades)}
    return run, qrels


def to_pools(run: dict, qrels: dict, qids: list[str], dtype=torch.float64):
    """Pools as the data package stores them: candidates in doc-id-descending byte order, 0-padded.

    Returns scores [Q, P], grades [Q, P], mask [Q, P], ideal_grades [Q, J].
    """
    P = max(1, max(len(run.get(q, {})) for q in qids))
    J = max(1, max(sum(g > 0 for g in qrels[q].values()) for q in qids))
    scores = torch.zeros(len(qids), P, dtype=dtype)
    grades = torch.zeros(len(qids), P)
    mask = torch.zeros(len(qids), P, dtype=torch.bool)
    ideal = torch.zeros(len(qids), J)
    for i, q in enumerate(qids):
        docs = sorted(run.get(q, {}), reverse=True)
        for p, d in enumerate(docs):
            scores[i, p] = run[q][d]
            grades[i, p] = qrels[q].get(d, 0)
            mask[i, p] = True
        positives = sorted((g for g in qrels[q].values() if g > 0), reverse=True)
        ideal[i, : len(positives)] = torch.tensor(positives, dtype=torch.float32)
    return scores, grades, mask, ideal
