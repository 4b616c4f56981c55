"""Query splits: seeded, given splits respected, k-fold, eligible queries only, never a query in two splits."""

from __future__ import annotations

import dataclasses

import pytest

from eggroll_ndcg.data.beir import Collection, DataError, load_beir
from eggroll_ndcg.data.splits import QuerySplits, eligible_queries, make_splits, split_query_ids

REAL = ["scifact", "squad_v1_dev_retrieval", "trec_dl19_passage_pooled", "autorag_retrieval_ko", "belebele_kor_retrieval"]


@pytest.fixture(scope="module")
def real(datasets_dir) -> dict[str, Collection]:
    return {name: load_beir(datasets_dir / name) for name in REAL}


def toy(n: int = 50, splits: dict[str, list[str]] | None = None, grade_of=lambda i: 1) -> Collection:
    """A synthetic collection of n queries q000.. each judging one document."""
    ids = [f"q{i:03d}" for i in range(n)]
    judgments = {qid: {f"d{i}": grade_of(i)} for i, qid in enumerate(ids)}
    split_queries = {name: tuple(sorted(members)) for name, members in (splits or {"test": ids}).items()}
    return Collection(
        name="toy", doc_ids=tuple(f"d{i}" for i in range(n)), doc_texts=tuple("x" for _ in range(n)),
        query_texts={qid: f"text {qid}" for qid in ids}, judgments=judgments, split_queries=split_queries,
        problems=(), manifest={},
    )


def assert_disjoint(splits: QuerySplits) -> None:
    train, val, test = set(splits.train), set(splits.val), set(splits.test)
    assert not train & val and not train & test and not val & test
    assert len(train) == len(splits.train) and len(val) == len(splits.val) and len(test) == len(splits.test)


@pytest.mark.parametrize("name", REAL)
def test_no_query_is_in_two_splits_for_every_real_collection(real, name):
    collection = real[name]
    splits = make_splits(collection, seed=0)
    assert_disjoint(splits)
    assert set(splits.train) | set(splits.val) | set(splits.test) <= eligible_queries(collection)
    assert splits.train and splits.val and splits.test
    assert name in splits.description


@pytest.mark.parametrize("name", ["trec_dl19_passage_pooled", "autorag_retrieval_ko", "belebele_kor_retrieval"])
def test_k_fold_partitions_the_queries_and_never_overlaps(real, name):
    collection = real[name]
    tests = []
    for fold in range(5):
        splits = make_splits(collection, seed=3, n_folds=5, fold=fold)
        assert_disjoint(splits)
        assert set(splits.train) | set(splits.val) | set(splits.test) == eligible_queries(collection)
        tests.append(set(splits.test))
    assert set().union(*tests) == eligible_queries(collection)
    assert sum(len(t) for t in tests) == len(eligible_queries(collection))  # each query is tested exactly once


def test_scifact_test_is_untouched_and_val_is_carved_from_train(real):
    collection = real["scifact"]
    splits = make_splits(collection, seed=0, val_fraction=0.2)
    assert splits.test == collection.split_queries["test"]
    assert set(splits.train) | set(splits.val) == set(collection.split_queries["train"])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (647, 162, 300)


def test_squad_given_splits_are_used_as_they_are(real):
    collection = real["squad_v1_dev_retrieval"]
    splits = make_splits(collection, seed=123)
    for field in ("train", "val", "test"):
        assert getattr(splits, field) == collection.split_queries[field]
    assert splits.sizes() == {"train": 7110, "val": 1102, "test": 2358}


def test_single_split_uses_seeded_fractions():
    collection = toy(100)
    splits = make_splits(collection, seed=1, val_fraction=0.2, test_fraction=0.3)
    assert splits.sizes() == {"train": 50, "val": 20, "test": 30}
    assert make_splits(collection, seed=1) == splits  # same seed, same split
    assert make_splits(collection, seed=2).test != splits.test


def test_only_queries_with_text_and_a_relevant_judgment_are_split():
    collection = toy(20, grade_of=lambda i: 0 if i < 5 else 1)
    collection.query_texts["q019"] = "   "
    splits = make_splits(collection, seed=0)
    members = set(splits.train) | set(splits.val) | set(splits.test)
    assert members == {f"q{i:03d}" for i in range(5, 19)}


def test_given_splits_that_overlap_are_refused():
    collection = toy(10, splits={"train": ["q000", "q001", "q002"], "test": ["q002", "q003"], "val": ["q004"]})
    with pytest.raises(ValueError, match="share 1 queries"):
        make_splits(collection, seed=0)


def test_k_fold_on_a_collection_with_given_train_test_is_refused():
    collection = toy(10, splits={"train": ["q000", "q001"], "test": ["q002"]})
    with pytest.raises(ValueError, match="k-fold"):
        make_splits(collection, seed=0, n_folds=5, fold=0)


@pytest.mark.parametrize(
    "options", [{"n_folds": 5}, {"fold": 1}, {"n_folds": 1, "fold": 0}, {"n_folds": 5, "fold": 5},
                {"val_fraction": 0.6, "test_fraction": 0.5}],
)
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        make_splits(toy(10), seed=0, **options)


def test_query_splits_refuse_a_query_in_two_splits():
    with pytest.raises(ValueError, match="both train and test"):
        QuerySplits(train=("a", "b"), val=(), test=("b",), description="bad")


def test_json_and_file_round_trip(tmp_path):
    splits = make_splits(toy(30), seed=4, n_folds=3, fold=2)
    assert QuerySplits.from_json(splits.to_json()) == splits
    path = splits.save(tmp_path / "run" / "splits.json")
    loaded = QuerySplits.load(path)
    assert loaded == splits and isinstance(loaded.train, tuple)
    assert "3-fold" in loaded.description and dataclasses.asdict(loaded)["collection"] == "toy"


# ---------------------------------------------------------------------------------- empty splits (issue 10)


def test_split_query_ids_refuses_an_unknown_or_empty_split():
    collection = toy(6, splits={"test": [f"q{i:03d}" for i in range(3)], "dev": []})
    assert split_query_ids(collection, "test") == ("q000", "q001", "q002")
    with pytest.raises(DataError, match=r"toy/qrels/dev.tsv: split 'dev' has no query with text"):
        split_query_ids(collection, "dev")
    with pytest.raises(DataError, match=r"toy/qrels/val.tsv: no such qrels split \(the collection has: dev, test\)"):
        split_query_ids(collection, "val")


def test_make_splits_refuses_a_given_test_split_with_no_eligible_query():
    ids = [f"q{i:03d}" for i in range(10)]
    collection = toy(10, splits={"train": ids, "test": []})
    with pytest.raises(DataError, match="split 'test' has no eligible query"):
        make_splits(collection, seed=0)


def test_make_splits_refuses_a_collection_without_eligible_queries():
    collection = toy(10, grade_of=lambda i: 0)
    with pytest.raises(DataError, match="no eligible query"):
        make_splits(collection, seed=0)


def test_a_loaded_split_of_unknown_queries_is_refused_for_evaluation(tmp_path):
    root = tmp_path / "c"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n', encoding="utf-8")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "y"}\n{"_id": "q2", "text": ""}\n', encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("q7\td1\t1\nq2\td1\t1\n", encoding="utf-8")
    (root / "qrels" / "train.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    collection = load_beir(root)
    assert collection.split_queries["test"] == ()
    with pytest.raises(DataError, match="split 'test' has no query with text"):
        split_query_ids(collection, "test")
    with pytest.raises(DataError, match="split 'test' has no eligible query"):
        make_splits(collection, seed=0)
