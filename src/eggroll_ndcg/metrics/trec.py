"""Corpus-level evaluation with trec_eval semantics, and TREC run / qrels files.

Plain Python (no pytrec_eval at runtime; pytrec_eval is the test oracle). Semantics, as in trec_eval 9:

- A run is sorted by score descending, then doc id descending in byte order (trec_eval's tie rule; Python
  compares str by code point, which is the same order as UTF-8 bytes). The rank column of a run file is
  ignored, as trec_eval ignores it.
- A document is relevant when its grade is >= 1. NDCG gains are the grades themselves (linear), and the
  ideal DCG comes from all judged documents of the query, retrieved or not.
- Queries in the run but not in the qrels are skipped. Queries in the qrels but not in the run are skipped
  unless ``missing_as_zero=True`` (trec_eval ``-c``), which scores them as an empty ranking (every measure
  0) and averages over all qrels queries.
- A query that is in the qrels but has no relevant judged document is evaluated, and every measure is 0
  (pytrec_eval does the same: num_rel = 0 gives ndcg_cut, recall, map_cut and recip_rank of 0).

Measures are named ``name@k`` or ``name`` (no cut = the whole ranking), name in:

- ``ndcg``   = trec_eval ``ndcg_cut_k`` (``ndcg`` without a cut): DCG@k / IDCG@k, DCG@k = sum_{r<=k} g_r/log2(r+1).
- ``mrr``    = 1 / rank of the first relevant document if it is within the top k, else 0. Without a cut
  this is trec_eval ``recip_rank``; trec_eval has no cut version.
- ``recall`` = trec_eval ``recall_k``: relevant documents in the top k / all relevant judged documents.
- ``map``    = trec_eval ``map_cut_k`` (``map`` without a cut): sum over relevant documents at rank r <= k
  of Precision@r, divided by all relevant judged documents (retrieved or not).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]
PathLike = Union[str, os.PathLike]

NAMES = ("ndcg", "mrr", "recall", "map")
DEFAULT_MEASURES = ("ndcg@10", "mrr@10", "recall@100", "map@100")

__all__ = ["Evaluation", "evaluate", "evaluate_query", "parse_measure", "ranked_doc_ids", "read_run",
           "write_run", "read_qrels", "write_qrels", "DEFAULT_MEASURES"]


@dataclass(frozen=True)
class Evaluation:
    """Per-query values and their mean over the evaluated queries.

    ``per_query`` maps query id -> measure -> value; ``mean`` maps measure -> the mean over ``per_query``
    (0.0 when no query was evaluated).
    """

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    measures: tuple[str, ...] = field(default=())

    def values(self, measure: str, query_ids: Sequence[str] | None = None) -> list[float]:
        """The per-query values of one measure, in ``query_ids`` order (default: sorted query ids)."""
        ids = sorted(self.per_query) if query_ids is None else query_ids
        return [self.per_query[q][measure] for q in ids]


def parse_measure(measure: str) -> tuple[str, int | None]:
    """``"ndcg@10"`` -> ("ndcg", 10); ``"mrr"`` -> ("mrr", None). Raises ValueError on unknown names."""
    name, _, cut = measure.partition("@")
    if name not in NAMES:
        raise ValueError(f"unknown measure {measure!r}: use name@k with name in {NAMES}, e.g. 'ndcg@10'")
    if not cut:
        return name, None
    if not cut.isdigit() or int(cut) < 1:
        raise ValueError(f"bad cut in measure {measure!r}: k must be a positive integer")
    return name, int(cut)


def ranked_doc_ids(scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval order: score descending, then doc id descending (byte order)."""
    return [d for d, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def evaluate_query(ranking: Sequence[str], judged: Mapping[str, int], measures: Sequence[str]) -> dict[str, float]:
    """Measures of one ranked list of doc ids against the query's judgments (doc id -> grade)."""
    n_rel = sum(1 for g in judged.values() if g >= 1)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)
    out: dict[str, float] = {}
    for measure in measures:
        name, k = parse_measure(measure)
        top = ranking if k is None else ranking[:k]
        grades = [judged.get(d, 0) for d in top]
        if n_rel == 0:
            out[measure] = 0.0
        elif name == "ndcg":
            dcg = sum(g / math.log2(r + 2) for r, g in enumerate(grades) if g > 0)
            depth = len(ideal) if k is None else min(k, len(ideal))
            idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal[:depth]))
            out[measure] = dcg / idcg if idcg > 0 else 0.0
        elif name == "mrr":
            out[measure] = next((1.0 / (r + 1) for r, g in enumerate(grades) if g >= 1), 0.0)
        elif name == "recall":
            out[measure] = sum(1 for g in grades if g >= 1) / n_rel
        else:  # map
            hits, total = 0, 0.0
            for r, g in enumerate(grades):
                if g >= 1:
                    hits += 1
                    total += hits / (r + 1)
            out[measure] = total / n_rel
    return out


