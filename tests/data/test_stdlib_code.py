"""The embedded stdlib-code collection: construction rules, determinism, no docstrings in documents, caching."""

from __future__ import annotations

import ast
import json
import sys

import pytest

from eggroll_ndcg.data import stdlib_code
from eggroll_ndcg.data.beir import Collection, load_beir
from eggroll_ndcg.data.sources import resolve
from eggroll_ndcg.data.stdlib_code import build_stdlib_code, load_stdlib_code


@pytest.fixture(scope="session")
def stdlib_collection(tmp_path_factory) -> Collection:
    """Built once per session, in the same cache the autouse fixture points EGGROLL_NDCG_CACHE at."""
    return load_stdlib_code(cache_root=tmp_path_factory.getbasetemp() / "embedding-cache")


def test_build_is_deterministic(stdlib_collection, tmp_path):
    again = load_beir(build_stdlib_code(tmp_path / "second"))
    assert again.manifest["content_hash"] == stdlib_collection.manifest["content_hash"]
    assert again.manifest["build"]["content_hash"] == again.manifest["content_hash"]
    assert again.doc_ids == stdlib_collection.doc_ids


def test_manifest_records_python_version_counts_and_hash(stdlib_collection):
    build = stdlib_collection.manifest["build"]
    assert build["python"] == sys.version.split()[0]
    assert build["counts"]["docs"] == len(stdlib_collection.doc_ids)
    assert build["counts"]["queries"] == len(stdlib_collection.query_texts)
    assert build["content_hash"].startswith("sha256:")


def test_size_is_in_the_expected_range(stdlib_collection):
    # ~5,000 functions and ~4,400 distinct queries on CPython 3.11; other versions differ a little
    assert 3000 <= len(stdlib_collection.doc_ids) <= 8000
    assert 2500 <= len(stdlib_collection.query_texts) <= len(stdlib_collection.doc_ids)


def test_documents_are_code_without_docstrings(stdlib_collection):
    for doc_id, text in zip(stdlib_collection.doc_ids, stdlib_collection.doc_texts):
        function = ast.parse(text).body[0]
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)), doc_id
        assert ast.get_docstring(function) is None, doc_id
        assert function.name == doc_id.rsplit(".", 1)[-1].split(":")[-1]


def test_each_query_has_one_relevant_document_its_own_function(stdlib_collection):
    assert stdlib_collection.problems == ()
    for query_id, text in stdlib_collection.query_texts.items():
        assert stdlib_collection.judgments[query_id] == {query_id: 1}
        assert len(text.split()) >= stdlib_collection.manifest["build"]["rules"]["min_summary_words"]
    summaries = list(stdlib_collection.query_texts.values())
    assert len(set(summaries)) == len(summaries)  # no ambiguous query


def test_splits_are_by_top_level_package(stdlib_collection):
    packages = {
        split: {query_id.split(":")[0].split(".")[0] for query_id in ids}
        for split, ids in stdlib_collection.split_queries.items()
    }
    assert set(packages) == {"train", "val", "test"}
    assert not packages["train"] & packages["test"] and not packages["train"] & packages["val"]
    assert not packages["val"] & packages["test"]
    assert not any(p in ("test", "idlelib") for names in packages.values() for p in names)


def test_load_reuses_the_cached_build(stdlib_collection, tmp_path_factory, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(stdlib_code, "build_stdlib_code", fail)
    cached = resolve("stdlib-code")  # EGGROLL_NDCG_CACHE points at the session cache
    assert cached.manifest["content_hash"] == stdlib_collection.manifest["content_hash"]


FAKE_STDLIB = {
    "good.py": '''
import functools

def add(a, b):
    """Add two numbers together.

    Long explanation that is not part of the summary.
    """
    return a + b

@functools.lru_cache
def cached(x):
    """Compute something slowly   and
    cache it."""
    text = """
a string at column zero
"""
    return text * x

def short(x):
    """Too short."""
    return x

def stub(x):
    """This one does nothing at all."""
    raise NotImplementedError

def one_line(x): "Return x unchanged on one line."; return x

class Box:
    def open(self):
        """Open the box and return its content."""
        return self.content

    def close(self):
        """Same summary shared by two functions."""
        self.content = None

def other_close():
    """Same summary shared by two functions."""
    return 1

def outer():
    """Return a closure over a counter."""
    def inner():
        """Nested functions are not collected."""
        return 1
    return inner
''',
    "_private.py": 'def hidden(x):\n    """Private module functions are skipped."""\n    return x\n',
    "test/test_good.py": 'def check(x):\n    """Test suites are skipped entirely."""\n    return x\n',
    "pkg/__init__.py": 'def top(x):\n    """Package level function in init."""\n    return x\n',
    "pkg/copy.py": 'def add(a, b):\n    """Add two numbers together again."""\n    return a + b\n',
}


def test_construction_rules_on_a_tiny_fake_stdlib(tmp_path):
    for relative, source in FAKE_STDLIB.items():
        path = tmp_path / "lib" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source.lstrip("\n"), encoding="utf-8")
    collection = load_beir(build_stdlib_code(tmp_path / "out", stdlib=tmp_path / "lib"))
    assert collection.doc_ids == (
        "good:add", "good:cached", "good:one_line", "good:Box.open", "good:Box.close", "good:other_close",
        "good:outer", "pkg:top",
    )  # pkg.copy:add is byte-identical code to good:add: dropped
    documents = dict(zip(collection.doc_ids, collection.doc_texts))
    assert documents["good:add"] == "def add(a, b):\n    return a + b"
    assert documents["good:cached"].startswith("@functools.lru_cache\ndef cached(x):\n    text = \"\"\"\na string")
    assert documents["good:one_line"] == "def one_line(x): return x"
    assert documents["good:Box.open"] == "def open(self):\n    return self.content"
    assert collection.query_texts["good:add"] == "Add two numbers together."
    assert collection.query_texts["good:cached"] == "Compute something slowly and cache it."
    # ambiguous summary: both functions stay documents, neither gets a query
    assert "good:Box.close" not in collection.query_texts and "good:other_close" not in collection.query_texts
    assert set(collection.query_texts) == {"good:add", "good:cached", "good:one_line", "good:Box.open",
                                           "good:outer", "pkg:top"}
    build = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert build["counts"]["ambiguous_summaries_dropped"] == 2 and build["counts"]["duplicates_dropped"] == 1
