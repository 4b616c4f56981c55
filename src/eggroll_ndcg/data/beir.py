"""Load and validate a retrieval collection in BEIR format.

A BEIR folder holds::

    corpus.jsonl (or corpus.jsonl.gz)   {"_id": ..., "title": ..., "text": ...} per line
    queries.jsonl                       {"_id": ..., "text": ...} per line
    qrels/<split>.tsv                   header "query-id<TAB>corpus-id<TAB>score", then one judgment per line

`load_beir` reads it into a `Collection`. Malformed input raises `DataError`, whose message names the file and
the line. Suspicious but usable input (qrels that name unknown ids, duplicate rows) is kept or counted and
reported in `Collection.problems`; see the package README for the exact policy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["Collection", "DataError", "load_beir", "write_beir", "content_hash", "grade_levels"]


class DataError(ValueError):
    """A collection file is malformed. The message names the file and, where there is one, the line."""


@dataclass(frozen=True)
class Collection:
    """A retrieval collection: corpus, queries and graded judgments (the contract in docs/architecture.md)."""

    name: str
    doc_ids: tuple[str, ...]  # corpus order
    doc_texts: tuple[str, ...]  # text to encode: "title text" when a title exists
    query_texts: dict[str, str]  # query id -> text
    judgments: dict[str, dict[str, int]]  # query id -> doc id -> grade, merged over all qrels files
    split_queries: dict[str, tuple[str, ...]]  # qrels split name ("train", "test", ...) -> query ids
    problems: tuple[str, ...]  # human-readable warnings (dangling ids, ...)
    manifest: dict  # provenance: source, counts, content hash


# ---------------------------------------------------------------------------------------------- reading


def _open_text(path: Path):
    """Open a text file, transparently decompressing `.gz`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _label(path: Path, root: Path) -> str:
    """The file name shown in messages: relative to the collection folder, with the folder for context."""
    try:
        return f"{root.name}/{path.relative_to(root).as_posix()}"
    except ValueError:
        return str(path)


def _read_jsonl(path: Path, root: Path, *, kind: str) -> Iterator[tuple[int, str, str, str]]:
    """Yield (line number, id, title, text) for each record of a BEIR jsonl file; validate as we go."""
    label = _label(path, root)
    seen: dict[str, int] = {}
    records = 0
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{label}, line {number}: invalid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{label}, line {number}: expected a JSON object, got {type(record).__name__}")
                for field in ("_id", "text"):
                    if field not in record:
                        raise DataError(f"{label}, line {number}: missing field {field!r}")
                raw_id, text, title = record["_id"], record["text"], record.get("title") or ""
                if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
                    raise DataError(f"{label}, line {number}: '_id' must be a non-empty string, got {raw_id!r}")
                if not isinstance(text, str) or not isinstance(title, str):
                    raise DataError(f"{label}, line {number}: 'text' and 'title' must be strings")
                item_id = str(raw_id)
                if item_id in seen:
                    raise DataError(
                        f"{label}, line {number}: duplicate {kind} id {item_id!r} (first seen on line {seen[item_id]})"
                    )
                seen[item_id] = number
                records += 1
                yield number, item_id, title, text
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as error:
        raise DataError(f"{label}: cannot read ({error})") from None
    if records == 0:
        raise DataError(f"{label}, line 1: empty file (no {kind} records)")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _read_qrels(path: Path, root: Path) -> Iterator[tuple[int, str, str, int]]:
    """Yield (line number, query id, doc id, grade) for each row of a BEIR qrels file (CRLF tolerated).

    The first line is a header when its third column is not an integer (BEIR's "query-id corpus-id score").
    """
    label = _label(path, root)
    rows = 0
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != 3:
                    raise DataError(
                        f"{label}, line {number}: expected 3 tab-separated columns "
                        f"(query-id, corpus-id, score), found {len(fields)}"
                    )
                query_id, doc_id, score = fields
                if number == 1 and not _is_int(score.strip()):
                    continue  # header
                if not _is_int(score.strip()):
                    raise DataError(f"{label}, line {number}: grade {score!r} is not an integer")
                if not query_id or not doc_id:
                    raise DataError(f"{label}, line {number}: empty query or document id")
                rows += 1
                yield number, query_id, doc_id, int(score.strip())
    except UnicodeDecodeError as error:
        raise DataError(f"{label}: cannot read ({error})") from None
    if rows == 0:
        raise DataError(f"{label}, line 1: empty file (no judgments)")


