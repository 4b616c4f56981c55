"""A complete run (metrics.json in place) is read back, verified, instead of trained again; its test run is a
deterministic gzip TREC file of `run_depth` documents per query; uncompressed runs of older folders are still
verified."""

from __future__ import annotations

import gzip
import shutil

import pytest
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.metrics import read_run
from eggroll_ndcg.train.checkpoint import CheckpointError
from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.prepare import prepare_data
from eggroll_ndcg.train.run_folder import OLD_TEST_RUN, TEST_RUN, RunFolder, _text_writer, verify_run_folder
from eggroll_ndcg.train.trainer import Trainer


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic_folder):
    config = TrainConfig(task=str(synthetic_folder), encoder="minilm", pool_size=32, batch_queries=16,
                         method="infonce", learning_rate=0.05, num_steps=4, eval_every=2, run_depth=150,
                         output_dir=str(tmp_path_factory.mktemp("complete") / "run"))
    data = prepare_data(config, encoded=synthetic_encoded(synthetic_folder), progress=False)
    trainer = Trainer(config, data=data, progress=False)
    return config, data, trainer.train(), trainer.test_per_query


@pytest.fixture()
def copy(finished, tmp_path):
    config, data, metrics, per_query = finished
    shutil.copytree(config.output_dir, tmp_path / "copy")
    return config.replace(output_dir=str(tmp_path / "copy")), data, metrics, per_query


def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a complete run was trained again")
    monkeypatch.setattr(Trainer, "_validate", fail)


@pytest.mark.parametrize("checkpoint", ["kept", "dropped"])
def test_a_complete_run_is_read_back_without_training(copy, monkeypatch, checkpoint):
    config, data, metrics, per_query = copy
    if checkpoint == "dropped":
        RunFolder(config.output_dir).drop_checkpoint()
        assert not (RunFolder(config.output_dir).checkpoint_dir).exists()
    _no_training(monkeypatch)
    trainer = Trainer(config, data=data, progress=False)
    assert trainer.train() == metrics and trainer.test_per_query == per_query


def test_a_complete_run_of_other_settings_is_refused_naming_the_field(copy):
    config, data, _, _ = copy
    with pytest.raises(ConfigError, match="differs in learning_rate"):
        Trainer(config.replace(learning_rate=0.5), data=data, progress=False).train()


def test_a_damaged_kept_checkpoint_of_a_complete_run_is_still_reported(copy, monkeypatch):
    config, data, _, _ = copy
    tensors = RunFolder(config.output_dir).checkpoint_dir / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-1] + b"\x00")
    _no_training(monkeypatch)
    with pytest.raises(CheckpointError, match="tensors.safetensors"):
        Trainer(config, data=data, progress=False).train()


def test_an_unfinished_run_keeps_its_checkpoint(tmp_path):
    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="not a complete run"):
        RunFolder(tmp_path / "run").drop_checkpoint()
    assert (tmp_path / "run" / "checkpoint").is_dir()


def test_the_test_run_is_gzip_with_run_depth_documents_per_query(finished):
    config, _, _, per_query = finished
    path = RunFolder(config.output_dir).path / TEST_RUN
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    run = read_run(path)
    assert set(run) == set(per_query) and {len(docs) for docs in run.values()} == {150}
    assert gzip.decompress(path.read_bytes()).decode().splitlines()[0].endswith(" 1 " + repr(max(
        run[sorted(run)[0]].values())) + " infonce")


def test_run_depth_below_100_is_refused():
    with pytest.raises(ConfigError, match="'run_depth': must be >= 100"):
        TrainConfig(run_depth=10).validate()


def test_an_uncompressed_test_run_of_an_older_folder_is_still_verified(copy):
    config, _, _, _ = copy
    folder = RunFolder(config.output_dir)
    folder._commit({OLD_TEST_RUN: _text_writer("q Q0 d 1 1.0 old\n")})
    verify_run_folder(folder.path)
    (folder.path / OLD_TEST_RUN).write_text("q Q0 d 1 2.0 old\n")
    with pytest.raises(CheckpointError, match="test_run.trec: its sha256 differs"):
        verify_run_folder(folder.path)
