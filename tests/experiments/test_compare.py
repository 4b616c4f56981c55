"""`compare`: the protocol, the deterministic results.json, the report and the plots."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_collection import synthetic_encoded, write_synthetic_beir

from eggroll_ndcg.experiments.compare import CompareConfig, Comparison
from eggroll_ndcg.train.config import ConfigError, TrainConfig


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("compare") / "synthetic"
    write_synthetic_beir(path)
    return path


def _config(folder: Path, out: Path) -> CompareConfig:
    base = TrainConfig(task=str(folder), encoder="minilm", pool_size=32, batch_queries=16, num_steps=8,
                       eval_every=4, population_size=32, sigma=0.05)
    return CompareConfig(base=base, methods=("eggroll", "infonce"), seeds=(0, 1),
                         sweep={"eggroll": {"learning_rate": [0.01, 0.05]}, "infonce": {"learning_rate": [0.001, 0.01]}},
                         output_dir=str(out))


@pytest.fixture(scope="module")
def compared(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "a"
    results = Comparison(_config(folder, out), encoded=synthetic_encoded(folder), progress=False).run()
    return out, results


def test_same_config_and_seed_give_the_same_results_json(compared, folder, tmp_path):
    out, _ = compared
    Comparison(_config(folder, tmp_path / "b"), encoded=synthetic_encoded(folder), progress=False).run()
    assert (out / "results.json").read_text() == (tmp_path / "b" / "results.json").read_text()


def test_compare_keeps_no_final_checkpoint_and_a_rerun_reads_the_complete_runs_without_training(
        compared, folder, monkeypatch):
    out, _ = compared
    runs = sorted(p.parent for p in (out / "runs").rglob("metrics.json"))
    assert runs and not any((run / "checkpoint").exists() for run in runs)
    before = (out / "results.json").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a complete run was trained again")

    monkeypatch.setattr("eggroll_ndcg.train.trainer.Trainer._validate", no_training)
    Comparison(_config(folder, out), encoded=synthetic_encoded(folder), progress=False).run()
    assert (out / "results.json").read_text() == before


def test_results_hold_every_method_with_seeds_and_significance(compared):
    out, results = compared
    assert set(results["methods"]) == {"zero-shot", "eggroll", "infonce"}
    for method in ("eggroll", "infonce"):
        assert set(results["methods"][method]["runs"]) == {"0", "1"}
        assert len(results["methods"][method]["sweep"]) == 2
    table = results["summary"]["table"]
    assert table["zero-shot"]["test/ndcg@10"][1] == 0.0  # zero-shot is deterministic over seeds
    rows = {(r["method"], r["reference"], r["queries"]) for r in results["summary"]["significance"]}
    assert ("eggroll", "zero-shot", "all") in rows and ("infonce", "eggroll", "all") in rows
    assert all(r["holm_p"] >= r["randomization_p"] for r in results["summary"]["significance"])
    markdown = (out / "results.md").read_text()
    assert "| eggroll |" in markdown and "Holm" in markdown
    for plot in ("learning_curves.png", "train_val_gap.png"):
        assert (out / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_md_is_rebuilt_exactly_from_the_saved_json(compared):
    """The report reads results.json as written (keys sorted), so results.md can be regenerated from disk."""
    import json

    from eggroll_ndcg.experiments.report import write_markdown

    out, _ = compared
    results = json.loads((out / "results.json").read_text())
    timings = json.loads((out / "timings.json").read_text())
    markdown = write_markdown(results, timings)
    assert markdown == (out / "results.md").read_text()
    assert "{'learning_rate': 0.01} -> 0." in markdown


def test_sweep_choice_uses_validation_only(compared):
    out, results = compared
    for method in ("eggroll", "infonce"):
        entry = results["methods"][method]
        best = max(entry["sweep"], key=lambda row: row["val/ndcg@10"])
        assert entry["chosen"] == best["values"]


def test_compare_rejects_a_sweep_value_that_cannot_run(folder, tmp_path):
    config = _config(folder, tmp_path)
    config.sweep = {"eggroll": {"population_size": [31]}}
    with pytest.raises(ConfigError, match="population_size"):
        config.validate()


def test_every_packaged_config_is_a_valid_comparison():
    """Each YAML shipped in the package loads and validates, and writes to a folder named after itself."""
    from eggroll_ndcg.cli.train_cmd import PACKAGED_CONFIGS

    paths = sorted(PACKAGED_CONFIGS.glob("*.yaml"))
    assert {p.stem for p in paths} >= {"stdlib-code", "scifact", "scifact-unseen-val", "squad", "trec-dl19",
                                        "autorag-ko"}
    for path in paths:
        config = CompareConfig.from_yaml(path).validate()
        assert config.base.validate() and config.output_dir.endswith(path.stem), path
