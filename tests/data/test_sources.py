"""The source registry: paths, the data folder, hub names (offline: fail fast and say what to pass)."""

from __future__ import annotations

import sys
import time
import types

import pytest

from eggroll_ndcg.data import sources
from eggroll_ndcg.data.beir import DataError, load_beir
from eggroll_ndcg.data.sources import (
    HUB_SOURCES,
    OfflineError,
    UnknownSourceError,
    is_known_source,
    list_sources,
    resolve,
)

NANOBEIR_TASKS = {
    "NanoArguAna", "NanoClimateFEVER", "NanoDBPedia", "NanoFEVER", "NanoFiQA2018", "NanoHotpotQA", "NanoMSMARCO",
    "NanoNFCorpus", "NanoNQ", "NanoQuoraRetrieval", "NanoSCIDOCS", "NanoSciFact", "NanoTouche2020",
}


def test_a_folder_path_resolves_to_that_folder(datasets_dir):
    collection = resolve(str(datasets_dir / "autorag_retrieval_ko"))
    assert collection.name == "autorag_retrieval_ko" and len(collection.doc_ids) == 720


def test_short_names_resolve_against_the_data_dir_argument(datasets_dir, monkeypatch):
    monkeypatch.delenv("EGGROLL_NDCG_DATA", raising=False)
    collection = resolve("belebele_kor_retrieval", data_dir=datasets_dir)
    assert collection.name == "belebele_kor_retrieval" and len(collection.query_texts) == 900


def test_short_names_resolve_against_the_environment_variable(datasets_dir, monkeypatch):
    monkeypatch.setenv("EGGROLL_NDCG_DATA", str(datasets_dir))
    assert resolve("scifact").manifest["counts"]["docs"] == 5183
    assert is_known_source("scifact")


def test_a_non_beir_folder_in_the_working_directory_does_not_shadow_a_named_collection(
    datasets_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scifact").mkdir()  # e.g. the output folder of a run, named after the collection
    assert resolve("scifact", data_dir=datasets_dir).manifest["counts"]["docs"] == 5183
    with pytest.raises(DataError, match="no corpus.jsonl"):
        resolve("./scifact", data_dir=datasets_dir)  # written as a path: that folder, and why it is not BEIR


def test_unknown_name_raises_and_lists_the_known_names(tmp_path, monkeypatch):
    monkeypatch.setenv("EGGROLL_NDCG_DATA", str(tmp_path))
    with pytest.raises(UnknownSourceError, match="no-such-collection.*stdlib-code"):
        resolve("no-such-collection")
    assert not is_known_source("no-such-collection")


def test_registry_has_the_13_nanobeir_tasks_and_ko_strategyqa():
    assert NANOBEIR_TASKS <= set(HUB_SOURCES)
    assert set(HUB_SOURCES) - NANOBEIR_TASKS == {"Ko-StrategyQA"}
    assert HUB_SOURCES["NanoMSMARCO"].repo == "zeta-alpha-ai/NanoMSMARCO"
    assert HUB_SOURCES["Ko-StrategyQA"].repo == "taeminlee/Ko-StrategyQA"
    assert is_known_source("nanoscifact") and is_known_source("zeta-alpha-ai/NanoSciFact")


def test_list_sources_shows_embedded_local_and_hub(datasets_dir):
    rows = {row.name: row for row in list_sources(datasets_dir)}
    assert rows["stdlib-code"].kind == "embedded" and rows["stdlib-code"].available
    assert rows["scifact"].kind == "local" and rows["scifact"].available
    assert rows["NanoMSMARCO"].kind == "hub" and not rows["NanoMSMARCO"].available  # nothing cached here


def test_offline_hub_name_fails_fast_with_hf_hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OfflineError) as caught:
        resolve("NanoMSMARCO")
    assert time.perf_counter() - start < 1.0
    message = str(caught.value)
    assert "HF_HUB_OFFLINE" in message and "local BEIR folder" in message and "EGGROLL_NDCG_DATA" in message


def test_unreachable_hub_fails_fast_without_retries(monkeypatch):
    """Independent of the optional `datasets` package: its presence is faked, the network probe is real."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "_datasets_installed", lambda: True)
    monkeypatch.setitem(sys.modules, "datasets", None)  # a download attempt would fail loudly, not pass
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="unreachable.*local BEIR folder"):
        resolve("Ko-StrategyQA")
    assert time.perf_counter() - start < 3.0


def test_unknown_name_without_a_data_folder_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.delenv("EGGROLL_NDCG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownSourceError) as caught:
        resolve("scifact")
    message = str(caught.value)
    assert "'scifact': not a folder here, and no data folder is set" in message
    assert "(set EGGROLL_NDCG_DATA or pass --data-dir)" in message and "no data folder (set" not in message


def test_unknown_name_with_a_data_folder_names_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownSourceError, match=rf"not in the data folder {tmp_path} \(from --data-dir\)"):
        resolve("nothing-here", data_dir=tmp_path)


def test_hub_rows_say_what_a_download_needs(monkeypatch, tmp_path):
    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "_datasets_installed", lambda: False)
    rows = {row.name: row for row in list_sources()}
    assert rows["NanoNQ"].status == "needs network + pip install eggroll-ndcg[hub]" and not rows["NanoNQ"].available
    monkeypatch.setattr(sources, "_datasets_installed", lambda: True)
    assert {row.name: row for row in list_sources()}["NanoNQ"].status == "download"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert {row.name: row for row in list_sources()}["NanoNQ"].status == "offline: HF_DATASETS_OFFLINE is set"
    assert {row.name: row for row in list_sources()}["stdlib-code"].status == "ready"


def test_missing_datasets_package_is_an_offline_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(OfflineError, match="'datasets' package is not installed"):
        resolve("NanoNQ")


def _fake_datasets(tables: dict) -> types.ModuleType:
    """A stand-in for the `datasets` module: load_dataset(repo, config) returns {split: rows}."""
    module = types.ModuleType("datasets")
    module.__version__ = "fake"
    module.load_dataset = lambda repo, config: tables[config]
    return module


def test_hub_download_is_written_as_a_beir_folder_and_reused_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(tmp_path / "cache"))
    tables = {
        "corpus": {"corpus": [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "title": "", "text": "two"}]},
        "queries": {"queries": [{"_id": "q1", "text": "first?"}, {"_id": "q2", "text": "second?"}]},
        "qrels": {"train": [{"query-id": "q1", "corpus-id": "d1"}, {"query-id": "q2", "corpus-id": "d2"}]},
    }
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(tables))
    monkeypatch.setattr(sources, "_check_hub_reachable", lambda source: None)
    collection = resolve("NanoSciFact")
    assert collection.name == "NanoSciFact"
    assert collection.doc_texts == ("T one", "two")
    assert collection.split_queries == {"test": ("q1", "q2")}  # NanoBEIR's hub "train" split is its test set
    assert collection.judgments == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert collection.manifest["build"]["hub_repo"] == "zeta-alpha-ai/NanoSciFact"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the cached folder needs no network
    monkeypatch.setitem(sys.modules, "datasets", None)
    again = resolve("nanoscifact")
    assert again.manifest["content_hash"] == collection.manifest["content_hash"]
    assert load_beir(tmp_path / "cache" / "hub" / "NanoSciFact").judgments == collection.judgments
