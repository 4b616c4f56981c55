"""Soft labels for likely false negatives: an ensemble of judges votes on documents judged negative or unjudged.

Inputs: J judges' scores S_j [Q, D] and 1-based ranks R_j [Q, D] (`data.judges`), and the *visible* judgments
(the qrels the trainer may see). Per judge and query the *reference* is the weakest visible positive
(grade >= 1): ref_j(q) = min over visible positives p of S_j(q, p) (its rank: the largest R_j(q, p)).
Every rule is positive-aware: it compares a candidate with that reference, as sentence-transformers'
`mine_hard_negatives` does (a negative must score below `(1 - relative_margin) * s(pos)` and below
`s(pos) - absolute_margin`; NV-Retriever's "TopK-PercPos 95%" is relative_margin 0.05). A document that
clears the margins is "too close to the positive to be a safe negative", i.e. a likely false negative.

Candidates of query q: documents in the top `depth` of at least one judge, not visible positives, not the
query's own id (BEIR's identical-id rule); queries with no visible positive in the corpus have none.

Rules (detector score c(q, d); a candidate is flagged when c >= threshold):

- ``votes``: c = sum_j [R_j(q,d) <= k] * [S_j(q,d) >= ref_j(q) - relative_margin * |ref_j(q)| - absolute_margin],
  the number of judges that put d in their top k *and* score it within the margins of the weakest positive.
  Thresholds 1..J ("most of them": >= ceil((J+1)/2)). Scale-free in k; the margin is per judge.
- ``rrf``: reciprocal-rank fusion f(q,d) = sum_j 1 / (rrf_c + R_j(q,d)) (rrf_c = 60, Cormack et al. 2009),
  relative to the weakest visible positive's fused score: c = f(q,d) / min_p f(q,p). c >= 1 means d is
  fused above a judged positive.
- ``calibrated``: each judge's scores are standardized per query over the corpus, z_j = (S_j - mean) / std,
  which puts cosines and BM25 on one scale; c = mean_j (z_j(q,d) - z_j(q, ref_j)), the mean distance in
  standard deviations above the weakest positive (c >= -0.5: within half a std of it).

A flagged document gets the soft grade `soft_grade` (0.5: partial credit, as the reference system proposes)
unless the visible judgments already grade it >= 1. `soft_qrels` returns the visible judgments plus these
grades; `write_soft_labels` writes them as a BEIR qrels TSV (fractional grades, readable with
`data.qrels.read_qrels_file` and the trainer's `train_qrels`) plus a provenance JSON, each atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..atomic import write_json_atomic, write_text_atomic
from .judges import JudgeScores

__all__ = ["RULES", "DetectorSettings", "JudgeStack", "Rule", "detector_scores", "format_grade", "soft_qrels",
           "stack_judges", "write_soft_labels"]


@dataclass(frozen=True)
class DetectorSettings:
    """The knobs shared by the rules (module docstring)."""

    depth: int = 100                # candidates: the top `depth` of at least one judge
    top_k: int = 10                 # votes: a judge votes only for its top k
    relative_margin: float = 0.05   # votes: within 5% of the weakest positive (TopK-PercPos 95%)
    absolute_margin: float = 0.0    # votes: and within this much below it
    rrf_c: float = 60.0             # rrf: the fusion constant


@dataclass(frozen=True)
class JudgeStack:
    """J judges on the same queries: scores / ranks [J, Q, D]; `visible` [Q, D] True at visible positives;
    `candidate` [Q, D] True where a rule may flag (module docstring)."""

    judges: tuple[str, ...]
    query_ids: tuple[str, ...]
    doc_ids: tuple[str, ...]
    scores: np.ndarray
    ranks: np.ndarray
    visible: np.ndarray
    candidate: np.ndarray
    identities: dict[str, str] = field(default_factory=dict)


def stack_judges(judged: Sequence[JudgeScores], doc_ids: Sequence[str],
                 visible_judgments: Mapping[str, Mapping[str, float]], *, depth: int) -> JudgeStack:
    """Stack the judges' matrices (same `query_ids`) and mark visible positives and candidates."""
    query_ids = judged[0].query_ids
    if any(j.query_ids != query_ids for j in judged):
        raise ValueError("the judges scored different queries")
    doc_row = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    visible = np.zeros((len(query_ids), len(doc_ids)), dtype=bool)
    own = np.zeros_like(visible)
    for q, qid in enumerate(query_ids):
        for doc_id, grade in visible_judgments.get(qid, {}).items():
            if grade >= 1 and doc_id in doc_row:
                visible[q, doc_row[doc_id]] = True
        if qid in doc_row and not visible[q, doc_row[qid]]:
            own[q, doc_row[qid]] = True
    ranks = np.stack([j.ranks for j in judged])
    candidate = (ranks.min(axis=0) <= depth) & ~visible & ~own & visible.any(axis=1, keepdims=True)
    return JudgeStack(judges=tuple(j.name for j in judged), query_ids=query_ids, doc_ids=tuple(doc_ids),
                      scores=np.stack([j.scores for j in judged]).astype(np.float64), ranks=ranks,
                      visible=visible, candidate=candidate, identities={j.name: j.identity for j in judged})


