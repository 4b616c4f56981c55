"""BEIR loading: validation errors name file and line, dangling qrels policy, merging, real collection counts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from eggroll_ndcg.data.beir import DataError, grade_levels, load_beir

HEADER = "query-id\tcorpus-id\tscore\n"
CORPUS = (
    '{"_id": "d1", "title": "Alpha", "text": "first doc"}\n'
    '{"_id": "d2", "title": "", "text": "second doc"}\n'
    '{"_id": "d3", "text": "third doc"}\n'
)
QUERIES = '{"_id": "q1", "text": "query one"}\n{"_id": "q2", "text": "query two"}\n'


def make_folder(
    root: Path, *, corpus: str = CORPUS, queries: str = QUERIES, qrels: dict[str, str] | None = None,
    gz: bool = False,
) -> Path:
    """Write a small BEIR folder from raw file contents."""
    root.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(root / "corpus.jsonl.gz", "wt", encoding="utf-8") as handle:
            handle.write(corpus)
    else:
        (root / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (root / "queries.jsonl").write_text(queries, encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    for split, text in (qrels or {"test": HEADER + "q1\td1\t1\nq2\td2\t2\n"}).items():
        (root / "qrels" / f"{split}.tsv").write_bytes(text.encode("utf-8"))
    return root


def test_loads_a_valid_folder_with_title_text_convention(tmp_path):
    collection = load_beir(make_folder(tmp_path / "toy"))
    assert collection.name == "toy"
    assert collection.doc_ids == ("d1", "d2", "d3")
    assert collection.doc_texts == ("Alpha first doc", "second doc", "third doc")
    assert collection.query_texts == {"q1": "query one", "q2": "query two"}
    assert collection.judgments == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert collection.split_queries == {"test": ("q1", "q2")}
    assert collection.problems == ()
    assert collection.manifest["counts"]["docs"] == 3
    assert collection.manifest["content_hash"].startswith("sha256:")


def test_gzipped_corpus_and_crlf_qrels_give_the_same_content_hash(tmp_path):
    plain = load_beir(make_folder(tmp_path / "a"))
    crlf_qrels = {"test": (HEADER + "q1\td1\t1\nq2\td2\t2\n").replace("\n", "\r\n")}
    other = load_beir(make_folder(tmp_path / "b", gz=True, qrels=crlf_qrels))
    assert other.judgments == plain.judgments
    assert other.manifest["content_hash"] == plain.manifest["content_hash"]


@pytest.mark.parametrize(
    "file, content, line, words",
    [
        ("corpus.jsonl", '{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": broken}\n', 2, "invalid JSON"),
        ("corpus.jsonl", '{"_id": "d1", "text": "ok"}\n{"title": "t", "text": "no id"}\n', 2, "'_id'"),
        ("corpus.jsonl", '{"_id": "d1", "text": "ok"}\n\n{"_id": "d2", "title": "no text"}\n', 3, "'text'"),
        ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"}\n{"_id": "d1", "text": "c"}\n', 3,
         "duplicate document id 'd1'"),
        ("queries.jsonl", '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n', 2, "duplicate query id 'q1'"),
        ("queries.jsonl", '{"_id": "q1", "text": "a"}\n[1, 2]\n', 2, "JSON object"),
        ("corpus.jsonl", "", 1, "empty file"),
        ("queries.jsonl", "\n\n", 1, "empty file"),
        ("qrels/test.tsv", HEADER + "q1\td1\t1\nq2\td2\thigh\n", 3, "not an integer"),
        ("qrels/test.tsv", HEADER + "q1\td1\t1.5\n", 2, "not an integer"),
        ("qrels/test.tsv", HEADER + "q1\td1\t1\nq2 d2 1\n", 3, "3 tab-separated columns"),
        ("qrels/test.tsv", HEADER + "q1\td1\t1\nq2\td2\t1\textra\n", 3, "found 4"),
        ("qrels/test.tsv", HEADER, 1, "empty file"),
        ("qrels/test.tsv", "", 1, "empty file"),
    ],
)
def test_bad_file_raises_data_error_naming_file_and_line(tmp_path, file, content, line, words):
    root = make_folder(tmp_path / "bad")
    (root / file).write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_beir(root)
    message = str(caught.value)
    assert f"bad/{file}" in message
    assert f"line {line}" in message
    assert words in message


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_missing_files_raise_data_error(tmp_path):
    root = make_folder(tmp_path / "m")
    (root / "queries.jsonl").unlink()
    with pytest.raises(DataError, match="queries.jsonl"):
        load_beir(root)
    with pytest.raises(DataError, match="not a folder"):
        load_beir(tmp_path / "nowhere")
    empty = tmp_path / "noqrels"
    make_folder(empty)
    for path in (empty / "qrels").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="qrels"):
        load_beir(empty)


def test_dangling_document_rows_are_counted_and_kept_in_judgments(tmp_path):
    qrels = {"test": HEADER + "q1\td1\t1\nq1\tghost\t2\nq2\tghost\t1\nq2\td2\t1\n"}
    collection = load_beir(make_folder(tmp_path / "dd", qrels=qrels))
    assert collection.judgments["q1"] == {"d1": 1, "ghost": 2}  # still counts in the ideal DCG
    assert collection.judgments["q2"] == {"ghost": 1, "d2": 1}
    [problem] = collection.problems
    assert "qrels/test.tsv" in problem and "2 rows" in problem and "1 documents" in problem and "'ghost'" in problem


def test_dangling_query_rows_are_counted_and_left_out(tmp_path):
    qrels = {"test": HEADER + "q1\td1\t1\nq9\td1\t1\nq9\td2\t1\nq8\td3\t1\n"}
    collection = load_beir(make_folder(tmp_path / "dq", qrels=qrels))
    assert set(collection.judgments) == {"q1"}
    assert collection.split_queries == {"test": ("q1",)}
    [problem] = collection.problems
    assert "3 rows" in problem and "2 queries" in problem and "left out" in problem


def test_all_split_is_merged_as_a_union(tmp_path):
    qrels = {
        "all": HEADER + "q1\td1\t1\nq2\td2\t1\n",
        "train": HEADER + "q1\td1\t1\n",
        "test": HEADER + "q2\td2\t1\n",
    }
    collection = load_beir(make_folder(tmp_path / "u", qrels=qrels))
    assert collection.judgments == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert collection.split_queries == {"all": ("q1", "q2"), "test": ("q2",), "train": ("q1",)}
    assert collection.problems == ()


def test_conflicting_grade_across_files_names_both_files(tmp_path):
    qrels = {"all": HEADER + "q1\td1\t1\n", "train": HEADER + "q2\td2\t1\nq1\td1\t2\n"}
    with pytest.raises(DataError) as caught:
        load_beir(make_folder(tmp_path / "c", qrels=qrels))
    message = str(caught.value)
    assert "c/qrels/train.tsv, line 3" in message and "c/qrels/all.tsv, line 2" in message


def test_conflicting_grade_within_a_file_names_both_lines(tmp_path):
    qrels = {"test": HEADER + "q1\td1\t1\nq1\td1\t0\n"}
    with pytest.raises(DataError, match=r"test.tsv, line 3.*line 2"):
        load_beir(make_folder(tmp_path / "w", qrels=qrels))


def test_repeated_identical_rows_are_reported(tmp_path):
    qrels = {"test": HEADER + "q1\td1\t1\nq1\td1\t1\n"}
    collection = load_beir(make_folder(tmp_path / "r", qrels=qrels))
    assert collection.judgments == {"q1": {"d1": 1}}
    assert any("repeated" in problem for problem in collection.problems)


# ---------------------------------------------------------------------------------- real collections


def test_scifact_loads_with_its_source_counts(datasets_dir):
    collection = load_beir(datasets_dir / "scifact")
    assert len(collection.doc_ids) == 5183
    assert {split: len(ids) for split, ids in collection.split_queries.items()} == {"train": 809, "test": 300}
    assert sum(len(collection.judgments[q]) for q in collection.split_queries["test"]) == 339
    assert grade_levels(collection) == {1: 1258}
    assert collection.problems == ()


def test_squad_loads_with_its_source_counts(datasets_dir):
    collection = load_beir(datasets_dir / "squad_v1_dev_retrieval")
    assert len(collection.doc_ids) == 2067
    sizes = {split: len(ids) for split, ids in collection.split_queries.items()}
    assert sizes == {"all": 10570, "train": 7110, "val": 1102, "test": 2358}
    assert collection.problems == ()


def test_trec_dl19_loads_with_graded_judgments(datasets_dir):
    collection = load_beir(datasets_dir / "trec_dl19_passage_pooled")
    assert len(collection.doc_ids) == 10852
    assert len(collection.split_queries["test"]) == 43
    assert grade_levels(collection) == {0: 1409, 1: 843, 2: 1113, 3: 469}


@pytest.mark.parametrize("name, docs, queries", [("autorag_retrieval_ko", 720, 114), ("belebele_kor_retrieval", 488, 900)])
def test_korean_collections_load_with_their_source_counts(datasets_dir, name, docs, queries):
    collection = load_beir(datasets_dir / name)
    assert len(collection.doc_ids) == docs
    assert len(collection.split_queries["test"]) == queries
    assert collection.problems == ()
    json.dumps(collection.manifest)  # the manifest is plain JSON
