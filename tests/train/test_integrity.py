"""The run folder's integrity: a sha256 of every artifact in a sealed manifest.json, the checkpoint's sealed
state.json with the sha256 of its tensors, checked on resume and by `eval --model`; damaged files are
one-line errors naming the file; folders written before hashes still load, with a warning."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from synthetic_collection import synthetic_encoded

from eggroll_ndcg import atomic
from eggroll_ndcg.cli import main
from eggroll_ndcg.train.checkpoint import UNVERIFIED_FORMAT, CheckpointError, load_checkpoint
from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.prepare import prepare_data
from eggroll_ndcg.train.run_folder import (ARTIFACTS, MANIFEST, RunFolder, load_trained_run, read_manifest,
                                           verify_run_folder)
from eggroll_ndcg.train.trainer import Trainer

CHECKPOINT_FILES = ("checkpoint/tensors.safetensors", "checkpoint/state.json")
EVAL_READS = ("config.json", "splits.json", "best_head.safetensors")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic_folder):
    """A finished short run (synthetic embeddings) and its config."""
    config = TrainConfig(task=str(synthetic_folder), encoder="minilm", pool_size=32, batch_queries=16,
                         method="infonce", learning_rate=0.05, num_steps=4, eval_every=2,
                         output_dir=str(tmp_path_factory.mktemp("integrity") / "run"))
    data = prepare_data(config, encoded=synthetic_encoded(synthetic_folder), progress=False)
    Trainer(config, data=data, progress=False).train()
    return config, data


@pytest.fixture()
def run(finished, tmp_path):
    """A copy of the finished run folder, and the config that resumes it."""
    config, data = finished
    copy = tmp_path / "copy"
    shutil.copytree(config.output_dir, copy)
    return copy, config.replace(output_dir=str(copy)), data


def _flips(path: Path):
    """Byte positions to flip: the start (for safetensors the header length and JSON header), a few more in the
    header region, the middle and the last byte; each with a low-bit and a high-bit mask."""
    size = path.stat().st_size
    for position in sorted({0, 3, 8, 12, 40, size // 2, size - 1}):
        if position < size:
            for mask in (0x01, 0x80):
                yield position, mask


def _flip(path: Path, position: int, mask: int) -> bytes:
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[position] ^= mask
    path.write_bytes(bytes(damaged))
    return original


def _named(path: Path) -> str:
    return str(Path(path.parent.name) / path.name) if path.parent.name == "checkpoint" else path.name


def test_every_artifact_is_recorded_in_the_sealed_manifest_and_the_checkpoint_seals_its_tensors(run):
    folder, _, _ = run
    manifest = read_manifest(folder)
    assert set(manifest) == set(ARTIFACTS)
    for name in ARTIFACTS:
        assert manifest[name] == [atomic.sha256_file(folder / name)], name
    state, sealed = atomic.parse_sealed_json((folder / "checkpoint" / "state.json").read_bytes())
    assert sealed and state["files"] == {"tensors.safetensors": atomic.sha256_file(folder / "checkpoint" /
                                                                                    "tensors.safetensors")}
    assert verify_run_folder(folder) == manifest
    trained = load_trained_run(folder)
    assert trained.config.method == "infonce" and set(trained.head_state) == {"linear.weight"}


@pytest.mark.parametrize("name", ARTIFACTS + (MANIFEST,) + CHECKPOINT_FILES)
def test_a_flipped_byte_or_a_truncation_of_any_artifact_is_refused_by_a_resume(name, run):
    folder, config, _ = run
    path = folder / name
    blamed = _named(folder / MANIFEST) if name == MANIFEST else _named(path)
    for position, mask in _flips(path):
        original = _flip(path, position, mask)
        with pytest.raises(CheckpointError, match=rf"{blamed}: ") as caught:
            RunFolder(folder).load_resumable(config)
        assert str(path) in str(caught.value), (position, mask)
        path.write_bytes(original)
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])
    with pytest.raises(CheckpointError, match=rf"{blamed}: "):
        RunFolder(folder).load_resumable(config)
    path.write_bytes(original)
    assert RunFolder(folder).load_resumable(config)["trainer"]["step"] == 4  # restored: resumes


@pytest.mark.parametrize("name", EVAL_READS + (MANIFEST,))
def test_a_flipped_byte_in_what_eval_reads_is_refused_by_the_loader(name, run):
    folder, _, _ = run
    path = folder / name
    for position, mask in _flips(path):
        original = _flip(path, position, mask)
        with pytest.raises(CheckpointError, match=rf"{path}: .*(sha256|seal|corrupt JSON)"):
            load_trained_run(folder)
        path.write_bytes(original)
    load_trained_run(folder)


def test_eval_model_of_a_tampered_run_folder_exits_2_naming_the_file(run, capsys):
    folder, _, _ = run
    for name, position in (("best_head.safetensors", -1), ("splits.json", 20)):
        path = folder / name
        original = _flip(path, position % path.stat().st_size, 0x01)
        assert main(["eval", "--model", str(folder), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"eggroll-ndcg: {path}: its sha256 differs" in err and "Traceback" not in err
        path.write_bytes(original)


def test_a_resume_of_a_tampered_checkpoint_fails_before_training(run):
    folder, config, data = run
    path = folder / "checkpoint" / "tensors.safetensors"
    _flip(path, path.stat().st_size - 1, 0x80)  # the last byte of a tensor: still a valid safetensors file
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=r"tensors\.safetensors: its sha256 differs from the one recorded"):
        Trainer(config, data=data, progress=False).train()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # nothing was written


def _make_unverified(folder: Path) -> None:
    """Turn a run folder into one written before hashes: no manifest, a format-1 unsealed state.json."""
    (folder / MANIFEST).unlink()
    state_path = folder / "checkpoint" / "state.json"
    body, _ = atomic.parse_sealed_json(state_path.read_bytes())
    state_path.write_text(json.dumps({"format": UNVERIFIED_FORMAT, "state": body["state"]}), encoding="utf-8")


def test_a_run_folder_written_before_hashes_loads_with_a_warning_and_a_resume_adds_the_manifest(run, caplog):
    folder, config, data = run
    _make_unverified(folder)
    with caplog.at_level(logging.WARNING):
        trained = load_trained_run(folder)
        load_checkpoint(folder / "checkpoint")
    assert set(trained.head_state) == {"linear.weight"}
    assert "no manifest.json (written before run folders recorded hashes)" in caplog.text
    assert "loading it unverified" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Trainer(config, data=data, progress=False).train()  # a complete run: rewrites its outputs
    assert "its files are not verified; a resume adds one" in caplog.text
    assert set(read_manifest(folder)) == set(ARTIFACTS)
    verify_run_folder(folder)


@pytest.mark.parametrize("name", EVAL_READS)
def test_damaged_files_of_an_unverified_run_folder_are_one_line_errors_naming_the_file(name, run, capsys):
    folder, _, _ = run
    _make_unverified(folder)  # no hashes: the parsers themselves must fail clearly
    path = folder / name
    original = path.read_bytes()
    # ({} would be a valid config of all defaults: a config that parses cannot be told from the run's own)
    wrong = b'{"no_such_field": 1}' if name == "config.json" else b"{}"
    for damaged in (original[: len(original) // 2], b"", b"\x00\xffgarbage\x93", b"[1, 2]", wrong):
        path.write_bytes(damaged)
        assert main(["eval", "--model", str(folder), "--quiet"]) == 2, damaged
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith(f"eggroll-ndcg: {path}"), (damaged, err)
    path.unlink()
    assert main(["eval", "--model", str(folder), "--quiet"]) == 2
    assert f"{path}: missing" in capsys.readouterr().err