def _reference(values: np.ndarray, visible: np.ndarray, *, weakest: str) -> np.ndarray:
    """Per leading index, the min ("min") or max ("max") of `values` [..., Q, D] over the visible positives
    [Q, D] -> [..., Q, 1]; NaN for a query without one."""
    fill = np.inf if weakest == "min" else -np.inf
    masked = np.where(visible, values, fill)
    ref = masked.min(axis=-1, keepdims=True) if weakest == "min" else masked.max(axis=-1, keepdims=True)
    return np.where(np.isfinite(ref), ref, np.nan)


def _votes(stack: JudgeStack, s: DetectorSettings) -> np.ndarray:
    ref = _reference(stack.scores, stack.visible, weakest="min")                        # [J, Q, 1]
    close = stack.scores >= ref - s.relative_margin * np.abs(ref) - s.absolute_margin  # NaN ref -> False
    return ((stack.ranks <= s.top_k) & close).sum(axis=0).astype(np.float64)          # [Q, D]


def _rrf(stack: JudgeStack, s: DetectorSettings) -> np.ndarray:
    fused = (1.0 / (s.rrf_c + stack.ranks.astype(np.float64))).sum(axis=0)            # [Q, D]
    return fused / _reference(fused, stack.visible, weakest="min")


def _calibrated(stack: JudgeStack, s: DetectorSettings) -> np.ndarray:
    mean = stack.scores.mean(axis=-1, keepdims=True)
    std = stack.scores.std(axis=-1, keepdims=True)
    z = (stack.scores - mean) / np.where(std > 0, std, 1.0)                           # [J, Q, D]
    return (z - _reference(z, stack.visible, weakest="min")).mean(axis=0)


@dataclass(frozen=True)
class Rule:
    """A detector rule: `score(stack, settings)` -> c [Q, D]; flagged where c >= threshold."""

    name: str
    score: Callable[[JudgeStack, DetectorSettings], np.ndarray]
    default_threshold: Callable[[int], float]        # from the number of judges
    thresholds: Callable[[int], tuple[float, ...]]   # the precision-recall sweep
    summary: str


RULES: dict[str, Rule] = {
    "votes": Rule("votes", _votes, lambda j: float(math.ceil((j + 1) / 2)),
                  lambda j: tuple(float(v) for v in range(1, j + 1)),
                  "judges with the document in their top k and within the margins of the weakest positive"),
    "rrf": Rule("rrf", _rrf, lambda j: 0.9, lambda j: (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1),
                "reciprocal-rank fusion relative to the weakest positive's"),
    "calibrated": Rule("calibrated", _calibrated, lambda j: -0.5,
                       lambda j: (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0),
                       "mean per-query z-score above the weakest positive's"),
}