def evaluate(run: Run | PathLike, qrels: Qrels | PathLike, *, measures: Sequence[str] = DEFAULT_MEASURES,
             missing_as_zero: bool = False) -> Evaluation:
    """Evaluate a run against qrels with trec_eval semantics (see the module docstring).

    Args:
        run: {qid: {docid: score}} or the path of a TREC run file.
        qrels: {qid: {docid: grade}} or the path of a TREC qrels file.
        measures: e.g. ("ndcg@10", "mrr@10", "recall@100", "map@100").
        missing_as_zero: trec_eval ``-c``: qrels queries missing from the run count as 0 and are part of
            ``per_query`` and of the mean.
    """
    if not isinstance(run, Mapping):
        run = read_run(run)
    if not isinstance(qrels, Mapping):
        qrels = read_qrels(qrels)
    measures = tuple(measures)
    for m in measures:
        parse_measure(m)
    per_query: dict[str, dict[str, float]] = {}
    for qid in sorted(qrels):
        if qid in run:
            per_query[qid] = evaluate_query(ranked_doc_ids(run[qid]), qrels[qid], measures)
        elif missing_as_zero:
            per_query[qid] = evaluate_query([], qrels[qid], measures)
    n = len(per_query)
    mean = {m: (math.fsum(v[m] for v in per_query.values()) / n if n else 0.0) for m in measures}
    return Evaluation(per_query=per_query, mean=mean, measures=measures)


# ----------------------------------------------------------------------------------------------- file I/O


def _open_text(path: PathLike):
    """`path` opened for reading text; a name ending in .gz is read through gzip (as ir_measures does)."""
    return gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8")


def _lines(path: PathLike):
    with _open_text(path) as f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    yield lineno, line.split()
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{path}:{lineno + 1}: damaged gzip data ({error})") from None


def read_run(path: PathLike) -> Run:
    """Read a TREC run file, lines ``qid Q0 docid rank score tag``. The rank column is ignored (trec_eval).

    Raises ValueError naming the file and line for a wrong field count, a non-numeric or NaN score, a
    non-integer rank, or a document listed twice for the same query.
    """
    run: Run = {}
    for lineno, fields in _lines(path):
        where = f"{path}:{lineno}"
        if len(fields) != 6:
            raise ValueError(f"{where}: a run line needs 6 fields 'qid Q0 docid rank score tag', got {len(fields)}")
        qid, _, docid, rank, score, _ = fields
        try:
            int(rank)
            value = float(score)
        except ValueError:
            raise ValueError(f"{where}: rank must be an integer and score a number, got {rank!r} {score!r}") from None
        if math.isnan(value):
            raise ValueError(f"{where}: score is NaN")
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise ValueError(f"{where}: document {docid!r} appears twice for query {qid!r}")
        docs[docid] = value
    return run


def write_run(run: Mapping[str, Mapping[str, float]], path: PathLike, *, tag: str = "eggroll-ndcg",
              depth: int | None = None, compress: bool | None = None) -> None:
    """Write a TREC run file in trec_eval order (ranks 1..n), at most ``depth`` documents per query. With
    ``compress`` (default: the name ends in .gz) it is gzip-compressed with no timestamp, so the same run
    gives the same bytes.

    Scores are written with ``repr`` so that reading the file back gives the same floats (and ties).
    """
    if any(c.isspace() for c in tag) or not tag:
        raise ValueError(f"tag must be a non-empty word without spaces, got {tag!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lines = io.StringIO()
    for qid in sorted(run):
        ranking = ranked_doc_ids(run[qid])
        for rank, docid in enumerate(ranking[:depth] if depth is not None else ranking, start=1):
            lines.write(f"{qid} Q0 {docid} {rank} {float(run[qid][docid])!r} {tag}\n")
    data = lines.getvalue().encode("utf-8")
    if compress or (compress is None and str(path).endswith(".gz")):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    Path(path).write_bytes(data)


def read_qrels(path: PathLike) -> Qrels:
    """Read a TREC qrels file, lines ``qid 0 docid grade`` (integer grade).

    Raises ValueError naming the file and line for a wrong field count, a non-integer grade, or a document
    judged twice for the same query.
    """
    qrels: Qrels = {}
    for lineno, fields in _lines(path):
        where = f"{path}:{lineno}"
        if len(fields) != 4:
            raise ValueError(f"{where}: a qrels line needs 4 fields 'qid 0 docid grade', got {len(fields)}")
        qid, _, docid, grade = fields
        try:
            value = int(grade)
        except ValueError:
            raise ValueError(f"{where}: grade must be an integer, got {grade!r}") from None
        docs = qrels.setdefault(qid, {})
        if docid in docs:
            raise ValueError(f"{where}: document {docid!r} judged twice for query {qid!r}")
        docs[docid] = value
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: PathLike) -> None:
    """Write a TREC qrels file, one ``qid 0 docid grade`` line per judgment, sorted by query and doc id."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for qid in sorted(qrels):
            for docid in sorted(qrels[qid]):
                f.write(f"{qid} 0 {docid} {int(qrels[qid][docid])}\n")
