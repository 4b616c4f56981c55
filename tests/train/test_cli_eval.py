"""`eggroll-ndcg eval`: zero-shot and trained heads, written as TREC run files that re-score identically."""

from __future__ import annotations

import json

import pytest

from eggroll_ndcg.cli import main
from eggroll_ndcg.data.beir import load_beir
from eggroll_ndcg.metrics.trec import evaluate, read_run
from eggroll_ndcg.train.trainer import Trainer


def _printed_json(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


@pytest.mark.slow
def test_eval_writes_a_trec_run_that_rescores_to_the_printed_metrics(synthetic_folder, tmp_path, capsys):
    run_file = tmp_path / "zero_shot.trec"
    code = main(["eval", "--dataset", str(synthetic_folder), "--split", "test", "--encoder", "minilm",
                 "--run-out", str(run_file), "--quiet"])
    assert code == 0
    printed = _printed_json(capsys)
    judgments = load_beir(synthetic_folder).judgments
    rescored = evaluate(read_run(run_file), {q: judgments[q] for q in read_run(run_file)},
                        measures=("ndcg@10",), missing_as_zero=True)
    assert printed["queries"] == 40
    assert printed["ndcg@10"] == pytest.approx(rescored.mean["ndcg@10"], abs=1e-12)


@pytest.mark.slow
def test_eval_of_a_trained_run_folder_uses_its_head_and_splits(small_config, tmp_path, capsys):
    config = small_config.replace(method="infonce", learning_rate=0.01, num_steps=4)
    metrics = Trainer(config, progress=False).train()  # real MiniLM embeddings of the tiny texts
    code = main(["eval", "--model", config.output_dir, "--split", "test", "--quiet",
                 "--run-out", str(tmp_path / "trained.trec")])
    assert code == 0
    printed = _printed_json(capsys)
    assert printed["model"] == config.output_dir
    assert printed["ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-12)
    assert len(read_run(tmp_path / "trained.trec")) == printed["queries"]


@pytest.mark.slow
def test_eval_refuses_a_head_trained_on_other_embeddings(small_config, small_data, capsys):
    Trainer(small_config.replace(num_steps=4), data=small_data, progress=False).train()  # 24-d synthetic
    assert main(["eval", "--model", small_config.output_dir, "--encoder", "minilm", "--quiet"]) == 2
    assert "do not fit" in capsys.readouterr().err


def test_eval_without_dataset_or_model_fails_clearly(capsys):
    assert main(["eval", "--encoder", "minilm"]) == 2
    assert "--dataset" in capsys.readouterr().err
