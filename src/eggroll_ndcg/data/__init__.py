"""Collections in: BEIR loading and validation, the source registry, the embedded stdlib-code, query splits.

(Retrieval, candidate pools and BM25 live in `data.retrieval`, `data.pools` and `data.bm25`.)
"""

from .beir import Collection, DataError, content_hash, grade_levels, load_beir, write_beir
from .sources import (
    HUB_SOURCES,
    OfflineError,
    SourceInfo,
    UnknownSourceError,
    is_known_source,
    list_sources,
    resolve,
)
from .splits import QuerySplits, eligible_queries, make_splits, split_query_ids
from .stdlib_code import build_stdlib_code, load_stdlib_code

__all__ = [
    "Collection",
    "DataError",
    "content_hash",
    "grade_levels",
    "load_beir",
    "write_beir",
    "HUB_SOURCES",
    "OfflineError",
    "SourceInfo",
    "UnknownSourceError",
    "is_known_source",
    "list_sources",
    "resolve",
    "QuerySplits",
    "eligible_queries",
    "make_splits",
    "split_query_ids",
    "build_stdlib_code",
    "load_stdlib_code",
]
