"""`eggroll-ndcg lm ...`: the quick compare through the command line, and one-line errors."""

from __future__ import annotations

import json

import pytest

from eggroll_ndcg.cli import main


def test_quick_compare_returns_zero_and_writes_results(micro_folder, small_retrieval_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["lm", "compare", "--out", str(out), "--model", str(micro_folder), "--quick", "--quiet",
                 "--seeds", "0", "--es-learning-rates", "0.01", "--grpo-learning-rates", "1e-4"])
    assert code == 0
    text = (out / "results.md").read_text()
    assert "| base |" in text and "| es |" in text and "| grpo |" in text
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["seeds"] == [0] and results["config"]["es_learning_rates"] == [0.01]
    assert len(results["selection"]["es"]["grid"]) == 1
    assert "train-reward" in capsys.readouterr().err


def test_missing_model_folder_is_one_line(tmp_path, capsys):
    code = main(["lm", "compare", "--out", str(tmp_path / "o"), "--model", str(tmp_path / "nope"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "nope" in err and "lm pretrain" in err


def test_bad_options_are_one_line(tmp_path, capsys):
    assert main(["lm", "compare", "--out", str(tmp_path / "o"), "--quick"]) == 2
    assert "--quick needs --model" in capsys.readouterr().err
    assert main(["lm", "compare", "--out", str(tmp_path / "o"), "--population", "1"]) == 2
    assert "--population 1" in capsys.readouterr().err
    assert main(["lm", "pretrain", "--steps", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "steps" in err
    with pytest.raises(SystemExit):
        main(["lm", "compare", "--out", str(tmp_path / "o"), "--seeds", "a,b"])
