"""Document groups: SQuAD articles, stdlib packages, training positives, k-means topics."""

from __future__ import annotations

import json

import pytest
import torch

from eggroll_ndcg.data.beir import Collection, DataError, load_beir
from eggroll_ndcg.data.groups import (GROUPINGS, article_groups, document_groups, kmeans_groups, package_groups,
                                      train_positive_groups)
from eggroll_ndcg.registry import UnknownNameError


def _collection(doc_ids, judgments=None) -> Collection:
    return Collection(name="toy", doc_ids=tuple(doc_ids), doc_texts=tuple(doc_ids), query_texts={},
                      judgments=judgments or {}, split_queries={}, problems=(), manifest={})


def test_article_groups_are_the_prefix_of_squad_ids():
    groups = article_groups(_collection(["0-0", "0-1", "12-0", "12-3", "3-0"]))
    assert groups.tolist() == [0, 0, 1, 1, 2]


def test_article_groups_refuse_ids_without_an_article():
    with pytest.raises(DataError, match="'article'"):
        article_groups(_collection(["d1", "0-1"]))


def test_package_groups_are_the_top_level_package():
    groups = package_groups(_collection(["email.utils:parseaddr", "email:f", "json.decoder:C.m", "json:g", "os:x"]))
    assert groups.tolist() == [0, 0, 1, 1, 2]


def test_package_groups_refuse_non_stdlib_ids():
    with pytest.raises(DataError, match="module:qualname"):
        package_groups(_collection(["email.utils:f", "plain"]))


def test_train_positive_groups_mark_documents_relevant_to_a_training_query():
    collection = _collection(["a", "b", "c", "d"], {"q1": {"a": 1, "b": 0}, "q2": {"c": 2}, "q3": {"d": 1}})
    assert train_positive_groups(collection, ["q1", "q2"]).tolist() == [1, 0, 1, 0]


def test_kmeans_recovers_well_separated_clusters_and_is_deterministic():
    generator = torch.Generator().manual_seed(3)
    centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=generator), dim=-1) * 10
    truth = torch.arange(40) % 4
    points = centres[truth] + 0.1 * torch.randn(40, 16, generator=generator)
    found = kmeans_groups(points, 4, seed=0)
    assert torch.equal(found, kmeans_groups(points, 4, seed=0))
    pairs_same = truth[:, None] == truth[None, :]
    assert torch.equal(found[:, None] == found[None, :], pairs_same)


def test_unknown_grouping_names_the_choices():
    with pytest.raises(UnknownNameError, match="article"):
        document_groups("articles", _collection(["0-0"]), torch.zeros(1, 2), ())
    assert set(GROUPINGS.names()) == {"article", "package", "train_positive", "kmeans"}


def test_squad_article_groups_match_the_corpus_titles(datasets_dir):
    folder = datasets_dir / "squad_v1_dev_retrieval"
    collection = load_beir(folder)
    groups = article_groups(collection)
    titles = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            titles[row["_id"]] = row["title"]
    by_title = {}
    for doc, group in zip(collection.doc_ids, groups.tolist()):
        assert by_title.setdefault(titles[doc], group) == group  # one article id per title
    assert len(set(groups.tolist())) == len(set(titles.values())) == 48
