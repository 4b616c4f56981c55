"""BEIR qrels files: parse `qrels/<split>.tsv` and merge several of them into one set of judgments.

A qrels file is tab-separated, `query-id  corpus-id  score`, one judgment a line. Line 1 is a header only when
it names the columns (`is_header`: header names in all three columns, and a score column that is not a
number); otherwise it is data, and a bad grade there is an error like anywhere else. A grade is a plain decimal
integer with an optional sign (`parse_grade`): `1.0`, `1_0`, `high` or `١` are errors, not guesses.

Fractional grades (`0.5`, soft labels for likely false negatives, see `data.soft_labels`) are read only where
the caller allows them (`read_qrels(..., fractional=True)`, `read_qrels_file`; the trainer's `train_qrels`
file): a plain decimal with a dot (`parse_fractional_grade`), finite, no exponent. Elsewhere (the BEIR
loader, test and validation judgments) a fractional grade is an error naming the file and line.

`merge_qrels` applies the loader's policy (see the package README): rows naming an unknown document are kept
and counted, rows naming an unknown query are left out and counted, queries with empty text are judged but
never put in a split, and a split left with no query is recorded in the problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .textfiles import DataError, file_label, read_lines

__all__ = ["QrelsMerge", "is_header", "parse_grade", "parse_fractional_grade", "read_qrels", "read_qrels_file",
           "merge_qrels"]

QUERY_COLUMN_NAMES = frozenset({"query-id", "query_id", "queryid", "qid", "query"})
DOC_COLUMN_NAMES = frozenset({"corpus-id", "corpus_id", "corpusid", "doc-id", "doc_id", "docid", "docno", "corpus"})
SCORE_COLUMN_NAMES = frozenset({"score", "relevance", "grade", "label", "rel"})
_GRADE = re.compile(r"[+-]?[0-9]+")
_FRACTIONAL = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)")


def parse_grade(text: str) -> int | None:
    """The integer grade written in `text` (surrounding spaces allowed), or None if it is not a plain integer."""
    stripped = text.strip()
    return int(stripped) if _GRADE.fullmatch(stripped) else None


def parse_fractional_grade(text: str) -> int | float | None:
    """The grade written in `text` when it is a plain integer (-> int) or a plain decimal with a dot (`0.5`,
    `.25`, `1.` -> float), else None (no exponent, no `nan`/`inf`, no digit separators)."""
    stripped = text.strip()
    if _GRADE.fullmatch(stripped):
        return int(stripped)
    return float(stripped) if _FRACTIONAL.fullmatch(stripped) else None


def is_header(fields: list[str]) -> bool:
    """True when the three columns are header names (BEIR's `query-id corpus-id score` and common variants)."""
    query, doc, score = (column.strip().lower() for column in fields)
    return query in QUERY_COLUMN_NAMES and doc in DOC_COLUMN_NAMES and score in SCORE_COLUMN_NAMES


def read_qrels(path: Path, root: Path, *, fractional: bool = False) -> Iterator[tuple[int, str, str, int | float]]:
    """Yield (line number, query id, doc id, grade) for each row of a BEIR qrels file (CRLF tolerated).

    With `fractional`, grades such as `0.5` are accepted (an integral value stays an `int`); without it a
    fractional grade is a `DataError` naming the file and line, and saying where such grades are allowed."""
    label = file_label(path, root)
    rows = 0
    for number, line in read_lines(path, label):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(
                f"{label}, line {number}: expected 3 tab-separated columns "
                f"(query-id, corpus-id, score), found {len(fields)}"
            )
        if number == 1 and is_header(fields):
            continue
        query_id, doc_id, score = fields
        grade = parse_fractional_grade(score) if fractional else parse_grade(score)
        if grade is None and parse_fractional_grade(score) is not None:
            raise DataError(f"{label}, line {number}: grade {score!r} is not an integer (fractional grades are "
                            "allowed only in a training qrels file, config field 'train_qrels')")
        if grade is None:
            raise DataError(f"{label}, line {number}: grade {score!r} is not "
                            + ("a number" if fractional else "an integer"))
        if not query_id or not doc_id:
            raise DataError(f"{label}, line {number}: empty query or document id")
        rows += 1
        yield number, query_id, doc_id, grade
    if rows == 0:
        raise DataError(f"{label}, line 1: empty file (no judgments)")


def read_qrels_file(path: str | Path, *, fractional: bool = True) -> dict[str, dict[str, int | float]]:
    """{query id: {doc id: grade}} of one qrels TSV (fractional grades allowed by default); a pair given twice
    with different grades is a `DataError` naming both lines."""
    path = Path(path)
    judgments: dict[str, dict[str, int | float]] = {}
    lines: dict[tuple[str, str], int] = {}
    label = file_label(path, path.parent)
    for number, query_id, doc_id, grade in read_qrels(path, path.parent, fractional=fractional):
        previous = judgments.setdefault(query_id, {}).get(doc_id)
        if previous is not None and previous != grade:
            raise DataError(f"{label}, line {number}: grade {grade} for ({query_id!r}, {doc_id!r}) conflicts "
                            f"with grade {previous} on line {lines[query_id, doc_id]}")
        judgments[query_id][doc_id] = grade
        lines.setdefault((query_id, doc_id), number)
    return judgments


def examples(ids: set[str], limit: int = 3) -> str:
    """Up to `limit` of `ids`, sorted and quoted, for a message."""
    shown = sorted(ids)[:limit]
    more = "" if len(ids) <= limit else ", ..."
    return ", ".join(repr(item) for item in shown) + more


@dataclass
class QrelsMerge:
    """The judgments of several qrels files, merged; `add_file` reads one more."""

    query_texts: dict[str, str]
    known_docs: set[str]
    root: Path
    judgments: dict[str, dict[str, int]] = field(default_factory=dict)
    split_queries: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    origin: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)  # first (file, line) per pair

    def _record(self, label: str, number: int, query_id: str, doc_id: str, grade: int) -> None:
        """Add one new (query, doc) row of file `label`; a grade that another file gave differently is an error."""
        key = (query_id, doc_id)
        if key in self.origin:
            other_label, other_line = self.origin[key]
            if self.judgments[query_id][doc_id] != grade:
                raise DataError(
                    f"{label}, line {number}: grade {grade} for ({query_id!r}, {doc_id!r}) conflicts with "
                    f"grade {self.judgments[query_id][doc_id]} in {other_label}, line {other_line}"
                )
            return
        self.origin[key] = (label, number)
        self.judgments.setdefault(query_id, {})[doc_id] = grade

    def add_file(self, path: Path) -> None:
        """Read the qrels file `path` into the merge: its split is named after the file's stem."""
        label = file_label(path, self.root)
        in_file: dict[tuple[str, str], int] = {}
        split_ids: set[str] = set()
        unknown_docs: set[str] = set()
        unknown_queries: set[str] = set()
        unknown_doc_rows = unknown_query_rows = repeated_rows = 0
        for number, query_id, doc_id, grade in read_qrels(path, self.root):
            key = (query_id, doc_id)
            if query_id not in self.query_texts:
                unknown_query_rows += 1
                unknown_queries.add(query_id)
                continue
            if key in in_file:
                if self.judgments[query_id][doc_id] != grade:
                    raise DataError(
                        f"{label}, line {number}: grade {grade} for ({query_id!r}, {doc_id!r}) conflicts with "
                        f"grade {self.judgments[query_id][doc_id]} on line {in_file[key]}"
                    )
                repeated_rows += 1
                continue
            in_file[key] = number
            split_ids.add(query_id)
            if doc_id not in self.known_docs:
                unknown_doc_rows += 1
                unknown_docs.add(doc_id)
            self._record(label, number, query_id, doc_id, grade)
        if unknown_doc_rows:
            self.problems.append(
                f"{label}: {unknown_doc_rows} rows name {len(unknown_docs)} documents missing from the corpus "
                f"({examples(unknown_docs)}); kept in judgments, they count in the ideal DCG"
            )
        if unknown_query_rows:
            self.problems.append(
                f"{label}: {unknown_query_rows} rows name {len(unknown_queries)} queries missing from "
                f"queries.jsonl ({examples(unknown_queries)}); left out of judgments"
            )
        if repeated_rows:
            self.problems.append(f"{label}: {repeated_rows} repeated rows (same query, document and grade) ignored")
        self._finish_split(path.stem, label, split_ids)

    def _finish_split(self, split: str, label: str, split_ids: set[str]) -> None:
        """Store the split's queries with text; count the empty-text ones; record a split left with none."""
        textless = {query_id for query_id in split_ids if not self.query_texts[query_id].strip()}
        self.split_queries[split] = tuple(sorted(split_ids - textless))
        if textless:
            self.problems.append(
                f"{label}: {len(textless)} judged queries have empty text ({examples(textless)}); "
                f"left out of split {split!r}"
            )
        if not self.split_queries[split]:
            self.problems.append(f"{label}: split {split!r} has no query with text; it cannot be evaluated")


def merge_qrels(paths: list[Path], root: Path, query_texts: dict[str, str], known_docs: set[str]) -> QrelsMerge:
    """Read and merge the qrels files `paths` (in order) of the collection at `root`."""
    merge = QrelsMerge(query_texts=query_texts, known_docs=known_docs, root=root)
    for path in paths:
        merge.add_file(path)
    return merge
