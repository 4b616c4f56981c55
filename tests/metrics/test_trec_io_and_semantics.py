"""trec.evaluate semantics (ties, missing queries, -c) and TREC run/qrels file reading and writing."""

from __future__ import annotations

import pytest
import pytrec_eval

from eggroll_ndcg.metrics import evaluate, read_qrels, read_run, write_qrels, write_run
from eggroll_ndcg.metrics.trec import parse_measure, ranked_doc_ids


def test_ties_are_broken_by_doc_id_descending_in_byte_order():
    assert ranked_doc_ids({"d9": 1.0, "d10": 1.0, "d1": 2.0, "D9": 1.0}) == ["d1", "d9", "d10", "D9"]


def test_queries_missing_from_the_run_are_skipped_unless_missing_as_zero():
    qrels = {"a": {"x": 1}, "b": {"y": 1}}
    run = {"a": {"x": 1.0}, "zzz": {"x": 1.0}}
    plain = evaluate(run, qrels, measures=["ndcg@10"])
    assert set(plain.per_query) == {"a"} and plain.mean["ndcg@10"] == 1.0
    complete = evaluate(run, qrels, measures=["ndcg@10"], missing_as_zero=True)
    assert complete.per_query["b"]["ndcg@10"] == 0.0 and complete.mean["ndcg@10"] == 0.5


def test_queries_without_relevant_documents_score_zero_like_pytrec_eval():
    qrels = {"a": {"x": 0, "y": 0}, "b": {"x": 1}}
    run = {"a": {"x": 1.0, "y": 0.5}, "b": {"x": 1.0}}
    ours = evaluate(run, qrels, measures=["ndcg@10", "mrr", "recall@10", "map@10"])
    oracle = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recip_rank", "recall.10", "map_cut.10"})
    theirs = oracle.evaluate(run)
    assert set(ours.per_query) == set(theirs) == {"a", "b"}
    assert ours.per_query["a"] == {"ndcg@10": 0.0, "mrr": 0.0, "recall@10": 0.0, "map@10": 0.0}
    assert all(v == 0.0 for v in theirs["a"].values())
    assert ours.mean["ndcg@10"] == 0.5


def test_measure_names_are_parsed_and_unknown_ones_rejected():
    assert parse_measure("ndcg@10") == ("ndcg", 10)
    assert parse_measure("mrr") == ("mrr", None)
    for bad in ("p@10", "ndcg@0", "ndcg@x"):
        with pytest.raises(ValueError):
            parse_measure(bad)


def test_run_and_qrels_files_round_trip_and_evaluate_like_the_dicts(tmp_path):
    run = {"q1": {"d1": 0.5, "d2": 0.5, "d3": 1 / 3}, "q2": {"d9": -2.0}}
    qrels = {"q1": {"d1": 1, "d3": 2, "d7": 0}, "q2": {"d9": 1}}
    write_run(run, tmp_path / "run.txt", tag="sys")
    write_qrels(qrels, tmp_path / "qrels.txt")
    assert read_run(tmp_path / "run.txt") == run
    assert read_qrels(tmp_path / "qrels.txt") == qrels
    lines = (tmp_path / "run.txt").read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 0.5 sys" and lines[1] == "q1 Q0 d1 2 0.5 sys"
    from_files = evaluate(str(tmp_path / "run.txt"), tmp_path / "qrels.txt")
    assert from_files == evaluate(run, qrels)


def test_write_run_keeps_only_the_top_depth_documents(tmp_path):
    write_run({"q": {"a": 1.0, "b": 2.0, "c": 3.0}}, tmp_path / "r", depth=2)
    assert list(read_run(tmp_path / "r")["q"]) == ["c", "b"]


@pytest.mark.parametrize("line, message", [
    ("q1 Q0 d1 1 0.5", "6 fields"),
    ("q1 Q0 d1 one 0.5 tag", "rank must be an integer"),
    ("q1 Q0 d1 1 high tag", "score"),
    ("q1 Q0 d1 1 nan tag", "NaN"),
    ("q1 Q0 d0 2 0.1 tag", "appears twice"),
])
def test_malformed_run_lines_raise_an_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.run"
    path.write_text("q1 Q0 d0 1 0.9 tag\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_run(path)
    assert f"{path}:2:" in str(info.value)


@pytest.mark.parametrize("line, message", [
    ("q1 0 d1", "4 fields"),
    ("q1 0 d1 1.5", "integer"),
    ("q1 0 d0 0", "judged twice"),
])
def test_malformed_qrels_lines_raise_an_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.qrels"
    path.write_text("q1 0 d0 1\n\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_qrels(path)
    assert f"{path}:3:" in str(info.value)


def test_a_gz_run_is_compressed_deterministically_and_read_back_by_us_and_ir_measures(tmp_path):
    import gzip

    import ir_measures

    run = {"q1": {"d1": 0.5, "d2": 0.5, "d3": 1 / 3}, "q2": {"d9": -2.0}}
    write_run(run, tmp_path / "a.trec.gz", tag="sys")
    write_run(run, tmp_path / "b.trec.gz", tag="sys")
    write_run(run, tmp_path / "plain.trec", tag="sys")
    assert (tmp_path / "a.trec.gz").read_bytes() == (tmp_path / "b.trec.gz").read_bytes()  # no timestamp
    assert gzip.decompress((tmp_path / "a.trec.gz").read_bytes()) == (tmp_path / "plain.trec").read_bytes()
    assert read_run(tmp_path / "a.trec.gz") == run
    theirs = {(d.query_id, d.doc_id): d.score for d in ir_measures.read_trec_run(str(tmp_path / "a.trec.gz"))}
    assert theirs == {(q, d): s for q, docs in run.items() for d, s in docs.items()}
    write_run(run, tmp_path / "forced", tag="sys", compress=True)
    assert gzip.decompress((tmp_path / "forced").read_bytes()) == (tmp_path / "plain.trec").read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_a_damaged_gz_run_is_an_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "run.trec.gz"
    write_run({"q": {f"d{i}": float(i) for i in range(200)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"q Q0 d 1 1.0 t\n")
    with pytest.raises(ValueError, match=rf"{path}:\d+: damaged gzip data"):
        read_run(path)