def detector_scores(stack: JudgeStack, rule: str, settings: DetectorSettings = DetectorSettings()) -> np.ndarray:
    """c [Q, D] of `rule` (float64), -inf outside the candidates."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from {', '.join(RULES)}")
    values = RULES[rule].score(stack, settings)
    return np.where(stack.candidate & np.isfinite(values), values, -np.inf)


def soft_qrels(stack: JudgeStack, scores: np.ndarray, threshold: float,
               visible_judgments: Mapping[str, Mapping[str, float]], *, soft_grade: float = 0.5,
               ) -> tuple[dict[str, dict[str, float]], int]:
    """(the visible judgments of the stack's queries plus `soft_grade` for every flagged candidate whose
    visible grade is below 1, the number of soft grades given)."""
    if not 0 < soft_grade < 1:
        raise ValueError(f"soft_grade must be in (0, 1), got {soft_grade}")
    qrels: dict[str, dict[str, float]] = {}
    given = 0
    for q, qid in enumerate(stack.query_ids):
        row = dict(visible_judgments.get(qid, {}))
        for d in np.flatnonzero(scores[q] >= threshold).tolist():
            doc_id = stack.doc_ids[d]
            if row.get(doc_id, 0) < 1:
                row[doc_id] = soft_grade
                given += 1
        if row:
            qrels[qid] = row
    return qrels, given


def format_grade(grade: float) -> str:
    """An integral grade as an integer ("1"), a fractional one as the shortest decimal ("0.5")."""
    return str(int(grade)) if float(grade).is_integer() else repr(float(grade))


def write_soft_labels(out_dir: str | Path, qrels: Mapping[str, Mapping[str, float]], provenance: dict, *,
                      name: str = "train") -> tuple[Path, Path]:
    """Write `<out_dir>/<name>.tsv` (BEIR qrels, header, rows sorted by query and doc id) and
    `<out_dir>/<name>.provenance.json`, each atomically. Returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"]
    for qid in sorted(qrels):
        lines += [f"{qid}\t{doc_id}\t{format_grade(grade)}" for doc_id, grade in sorted(qrels[qid].items())]
    tsv, meta = out / f"{name}.tsv", out / f"{name}.provenance.json"
    write_text_atomic(tsv, "\n".join(lines) + "\n")
    write_json_atomic(meta, provenance)
    return tsv, meta


def training_judgments(judgments: Mapping[str, Mapping[str, float]], train_ids: Sequence[str],
                       train_qrels: str | Path | None, *, pool_denoise: bool = False,
                       ) -> tuple[dict[str, dict[str, float]], dict[str, set[str]]]:
    """What the trainer may see of the training queries `train_ids`: (judgments, documents to drop).

    Without `train_qrels`: the collection's `judgments` of the training queries, nothing dropped. With it:
    the file's judgments *replace* theirs (fractional grades allowed; a training query missing from the file
    is a `DataError`, so no other judgment can slip in); with `pool_denoise`, its fractional grades
    (0 < g < 1, likely false negatives) are removed from the judgments and returned as documents to drop
    from the pools (neither positive nor negative). Only training queries are in the result: validation and
    test queries are always scored against the collection's original judgments.
    """
    from .qrels import read_qrels_file
    from .textfiles import DataError

    if train_qrels is None:
        return {qid: dict(judgments.get(qid, {})) for qid in train_ids}, {}
    path = Path(train_qrels).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: train_qrels file not found")
    given = read_qrels_file(path, fractional=True)
    missing = [qid for qid in train_ids if qid not in given]
    if missing:
        raise DataError(f"{path}: no judgments for {len(missing)} of the {len(train_ids)} training queries "
                        f"(e.g. {', '.join(map(repr, missing[:3]))}); soft-label every training query")
    view, dropped = {}, {}
    for qid in train_ids:
        row = {doc: float(g) if not float(g).is_integer() else int(g) for doc, g in given[qid].items()}
        if pool_denoise:
            dropped[qid] = {doc for doc, g in row.items() if 0 < g < 1}
            row = {doc: g for doc, g in row.items() if doc not in dropped[qid]}
        view[qid] = row
    return view, dropped
