"""The project's own errors (DataError, UnknownSourceError, OfflineError, CheckpointError, ConfigError) print
one line and exit 2 from `train`, `eval` and `compare` alike; `--debug` shows the traceback."""

from __future__ import annotations

import json

import pytest

from eggroll_ndcg.cli import main

SMALL = ["--set", "pool_size=32", "--set", "batch_queries=16", "--set", "eval_every=2",
         "--set", "population_size=32", "--set", "sigma=0.05", "--quiet"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("eggroll-ndcg: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _run(command: str, task: str, tmp_path, *extra: str) -> int:
    argv = {
        "train": ["train", "--task", task, "--encoder", "minilm", "--output-dir", str(tmp_path / "run"), "--quiet"],
        "eval": ["eval", "--dataset", task, "--encoder", "minilm", "--quiet"],
        "compare": ["compare", "--task", task, "--encoder", "minilm", "--output-dir", str(tmp_path / "cmp"),
                    "--quiet"],
    }[command]
    return main(argv + list(extra))


COMMANDS = ["train", "eval", "compare"]


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_collection_folder_names_file_and_line(command, tiny_beir, tmp_path, capsys, fake_encoder):
    with open(tiny_beir / "corpus.jsonl", "a") as handle:
        handle.write('{"_id": "d9", "text": \n')
    assert _run(command, str(tiny_beir), tmp_path) == 2
    err = _one_line(capsys)
    assert "corpus.jsonl, line 6" in err and "invalid JSON" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_collection_folder_without_a_corpus(command, tiny_beir, tmp_path, capsys, fake_encoder):
    (tiny_beir / "corpus.jsonl").unlink()
    assert _run(command, str(tiny_beir), tmp_path) == 2
    _one_line(capsys)


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_data_folder(command, tmp_path, capsys, fake_encoder):
    assert _run(command, "scifact", tmp_path, "--data-dir", str(tmp_path / "no-such-folder")) == 2
    assert "scifact" in _one_line(capsys)


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_short_name(command, tmp_path, capsys, fake_encoder, monkeypatch):
    monkeypatch.delenv("EGGROLL_NDCG_DATA", raising=False)
    assert _run(command, "scifactt", tmp_path) == 2
    assert "scifactt" in _one_line(capsys)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_directory_where_a_qrels_file_should_be(command, tiny_beir, tmp_path, capsys, fake_encoder):
    (tiny_beir / "qrels" / "dev.tsv").mkdir()
    assert _run(command, str(tiny_beir), tmp_path) == 2
    assert "dev.tsv" in _one_line(capsys)


@pytest.mark.parametrize("command", COMMANDS)
def test_offline_hub_collection(command, tmp_path, capsys, fake_encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    assert _run(command, "NanoMSMARCO", tmp_path) == 2
    assert "HF_HUB_OFFLINE" in _one_line(capsys)


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_config_type_error(command, synthetic_folder, tmp_path, capsys, fake_encoder):
    assert _run(command, str(synthetic_folder), tmp_path, "--set", "num_steps=abc") == 2
    assert "num_steps" in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notarun").mkdir()
    assert main(["eval", "--model", str(tmp_path / "notarun"), "--quiet"]) == 2
    assert "notarun" in _one_line(capsys)


def test_train_resume_from_a_damaged_checkpoint(synthetic_folder, tmp_path, capsys, fake_encoder):
    argv = ["train", "--task", str(synthetic_folder), "--encoder", "minilm", "--output-dir", str(tmp_path / "run"),
            *SMALL]
    assert main(argv + ["--set", "num_steps=4"]) == 0
    capsys.readouterr()
    tensors = tmp_path / "run" / "checkpoint" / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:40])
    assert main(argv + ["--set", "num_steps=6"]) == 2
    assert "tensors.safetensors" in _one_line(capsys)


def test_debug_re_raises_the_project_error(tiny_beir, tmp_path, fake_encoder):
    from eggroll_ndcg.data.textfiles import DataError

    (tiny_beir / "queries.jsonl").write_text("not json\n")
    with pytest.raises(DataError):
        main(["--debug", "eval", "--dataset", str(tiny_beir), "--encoder", "minilm", "--quiet"])


def test_train_prints_metrics_after_a_clean_run(synthetic_folder, tmp_path, capsys, fake_encoder):
    """The happy path through the same pre-flight checks (fake 8-d encoder, 2 steps)."""
    argv = ["train", "--task", str(synthetic_folder), "--encoder", "minilm", "--output-dir", str(tmp_path / "run"),
            *SMALL, "--set", "num_steps=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["steps"] == 2


def test_encode_of_a_bad_collection_is_one_line_exit_2_like_the_other_commands(tiny_beir, capsys, fake_encoder):
    (tiny_beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td1\t1_0\n")
    assert main(["encode", str(tiny_beir), "--no-progress"]) == 2
    assert "qrels/test.tsv, line 2" in _one_line(capsys)


def test_encode_of_a_model_folder_that_cannot_be_loaded(tiny_beir, tmp_path, capsys):
    (tmp_path / "model").mkdir()
    assert main(["encode", str(tiny_beir), "--encoder", str(tmp_path / "model"), "--no-progress"]) == 2
    _one_line(capsys)


def test_eval_with_an_unknown_encoder_offline_is_one_line_naming_the_bundled_ones(tiny_beir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["eval", "--dataset", str(tiny_beir), "--encoder", "usee", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot load encoder 'usee'" in err and "'use'" in err
    assert len(err.strip().splitlines()) == 1