# ---------------------------------------------------------------------------------------------- hashing


def content_hash(
    doc_ids: tuple[str, ...] | list[str],
    doc_texts: tuple[str, ...] | list[str],
    query_texts: dict[str, str],
    judgments: dict[str, dict[str, int]],
    split_queries: dict[str, tuple[str, ...]],
) -> str:
    """SHA-256 over a canonical form of the content (independent of file layout, compression and line ends)."""
    digest = hashlib.sha256()

    def put(value: object) -> None:
        digest.update(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")

    for doc_id, text in zip(doc_ids, doc_texts):
        put(["doc", doc_id, text])
    for query_id in sorted(query_texts):
        put(["query", query_id, query_texts[query_id]])
    for query_id in sorted(judgments):
        for doc_id in sorted(judgments[query_id]):
            put(["qrel", query_id, doc_id, judgments[query_id][doc_id]])
    for split in sorted(split_queries):
        put(["split", split, sorted(split_queries[split])])
    return "sha256:" + digest.hexdigest()


def grade_levels(collection: Collection) -> dict[int, int]:
    """Number of judgments per grade, ascending by grade."""
    counts = Counter(grade for docs in collection.judgments.values() for grade in docs.values())
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------------------------------- loading


def _find_corpus(root: Path) -> Path:
    candidates = [root / "corpus.jsonl", root / "corpus.jsonl.gz"]
    present = [path for path in candidates if path.is_file()]
    if not present:
        raise DataError(f"{root}: no corpus.jsonl or corpus.jsonl.gz")
    if len(present) > 1:
        raise DataError(f"{root}: both corpus.jsonl and corpus.jsonl.gz exist; keep one")
    return present[0]


def _examples(ids: set[str], limit: int = 3) -> str:
    shown = sorted(ids)[:limit]
    more = "" if len(ids) <= limit else ", ..."
    return ", ".join(repr(item) for item in shown) + more


def load_beir(path: str | Path, *, name: str | None = None) -> Collection:
    """Load and validate the BEIR folder at `path`.

    Raises `DataError` (naming file and line) for invalid JSON, a missing `_id` or `text`, duplicate ids, a
    non-integer grade, a wrong column count, an empty file, or a grade that two qrels files give differently.
    Qrels rows that name an unknown document stay in `judgments`; rows that name an unknown query are left out.
    Both are counted in `problems`.

    Example:
        >>> c = load_beir("/data/scifact")                    # doctest: +SKIP
        >>> len(c.doc_ids), {k: len(v) for k, v in c.split_queries.items()}   # doctest: +SKIP
        (5183, {'test': 300, 'train': 809})
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected a BEIR collection)")
    problems: list[str] = []

    # corpus
    corpus_path = _find_corpus(root)
    doc_ids: list[str] = []
    doc_texts: list[str] = []
    empty_docs = 0
    for _, doc_id, title, text in _read_jsonl(corpus_path, root, kind="document"):
        doc_ids.append(doc_id)
        doc_texts.append(f"{title} {text}" if title.strip() else text)
        empty_docs += not doc_texts[-1].strip()
    if empty_docs:
        problems.append(f"{_label(corpus_path, root)}: {empty_docs} documents have no text")

    # queries
    queries_path = root / "queries.jsonl"
    if not queries_path.is_file():
        raise DataError(f"{root}: no queries.jsonl")
    query_texts = {query_id: text for _, query_id, _, text in _read_jsonl(queries_path, root, kind="query")}
    empty_queries = sum(not text.strip() for text in query_texts.values())
    if empty_queries:
        problems.append(f"{_label(queries_path, root)}: {empty_queries} queries have no text (never split)")

    # qrels
    qrels_files = sorted((root / "qrels").glob("*.tsv"))
    if not qrels_files:
        raise DataError(f"{root}: no qrels/<split>.tsv files")
    known_docs = set(doc_ids)
    judgments: dict[str, dict[str, int]] = {}
    origin: dict[tuple[str, str], tuple[str, int]] = {}  # (query, doc) -> (file label, line) of first mention
    split_queries: dict[str, tuple[str, ...]] = {}
    for qrels_path in qrels_files:
        label = _label(qrels_path, root)
        in_file: dict[tuple[str, str], int] = {}
        split_ids: set[str] = set()
        unknown_doc_rows, unknown_docs = 0, set()
        unknown_query_rows, unknown_queries = 0, set()
        repeated_rows = 0
        for number, query_id, doc_id, grade in _read_qrels(qrels_path, root):
            key = (query_id, doc_id)
            if query_id not in query_texts:
                unknown_query_rows += 1
                unknown_queries.add(query_id)
                continue
            if key in in_file:
                first = in_file[key]
                if judgments[query_id][doc_id] != grade:
                    raise DataError(
                        f"{label}, line {number}: grade {grade} for ({query_id!r}, {doc_id!r}) conflicts with "
                        f"grade {judgments[query_id][doc_id]} on line {first}"
                    )
                repeated_rows += 1
                continue
            in_file[key] = number
            split_ids.add(query_id)
            if doc_id not in known_docs:
                unknown_doc_rows += 1
                unknown_docs.add(doc_id)
            if key in origin:
                other_label, other_line = origin[key]
                if judgments[query_id][doc_id] != grade:
                    raise DataError(
                        f"{label}, line {number}: grade {grade} for ({query_id!r}, {doc_id!r}) conflicts with "
                        f"grade {judgments[query_id][doc_id]} in {other_label}, line {other_line}"
                    )
                continue
            origin[key] = (label, number)
            judgments.setdefault(query_id, {})[doc_id] = grade
        split_queries[qrels_path.stem] = tuple(sorted(split_ids))
        if unknown_doc_rows:
            problems.append(
                f"{label}: {unknown_doc_rows} rows name {len(unknown_docs)} documents missing from the corpus "
                f"({_examples(unknown_docs)}); kept in judgments, they count in the ideal DCG"
            )
        if unknown_query_rows:
            problems.append(
                f"{label}: {unknown_query_rows} rows name {len(unknown_queries)} queries missing from "
                f"queries.jsonl ({_examples(unknown_queries)}); left out of judgments"
            )
        if repeated_rows:
            problems.append(f"{label}: {repeated_rows} repeated rows (same query, document and grade) ignored")

    counts = {
        "docs": len(doc_ids),
        "queries": len(query_texts),
        "judged_queries": len(judgments),
        "judgments": sum(len(docs) for docs in judgments.values()),
        "splits": {split: len(ids) for split, ids in split_queries.items()},
    }
    manifest: dict = {
        "name": name or root.name,
        "format": "beir",
        "source": str(root.resolve()),
        "files": [_label(p, root) for p in [corpus_path, queries_path, *qrels_files]],
        "counts": counts,
        "content_hash": content_hash(doc_ids, doc_texts, query_texts, judgments, split_queries),
    }
    build_manifest = root / "manifest.json"
    if build_manifest.is_file():
        try:
            manifest["build"] = json.loads(build_manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(f"{_label(build_manifest, root)}, line {error.lineno}: invalid JSON ({error.msg})") from None
    return Collection(
        name=name or root.name,
        doc_ids=tuple(doc_ids),
        doc_texts=tuple(doc_texts),
        query_texts=query_texts,
        judgments=judgments,
        split_queries=split_queries,
        problems=tuple(problems),
        manifest=manifest,
    )


# ---------------------------------------------------------------------------------------------- writing


def write_beir(
    target: str | Path,
    *,
    docs: Iterable[tuple[str, str, str]],
    queries: Iterable[tuple[str, str]],
    qrels: dict[str, Iterable[tuple[str, str, int]]],
    manifest: dict | None = None,
) -> Path:
    """Write a BEIR folder atomically: build it in a temp folder beside `target`, then rename it into place.

    `docs` yields (id, title, text), `queries` (id, text), `qrels` maps a split name to (query, doc, grade) rows.
    If another process finished the same folder first, its copy is kept. Returns `target`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private
    try:
        with open(staging / "corpus.jsonl", "w", encoding="utf-8", newline="\n") as handle:
            for doc_id, title, text in docs:
                handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
        with open(staging / "queries.jsonl", "w", encoding="utf-8", newline="\n") as handle:
            for query_id, text in queries:
                handle.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
        (staging / "qrels").mkdir()
        for split, rows in qrels.items():
            with open(staging / "qrels" / f"{split}.tsv", "w", encoding="utf-8", newline="\n") as handle:
                handle.write("query-id\tcorpus-id\tscore\n")
                for query_id, doc_id, grade in rows:
                    handle.write(f"{query_id}\t{doc_id}\t{int(grade)}\n")
        if manifest is not None:
            text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
            (staging / "manifest.json").write_text(text, encoding="utf-8")
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "queries.jsonl").is_file():  # not a concurrent writer that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
