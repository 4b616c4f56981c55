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

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .qrels import merge_qrels
from .textfiles import DataError, file_label, read_lines, require_file

__all__ = ["Collection", "DataError", "load_beir", "write_beir", "content_hash", "grade_levels"]


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


def _check_record(record: object, label: str, number: int) -> tuple[str, str, str]:
    """(id, title, text) of one parsed jsonl record, or `DataError` naming what is wrong with it."""
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
    return str(raw_id), title, text


def _read_jsonl(path: Path, root: Path, *, kind: str) -> Iterator[tuple[int, str, str, str]]:
    """Yield (line number, id, title, text) for each record of a BEIR jsonl file; validate as we go."""
    label = file_label(path, root)
    seen: dict[str, int] = {}
    for number, line in read_lines(path, label):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{label}, line {number}: invalid JSON ({error.msg})") from None
        item_id, title, text = _check_record(record, label, number)
        if item_id in seen:
            raise DataError(
                f"{label}, line {number}: duplicate {kind} id {item_id!r} (first seen on line {seen[item_id]})"
            )
        seen[item_id] = number
        yield number, item_id, title, text
    if not seen:
        raise DataError(f"{label}, line 1: empty file (no {kind} records)")


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
    """The corpus file of the folder: `corpus.jsonl` or `corpus.jsonl.gz` (exactly one of them)."""
    candidates = [root / "corpus.jsonl", root / "corpus.jsonl.gz"]
    present = [path for path in candidates if path.exists()]
    if not present:
        raise DataError(f"{root}: no corpus.jsonl or corpus.jsonl.gz")
    if len(present) > 1:
        raise DataError(f"{root}: both corpus.jsonl and corpus.jsonl.gz exist; keep one")
    require_file(present[0], file_label(present[0], root))
    return present[0]


def _read_corpus(path: Path, root: Path) -> tuple[list[str], list[str], list[str]]:
    """(doc ids, doc texts, problems) of the corpus file; a text is "title text" when the title is non-empty."""
    doc_ids: list[str] = []
    doc_texts: list[str] = []
    for _, doc_id, title, text in _read_jsonl(path, root, kind="document"):
        doc_ids.append(doc_id)
        doc_texts.append(f"{title} {text}" if title.strip() else text)
    empty = sum(not text.strip() for text in doc_texts)
    problems = [f"{file_label(path, root)}: {empty} documents have no text"] if empty else []
    return doc_ids, doc_texts, problems


def _read_queries(path: Path, root: Path) -> tuple[dict[str, str], list[str]]:
    """(query id -> text, problems) of `queries.jsonl`."""
    if not path.exists():
        raise DataError(f"{root}: no queries.jsonl")
    query_texts = {query_id: text for _, query_id, _, text in _read_jsonl(path, root, kind="query")}
    empty = sum(not text.strip() for text in query_texts.values())
    problems = [f"{file_label(path, root)}: {empty} queries have no text (never split)"] if empty else []
    return query_texts, problems


def _qrels_files(root: Path) -> list[Path]:
    """The `qrels/<split>.tsv` files of the folder, sorted; at least one."""
    files = sorted((root / "qrels").glob("*.tsv"))
    if not files:
        raise DataError(f"{root}: no qrels/<split>.tsv files")
    return files


def _build_manifest(root: Path, name: str, files: list[Path], parts: dict) -> dict:
    """Provenance of a loaded folder: source, files, counts, content hash and any build `manifest.json`."""
    judgments, split_queries = parts["judgments"], parts["split_queries"]
    manifest: dict = {
        "name": name,
        "format": "beir",
        "source": str(root.resolve()),
        "files": [file_label(path, root) for path in files],
        "counts": {
            "docs": len(parts["doc_ids"]),
            "queries": len(parts["query_texts"]),
            "judged_queries": len(judgments),
            "judgments": sum(len(docs) for docs in judgments.values()),
            "splits": {split: len(ids) for split, ids in split_queries.items()},
        },
        "content_hash": content_hash(**parts),
    }
    build_manifest = root / "manifest.json"
    if build_manifest.is_file():
        try:
            manifest["build"] = json.loads(build_manifest.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as error:
            label = file_label(build_manifest, root)
            raise DataError(f"{label}, line {error.lineno}: invalid JSON ({error.msg})") from None
        except (UnicodeDecodeError, OSError) as error:
            raise DataError(f"{file_label(build_manifest, root)}: cannot read ({error})") from None
    return manifest


def load_beir(path: str | Path, *, name: str | None = None) -> Collection:
    """Load and validate the BEIR folder at `path`.

    Raises `DataError` (naming file and line) for invalid JSON, a missing `_id` or `text`, duplicate ids, a
    non-integer grade, a wrong column count, an empty file, a non-UTF-8 byte, a folder where a file should be,
    or a grade that two qrels files give differently. A UTF-8 byte-order mark is ignored. Qrels rows that name
    an unknown document stay in `judgments`; rows that name an unknown query are left out; queries with empty
    text are in no split; a split left with no query is kept (empty). All of these are counted in `problems`.

    Example:
        >>> c = load_beir("/data/scifact")                    # doctest: +SKIP
        >>> len(c.doc_ids), {k: len(v) for k, v in c.split_queries.items()}   # doctest: +SKIP
        (5183, {'test': 300, 'train': 809})
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected a BEIR collection)")
    corpus_path, queries_path = _find_corpus(root), root / "queries.jsonl"
    doc_ids, doc_texts, corpus_problems = _read_corpus(corpus_path, root)
    query_texts, query_problems = _read_queries(queries_path, root)
    qrels_files = _qrels_files(root)
    merged = merge_qrels(qrels_files, root, query_texts, set(doc_ids))
    parts = {
        "doc_ids": doc_ids, "doc_texts": doc_texts, "query_texts": query_texts,
        "judgments": merged.judgments, "split_queries": merged.split_queries,
    }
    name = name or root.name
    return Collection(
        name=name,
        doc_ids=tuple(doc_ids),
        doc_texts=tuple(doc_texts),
        query_texts=query_texts,
        judgments=merged.judgments,
        split_queries=merged.split_queries,
        problems=tuple(corpus_problems + query_problems + merged.problems),
        manifest=_build_manifest(root, name, [corpus_path, queries_path, *qrels_files], parts),
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
