"""The detector validation (hiding, precision/recall, outputs) and the guarantee that hidden judgments never
reach the trainer, while test queries are scored against all the original judgments."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytrec_eval
import torch

from eggroll_ndcg.data.beir import load_beir
from eggroll_ndcg.data.qrels import read_qrels_file
from eggroll_ndcg.experiments.false_negatives import hide_judgments, label_table, precision_recall, run_validation
from eggroll_ndcg.metrics import read_run
from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.prepare import EncodedCollection
from eggroll_ndcg.train.trainer import Trainer

TOPICS, DOCS_PER_TOPIC, QUERIES = 12, 6, 36


def _multi_positive_folder(folder):
    """Queries with 3 graded positives (3, 2, 1) in their topic; words shared within a topic (for BM25)."""
    folder.mkdir()
    (folder / "qrels").mkdir()
    with open(folder / "corpus.jsonl", "w") as handle:
        for t in range(TOPICS):
            for k in range(DOCS_PER_TOPIC):
                text = f"topic{t} word{t} filler{k} common"
                handle.write(json.dumps({"_id": f"d{t:02d}{k}", "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as handle:
        for q in range(QUERIES):
            handle.write(json.dumps({"_id": f"q{q:02d}", "text": f"topic{q % TOPICS} word{q % TOPICS}"}) + "\n")
    for split, rows in (("train", range(0, 27)), ("test", range(27, QUERIES))):
        with open(folder / "qrels" / f"{split}.tsv", "w") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for q in rows:
                t = q % TOPICS
                for k, grade in zip(range(3), (3, 2, 1)):
                    handle.write(f"q{q:02d}\td{t:02d}{(q + k) % DOCS_PER_TOPIC}\t{grade}\n")
                handle.write(f"q{q:02d}\td{(t + 1) % TOPICS:02d}0\t0\n")
    return folder


def _encoded(collection) -> EncodedCollection:
    generator = torch.Generator().manual_seed(5)
    docs = torch.nn.functional.normalize(torch.randn(len(collection.doc_ids), 16, generator=generator), dim=-1)
    query_ids = tuple(q for q in collection.query_texts if q in collection.judgments)
    rows = []
    for qid in query_ids:
        pos = [collection.doc_ids.index(d) for d, g in collection.judgments[qid].items() if g >= 1]
        rows.append(docs[pos].mean(0) + 0.3 * torch.randn(16, generator=generator))
    return EncodedCollection(collection, {q: i for i, q in enumerate(query_ids)},
                             torch.nn.functional.normalize(torch.stack(rows), dim=-1), docs)


def test_hiding_keeps_one_top_grade_positive_per_multi_positive_query_and_is_seeded():
    judgments = {"a": {"x": 3, "y": 3, "z": 1, "n": 0}, "b": {"x": 1}, "c": {"u": 2, "v": 1}}
    visible, hidden = hide_judgments(judgments, ["a", "b", "c"], seed=4)
    assert set(visible) == set(hidden) == {"a", "c"}            # "b" has a single positive
    (kept,) = visible["a"]
    assert kept in {"x", "y"} and visible["a"][kept] == 3
    assert hidden["a"] == {d: g for d, g in judgments["a"].items() if d != kept}
    assert visible["c"] == {"u": 2} and hidden["c"] == {"v": 1}
    assert hide_judgments(judgments, ["a", "b", "c"], seed=4) == (visible, hidden)
    kept_by_seed = {next(iter(hide_judgments(judgments, ["a"], seed=s)[0]["a"])) for s in range(20)}
    assert kept_by_seed == {"x", "y"}


def test_precision_recall_counts_against_all_hidden_positives():
    scores = np.array([[3.0, 2.0, -np.inf, 1.0], [0.5, -np.inf, 2.5, 2.0]])
    truth = np.array([[True, False, True, False], [False, False, True, False]])
    rows = precision_recall(scores, truth, [2.0, 10.0])
    assert rows[0] == {"threshold": 2.0, "flagged": 4, "true": 2, "precision": 0.5, "recall": 2 / 3}
    assert rows[1]["flagged"] == 0 and rows[1]["precision"] == 0.0 and rows[1]["recall"] == 0.0


def test_validation_writes_table_plot_and_the_hidden_training_qrels(tmp_path):
    collection = load_beir(_multi_positive_folder(tmp_path / "mp"))
    results = run_validation(collection, ["bm25"], tmp_path / "out", seed=0)
    assert results["queries"] == QUERIES and results["hidden_positives"] == 2 * QUERIES
    for name in ("results.json", "results.md", "pr.png", "visible.tsv", "soft-votes.tsv", "soft-rrf.tsv"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    visible = read_qrels_file(tmp_path / "out" / "visible.tsv")
    assert all(len(row) == 1 and next(iter(row.values())) == 3 for row in visible.values())
    votes = results["rules"]["votes"]["pr"][0]
    assert 0 < votes["true"] <= votes["flagged"] and votes["recall"] == votes["true"] / (2 * QUERIES)
    assert "| votes | 1 (default) |" in (tmp_path / "out" / "results.md").read_text()


@pytest.mark.parametrize("arm", ["visible", "soft-votes", "soft-votes+denoise"])
def test_hidden_judgments_never_reach_the_trainer_and_test_uses_all_judgments(tmp_path, monkeypatch, arm):
    import eggroll_ndcg.train.trainer as trainer_module

    collection = load_beir(_multi_positive_folder(tmp_path / "mp"))
    run_validation(collection, ["bm25"], tmp_path / "fn", seed=0)
    name, _, denoise = arm.partition("+")
    train_qrels = read_qrels_file(tmp_path / "fn" / f"{name}.tsv")
    visible, hidden = hide_judgments(collection.judgments, list(collection.judgments), seed=0)
    seen_batches = []
    original = trainer_module.gather_batch

    def recording(pools, rows, query_emb, doc_emb):
        batch = original(pools, rows, query_emb, doc_emb)
        seen_batches.append((pools, batch))
        return batch

    monkeypatch.setattr(trainer_module, "gather_batch", recording)
    config = TrainConfig(task=str(tmp_path / "mp"), method="listnet", pool_size=20, batch_queries=8, num_steps=4,
                         eval_every=2, learning_rate=0.01, train_qrels=str(tmp_path / "fn" / f"{name}.tsv"),
                         pool_denoise=bool(denoise), output_dir=str(tmp_path / "run"))
    trainer = Trainer(config, data=None, progress=False)
    trainer.data = __import__("eggroll_ndcg.train.prepare", fromlist=["prepare_data"]).prepare_data(
        config, encoded=_encoded(collection), progress=False)
    metrics = trainer.train()
    assert seen_batches
    doc_ids = collection.doc_ids
    for pools, batch in seen_batches:
        for r, row in enumerate(batch.rows.tolist()):
            qid = pools.query_ids[row]
            allowed = {d: g for d, g in train_qrels[qid].items() if not (denoise and 0 < g < 1)}
            for j, g in zip(pools.doc_index[row].tolist(), batch.grades[r].tolist()):
                if j < 0:
                    continue
                assert g == max(allowed.get(doc_ids[j], 0), 0)            # never a hidden grade
                if doc_ids[j] in hidden[qid] and hidden[qid][doc_ids[j]] >= 1:
                    assert g < 1                                          # a hidden positive is at most soft
            ideal = sorted((g for g in allowed.values() if g > 0), reverse=True)
            assert batch.ideal_grades[r, : len(ideal)].tolist() == ideal
            assert batch.ideal_grades[r, len(ideal):].sum() == 0
    assert all(len([g for g in visible[q].values() if g >= 1]) == 1 for q in trainer.data.queries("train"))
    # the test evaluation is trec_eval on the original (dense) judgments, hidden ones included
    run = read_run(tmp_path / "run" / "test_run.trec.gz")
    qrels = {q: {d: int(g) for d, g in collection.judgments[q].items()} for q in trainer.data.queries("test")}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    expected = np.mean([per_query[q]["ndcg_cut_10"] if q in per_query else 0.0 for q in qrels])
    assert metrics["test/ndcg@10"] == pytest.approx(expected, abs=1e-9)


def test_label_table_reports_each_arm_and_its_paired_difference(tmp_path):
    for arm, shift in (("hard", 0.0), ("soft", 0.1)):
        folder = tmp_path / arm
        folder.mkdir()
        per_query = {"m": {f"q{i}": {"ndcg@10": 0.1 * i + shift} for i in range(5)}}
        runs = {"0": [{"test/ndcg@10": 0.2 + shift, "test_seen/ndcg@10": 0.3 + shift, "test_unseen/ndcg@10": 0.1}]}
        (folder / "test_per_query.json").write_text(json.dumps(per_query))
        (folder / "results.json").write_text(json.dumps({"methods": {"m": {"runs": runs}}}))
    table = label_table([("hard", tmp_path / "hard"), ("soft", tmp_path / "soft")], ["m"])
    assert "| m | hard | 0.2000 | 0.3000 | 0.1000 | - |" in table
    assert "| m | soft | 0.3000 | 0.4000 | 0.1000 | +0.1000 [+0.1000, +0.1000]" in table


def test_label_table_weights_each_fold_by_its_test_queries(tmp_path):
    """Two folds of 1 and 3 test queries: the column is the mean over the 4 queries, not over the 2 folds."""
    for arm, shift in (("hard", 0.0), ("soft", 0.1)):
        folder = tmp_path / arm
        folder.mkdir()
        values = {"q0": 0.2 + shift, "q1": 0.6 + shift, "q2": 0.6 + shift, "q3": 0.6 + shift}
        per_query = {"m": {q: {"ndcg@10": v} for q, v in values.items()}}
        runs = {"0": [{"test/ndcg@10": 0.2 + shift, "test_seen/ndcg@10": 0.2 + shift, "test_unseen/ndcg@10": None,
                       "test_seen/count": 1, "test_unseen/count": 0},
                      {"test/ndcg@10": 0.6 + shift, "test_seen/ndcg@10": 0.7 + shift, "test_unseen/ndcg@10": 0.5,
                       "test_seen/count": 2, "test_unseen/count": 1}]}
        (folder / "test_per_query.json").write_text(json.dumps(per_query))
        (folder / "results.json").write_text(json.dumps({"methods": {"m": {"runs": runs}}}))
    table = label_table([("hard", tmp_path / "hard"), ("soft", tmp_path / "soft")], ["m"])
    # all: (0.2 + 3 * 0.6) / 4 = 0.5; seen: (0.2 + 2 * 0.7) / 3; unseen: the one query of the second fold
    assert f"| m | hard | 0.5000 | {(0.2 + 2 * 0.7) / 3:.4f} | 0.5000 | - |" in table
    assert f"| m | soft | 0.6000 | {(0.3 + 2 * 0.8) / 3:.4f} | 0.5000 | +0.1000 [+0.1000, +0.1000]" in table
