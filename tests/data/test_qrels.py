"""Qrels and text-file defects (issues 9 and 10): header detection, grade syntax, BOM, non-UTF-8, folders."""

from __future__ import annotations

import gzip

import pytest

from eggroll_ndcg.data.beir import DataError, load_beir
from eggroll_ndcg.data.qrels import is_header, parse_grade

from test_beir import HEADER, make_folder


def test_headerless_qrels_with_a_bad_grade_on_line_1_is_an_error_not_a_header(tmp_path):
    root = make_folder(tmp_path / "h", qrels={"test": "q1\td1\thigh\nq2\td2\t1\n"})
    with pytest.raises(DataError, match=r"h/qrels/test.tsv, line 1: grade 'high' is not an integer"):
        load_beir(root)


def test_headerless_qrels_keeps_its_first_row(tmp_path):
    collection = load_beir(make_folder(tmp_path / "n", qrels={"test": "q1\td1\t1\nq2\td2\t2\n"}))
    assert collection.judgments == {"q1": {"d1": 1}, "q2": {"d2": 2}}


@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore", "qid\tdocid\trelevance", "Query_ID\tDoc_ID\tScore"])
def test_header_names_are_recognized(tmp_path, header):
    collection = load_beir(make_folder(tmp_path / "k", qrels={"test": header + "\nq1\td1\t1\n"}))
    assert collection.judgments == {"q1": {"d1": 1}}


def test_is_header_needs_header_names_in_all_three_columns():
    assert is_header(["query-id", "corpus-id", "score"])
    assert not is_header(["q1", "d1", "score"])
    assert not is_header(["query-id", "corpus-id", "1"])


@pytest.mark.parametrize("grade", ["1_0", "1.0", "١", " ", "0x1", "+"])
def test_grade_must_be_a_plain_decimal_integer(tmp_path, grade):
    root = make_folder(tmp_path / "g", qrels={"test": HEADER + f"q1\td1\t{grade}\n"})
    with pytest.raises(DataError, match=r"g/qrels/test.tsv, line 2: grade .* is not an integer"):
        load_beir(root)


def test_parse_grade_accepts_a_sign_and_surrounding_spaces():
    assert [parse_grade(text) for text in ("3", "-1", "+2", " 1 ", "1_0", "10")] == [3, -1, 2, 1, None, 10]


def test_bom_is_stripped_in_headerless_qrels(tmp_path):
    root = make_folder(tmp_path / "b", qrels={"test": "\ufeffq1\td1\t1\nq2\td2\t1\n"})
    collection = load_beir(root)
    assert collection.judgments == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert collection.problems == ()


def test_bom_is_stripped_in_corpus_queries_and_gzipped_corpus(tmp_path):
    plain = load_beir(make_folder(tmp_path / "plain"))
    root = make_folder(tmp_path / "bom")
    for name in ("corpus.jsonl", "queries.jsonl"):
        (root / name).write_bytes(b"\xef\xbb\xbf" + (root / name).read_bytes())
    assert load_beir(root).manifest["content_hash"] == plain.manifest["content_hash"]
    gz_root = make_folder(tmp_path / "gz", gz=True)
    with gzip.open(gz_root / "corpus.jsonl.gz", "rb") as handle:
        body = handle.read()
    with gzip.open(gz_root / "corpus.jsonl.gz", "wb") as handle:
        handle.write(b"\xef\xbb\xbf" + body)
    assert load_beir(gz_root).doc_ids == plain.doc_ids


@pytest.mark.parametrize("file", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_a_latin1_byte_names_file_and_line(tmp_path, file):
    root = make_folder(tmp_path / "l")
    lines = (root / file).read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"1", b"\xe91", 1) if file == "qrels/test.tsv" else lines[1].replace(b"d", b"\xe9", 1)
    (root / file).write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=rf"l/{file}, line 2: not UTF-8 \(byte 0xe9"):
        load_beir(root)


def test_a_latin1_byte_in_a_gzipped_corpus_names_the_line(tmp_path):
    root = make_folder(tmp_path / "z", gz=True)
    with gzip.open(root / "corpus.jsonl.gz", "wb") as handle:
        handle.write(b'{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"z/corpus.jsonl.gz, line 2: not UTF-8"):
        load_beir(root)


def test_lone_carriage_returns_still_end_lines(tmp_path):
    root = make_folder(tmp_path / "cr", qrels={"test": (HEADER + "q1\td1\t1\nq2\td2\t2\n").replace("\n", "\r")})
    assert load_beir(root).judgments == {"q1": {"d1": 1}, "q2": {"d2": 2}}


@pytest.mark.parametrize("file", ["qrels/dev.tsv", "corpus.jsonl", "queries.jsonl"])
def test_a_folder_in_place_of_a_file_is_a_data_error(tmp_path, file):
    root = make_folder(tmp_path / "d")
    if (root / file).exists():
        (root / file).unlink()
    (root / file).mkdir()
    with pytest.raises(DataError, match=rf"d/{file}: is a folder, expected a file"):
        load_beir(root)


def test_a_split_whose_queries_are_all_unknown_is_kept_empty_and_reported(tmp_path):
    qrels = {"test": HEADER + "q1\td1\t1\n", "dev": HEADER + "q8\td1\t1\nq9\td2\t1\n"}
    collection = load_beir(make_folder(tmp_path / "u", qrels=qrels))
    assert collection.split_queries == {"dev": (), "test": ("q1",)}
    assert any("split 'dev' has no query with text" in problem for problem in collection.problems)


def test_queries_with_empty_text_are_in_no_split_and_counted(tmp_path):
    queries = '{"_id": "q1", "text": "query one"}\n{"_id": "q2", "text": "  "}\n'
    collection = load_beir(make_folder(tmp_path / "e", queries=queries))
    assert collection.split_queries == {"test": ("q1",)}
    assert any("1 judged queries have empty text ('q2')" in problem for problem in collection.problems)
