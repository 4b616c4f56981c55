"""`eggroll-ndcg data info | list`."""

from __future__ import annotations

import argparse

import pytest

from eggroll_ndcg.cli import data_cmd
from eggroll_ndcg.data.stdlib_code import load_stdlib_code


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="eggroll-ndcg")
    data_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="session")
def stdlib_built(tmp_path_factory) -> None:
    """Build stdlib-code once in the session cache (shared with test_stdlib_code.py when both run)."""
    load_stdlib_code(cache_root=tmp_path_factory.getbasetemp() / "embedding-cache")


def test_info_on_stdlib_code_prints_counts_grades_and_splits(stdlib_built, capsys):
    assert run(["data", "info", "stdlib-code"]) == 0
    out = capsys.readouterr().out
    assert "collection   stdlib-code" in out
    assert "documents" in out and "grades       1:" in out
    for split in ("train", "val", "test"):
        assert f"  {split}" in out
    assert "problems     none" in out


def test_info_on_a_real_collection_with_data_dir(datasets_dir, capsys):
    assert run(["data", "info", "trec_dl19_passage_pooled", "--data-dir", str(datasets_dir)]) == 0
    out = capsys.readouterr().out
    assert "documents    10,852" in out and "43 judged queries" in out
    assert "0: 1,409, 1: 843, 2: 1,113, 3: 469" in out


def test_info_on_a_bad_folder_exits_non_zero_with_the_error(tmp_path, capsys):
    bad = tmp_path / "bad"
    (bad / "qrels").mkdir(parents=True)
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": \n', encoding="utf-8")
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "y"}\n', encoding="utf-8")
    (bad / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    assert run(["data", "info", str(bad)]) != 0
    err = capsys.readouterr().err
    assert "bad/corpus.jsonl, line 2" in err and "invalid JSON" in err


def test_info_on_an_unknown_name_exits_non_zero(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(["data", "info", "no-such-thing"]) != 0
    assert "unknown collection" in capsys.readouterr().err
    assert run(["data", "info", "NanoMSMARCO"]) != 0
    assert "local BEIR folder" in capsys.readouterr().err


def test_list_shows_every_kind_of_source(datasets_dir, capsys):
    assert run(["data", "list", "--data-dir", str(datasets_dir)]) == 0
    out = capsys.readouterr().out
    for name in ("stdlib-code", "scifact", "squad_v1_dev_retrieval", "NanoMSMARCO", "Ko-StrategyQA"):
        assert name in out


def test_list_shows_where_it_looked(datasets_dir, capsys, monkeypatch):
    assert run(["data", "list", "--data-dir", str(datasets_dir)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"looked in: the data folder {datasets_dir} (from --data-dir)"
    monkeypatch.delenv("EGGROLL_NDCG_DATA", raising=False)
    assert run(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "looked in: no data folder is set (set EGGROLL_NDCG_DATA or pass --data-dir)"


def test_list_does_not_offer_a_download_without_datasets_or_network(capsys, monkeypatch):
    from eggroll_ndcg.data import sources

    monkeypatch.setattr(sources, "_datasets_installed", lambda: False)
    assert run(["data", "list"]) == 0
    hub_lines = [line for line in capsys.readouterr().out.splitlines() if "zeta-alpha-ai/" in line]
    assert hub_lines and all("needs network + pip install eggroll-ndcg[hub]" in line for line in hub_lines)
    assert not any(" download " in line for line in hub_lines)
    monkeypatch.setattr(sources, "_datasets_installed", lambda: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(["data", "list"]) == 0
    hub_lines = [line for line in capsys.readouterr().out.splitlines() if "zeta-alpha-ai/" in line]
    assert all("offline: HF_HUB_OFFLINE is set" in line for line in hub_lines)


def test_info_without_a_data_folder_names_the_cli_flag(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("EGGROLL_NDCG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run(["data", "info", "scifact"]) == 1
    err = capsys.readouterr().err
    assert "no data folder is set (set EGGROLL_NDCG_DATA or pass --data-dir)" in err
