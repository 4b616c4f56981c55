"""Judges, the soft-label rules (against explicit loops), the soft qrels files, the CLI, and training pools
built from `train_qrels` (soft grades) or with `pool_denoise`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.cli import main
from eggroll_ndcg.data.bm25 import BM25Index
from eggroll_ndcg.data.judges import JudgeScores, judge_scores, ranks_of
from eggroll_ndcg.data.qrels import read_qrels_file
from eggroll_ndcg.data.soft_labels import (DetectorSettings, detector_scores, soft_qrels, stack_judges,
                                           write_soft_labels)
from eggroll_ndcg.data.sources import resolve
from eggroll_ndcg.data.textfiles import DataError
from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.prepare import prepare_data


def _judge(name: str, scores: np.ndarray, doc_ids, query_ids) -> JudgeScores:
    scores = np.asarray(scores, dtype=np.float32)
    return JudgeScores(name, name, tuple(query_ids), scores, ranks_of(scores, doc_ids), Path("-"))


def test_ranks_follow_score_then_doc_id_descending():
    ranks = ranks_of(np.array([[1.0, 2.0, 2.0, 0.0]]), ["a", "b", "c", "d"])
    assert ranks.tolist() == [[3, 2, 1, 4]]  # c and b tie: the larger id "c" first


def _random_stack(seed: int = 0, queries: int = 5, docs: int = 30, judges: int = 3, depth: int = 12):
    rng = np.random.default_rng(seed)
    doc_ids = [f"d{i:02d}" for i in range(docs)]
    query_ids = [f"q{i}" for i in range(queries)]
    judged = [_judge(f"j{j}", rng.normal(size=(queries, docs)) + (5.0 if j == 2 else 0.0), doc_ids, query_ids)
              for j in range(judges)]
    visible = {q: {doc_ids[(3 * i) % docs]: 1, doc_ids[(3 * i + 1) % docs]: 2} for i, q in enumerate(query_ids)}
    visible["q4"] = {"d00": 0}  # no positive: no candidates, no reference
    return stack_judges(judged, doc_ids, visible, depth=depth), judged, visible, doc_ids


def test_candidates_are_top_depth_of_some_judge_minus_visible_positives_and_positiveless_queries():
    stack, judged, visible, doc_ids = _random_stack()
    for q, qid in enumerate(stack.query_ids):
        for d, doc_id in enumerate(doc_ids):
            expected = (min(int(j.ranks[q, d]) for j in judged) <= 12 and visible[qid].get(doc_id, 0) < 1
                        and any(g >= 1 for g in visible[qid].values()))
            assert bool(stack.candidate[q, d]) == expected


def test_votes_rrf_and_calibrated_equal_their_explicit_formulas():
    stack, judged, visible, doc_ids = _random_stack(seed=1)
    s = DetectorSettings(depth=12, top_k=6, relative_margin=0.1, absolute_margin=0.05, rrf_c=60.0)
    votes, rrf, cal = (detector_scores(stack, rule, s) for rule in ("votes", "rrf", "calibrated"))
    for q, qid in enumerate(stack.query_ids):
        pos = [doc_ids.index(d) for d, g in visible[qid].items() if g >= 1]
        for d in range(len(doc_ids)):
            if not stack.candidate[q, d]:
                assert votes[q, d] == rrf[q, d] == cal[q, d] == -np.inf
                continue
            expected_votes = 0
            for j in judged:
                ref = min(float(j.scores[q, p]) for p in pos)
                expected_votes += int(j.ranks[q, d] <= 6 and float(j.scores[q, d]) >= ref - 0.1 * abs(ref) - 0.05)
            assert votes[q, d] == expected_votes
            fused = lambda x: sum(1.0 / (60.0 + float(j.ranks[q, x])) for j in judged)  # noqa: E731
            assert rrf[q, d] == pytest.approx(fused(d) / min(fused(p) for p in pos), rel=1e-12)
            z = [(j.scores[q].astype(np.float64) - j.scores[q].mean(dtype=np.float64))
                 / j.scores[q].astype(np.float64).std() for j in judged]
            assert cal[q, d] == pytest.approx(np.mean([zj[d] - min(zj[p] for p in pos) for zj in z]), abs=1e-9)


def test_soft_qrels_grade_flagged_negatives_and_keep_visible_positives():
    doc_ids = ["a", "b", "c", "d"]
    stack = stack_judges([_judge("x", [[4.0, 3.0, 2.0, 1.0]], doc_ids, ["q"])], doc_ids,
                         {"q": {"b": 1, "c": 0}}, depth=4)
    scores = detector_scores(stack, "votes", DetectorSettings(depth=4, top_k=3, relative_margin=0.5))
    # a: rank 1 >= 3 - 1.5 -> vote; c: rank 3, 2 >= 1.5 -> vote (judged 0 becomes soft); d: rank 4 > top_k
    qrels, given = soft_qrels(stack, scores, 1.0, {"q": {"b": 1, "c": 0}}, soft_grade=0.5)
    assert qrels == {"q": {"a": 0.5, "b": 1, "c": 0.5}} and given == 2


def test_bm25_judge_equals_bm25_scores_and_is_served_from_the_cache(synthetic_folder, tmp_path, monkeypatch):
    collection = resolve(str(synthetic_folder))
    queries = list(collection.split_queries["train"][:7])
    first = judge_scores("bm25", collection, queries, cache_dir=tmp_path)
    expected = BM25Index(collection.doc_texts).scores([collection.query_texts[q] for q in queries])
    np.testing.assert_allclose(first.scores, expected.astype(np.float32))
    assert first.cache_file.is_file()
    monkeypatch.setattr(BM25Index, "scores", lambda *a, **k: pytest.fail("recomputed despite the cache"))
    again = judge_scores("bm25", collection, queries, cache_dir=tmp_path)
    assert np.array_equal(again.scores, first.scores) and np.array_equal(again.ranks, first.ranks)


def test_a_corrupt_judge_cache_entry_warns_and_is_rebuilt(synthetic_folder, tmp_path):
    collection = resolve(str(synthetic_folder))
    queries = list(collection.split_queries["train"][:3])
    first = judge_scores("bm25", collection, queries, cache_dir=tmp_path)
    first.cache_file.write_bytes(first.cache_file.read_bytes()[:-8])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = judge_scores("bm25", collection, queries, cache_dir=tmp_path)
    assert any("invalid" in str(w.message) for w in caught)
    assert np.array_equal(rebuilt.scores, first.scores)


def test_cli_writes_soft_qrels_and_provenance(synthetic_folder, tmp_path, capsys):
    out = tmp_path / "soft"
    assert main(["soft-labels", str(synthetic_folder), "--judges", "bm25", "--out", str(out), "--top-k", "3",
                 "--threshold", "1", "--relative-margin", "1.0", "--no-progress"]) == 0
    qrels = read_qrels_file(out / "train.tsv")
    provenance = json.loads((out / "train.provenance.json").read_text())
    collection = resolve(str(synthetic_folder))
    assert set(qrels) == set(collection.split_queries["train"])
    soft = sum(1 for row in qrels.values() for g in row.values() if g == 0.5)
    assert soft == provenance["soft_grades_given"] > 0
    for qid, row in collection.judgments.items():  # the original judgments are all kept
        if qid in qrels:
            assert all(qrels[qid][doc] == grade for doc, grade in row.items())
    assert provenance["judges"][0]["name"] == "bm25" and provenance["rule"] == "votes"


def test_cli_unknown_judge_is_one_line_and_exit_2(synthetic_folder, tmp_path, capsys):
    assert main(["soft-labels", str(synthetic_folder), "--judges", "bm25,gpt", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eggroll-ndcg:") and "gpt" in err and "\n" not in err


def _soft_file(tmp_path, collection, train_ids) -> tuple[Path, dict]:
    """The collection's judgments of `train_ids` plus a soft grade on two other documents per query."""
    qrels = {}
    for i, qid in enumerate(train_ids):
        row = dict(collection.judgments[qid])
        row[collection.doc_ids[(7 * i) % len(collection.doc_ids)]] = 0.5
        row[collection.doc_ids[(7 * i + 3) % len(collection.doc_ids)]] = 0.25
        qrels[qid] = {d: g for d, g in row.items()}
    tsv, _ = write_soft_labels(tmp_path / "soft", qrels, {"test": True})
    return tsv, qrels


def test_pools_from_train_qrels_carry_its_soft_grades_and_ideal_grades(synthetic_folder, tmp_path):
    encoded = synthetic_encoded(synthetic_folder)
    config = TrainConfig(task=str(synthetic_folder), pool_size=32, output_dir=str(tmp_path / "r"))
    base = prepare_data(config, encoded=encoded, progress=False)
    tsv, qrels = _soft_file(tmp_path, encoded.collection, base.queries("train"))
    data = prepare_data(config.replace(train_qrels=str(tsv)), encoded=encoded, progress=False)
    pools, doc_ids = data.train_pools, encoded.collection.doc_ids
    for i, qid in enumerate(pools.query_ids):
        for j, g in zip(pools.doc_index[i].tolist(), pools.grades[i].tolist()):
            if j >= 0:
                assert g == qrels[qid].get(doc_ids[j], 0)
        expected = sorted((g for g in qrels[qid].values() if g > 0), reverse=True)
        assert pools.ideal_grades[i, : len(expected)].tolist() == expected
    assert data.collection.judgments == encoded.collection.judgments   # val/test keep the original judgments
    assert data.train_positive_docs == base.train_positive_docs       # soft grades < 1 are not "seen" positives


def test_pool_denoise_drops_the_soft_documents_from_the_pools(synthetic_folder, tmp_path):
    encoded = synthetic_encoded(synthetic_folder)
    config = TrainConfig(task=str(synthetic_folder), pool_size=64, output_dir=str(tmp_path / "r"))
    base = prepare_data(config, encoded=encoded, progress=False)
    tsv, qrels = _soft_file(tmp_path, encoded.collection, base.queries("train"))
    data = prepare_data(config.replace(train_qrels=str(tsv), pool_denoise=True), encoded=encoded, progress=False)
    doc_ids = encoded.collection.doc_ids
    for i, qid in enumerate(data.train_pools.query_ids):
        kept = {doc_ids[j] for j in data.train_pools.doc_index[i].tolist() if j >= 0}
        soft = {d for d, g in qrels[qid].items() if 0 < g < 1}
        base_docs = {doc_ids[j] for j in base.train_pools.doc_index[i].tolist() if j >= 0}
        assert kept == base_docs - soft
        assert set(data.train_pools.grades[i].tolist()) <= {0.0, 1.0}
        assert torch.equal(data.train_pools.ideal_grades[i], base.train_pools.ideal_grades[i])


def test_a_training_query_missing_from_train_qrels_is_a_data_error(synthetic_folder, tmp_path):
    encoded = synthetic_encoded(synthetic_folder)
    config = TrainConfig(task=str(synthetic_folder), pool_size=32, output_dir=str(tmp_path / "r"))
    train_ids = prepare_data(config, encoded=encoded, progress=False).queries("train")
    tsv, _ = _soft_file(tmp_path, encoded.collection, train_ids[1:])
    with pytest.raises(DataError, match=r"train\.tsv: no judgments for 1 of the"):
        prepare_data(config.replace(train_qrels=str(tsv)), encoded=encoded, progress=False)
