"""Pre-flight checks: a missing device, an unwritable output or cache fails in one line before any loading.

Tests run as root here, and root ignores mode bits, so "read-only" is simulated by replacing the write probe
(`checks.probe_write`) or made real by putting the path under a regular file, which no user can write into.
"""

from __future__ import annotations

import pytest
import torch

from eggroll_ndcg.cli import checks, main


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("eggroll-ndcg: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _commands(folder, out):
    """train, eval, compare and encode, each pointed at `folder` and writing under `out`."""
    return {
        "train": ["train", "--task", str(folder), "--encoder", "minilm", "--output-dir", str(out), "--quiet"],
        "eval": ["eval", "--dataset", str(folder), "--encoder", "minilm", "--quiet"],
        "compare": ["compare", "--task", str(folder), "--encoder", "minilm", "--output-dir", str(out), "--quiet"],
        "encode": ["encode", str(folder), "--no-progress"],
    }


@pytest.fixture()
def no_cuda(monkeypatch):
    """A machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("command", ["train", "eval", "compare", "encode"])
def test_cuda_on_a_machine_without_it_is_one_line_before_any_work(command, synthetic_folder, tmp_path, capsys,
                                                                  no_cuda, no_loading):
    assert main(_commands(synthetic_folder, tmp_path / "out")[command] + ["--device", "cuda"]) == 2
    err = _one_line(capsys)
    assert "--device cuda" in err and "CUDA is not available" in err and "available: cpu" in err
    assert "device_count() = 0" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_here_without_simulation_names_what_is_available(synthetic_folder, tmp_path, capsys, no_loading):
    """The real torch of this (CPU-only) machine, nothing monkeypatched."""
    assert main(_commands(synthetic_folder, tmp_path / "out")["train"] + ["--device", "cuda"]) == 2
    assert "available: cpu only" in _one_line(capsys)


def test_cuda_index_beyond_the_device_count_lists_the_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    checks.check_device("cuda:1")
    with pytest.raises(checks.PreflightError, match=r"cuda:2: no such CUDA device; available: cpu, cuda:0, cuda:1"):
        checks.check_device("cuda:2")


def test_a_device_that_is_not_a_device_name_is_one_line(synthetic_folder, tmp_path, capsys, no_loading):
    assert main(_commands(synthetic_folder, tmp_path)["encode"] + ["--device", "gpu"]) == 2
    assert "not a device name" in _one_line(capsys)


@pytest.mark.parametrize("command", ["train", "compare"])
def test_output_dir_that_is_an_existing_file(command, synthetic_folder, tmp_path, capsys, no_loading):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    assert main(_commands(synthetic_folder, out)[command]) == 2
    err = _one_line(capsys)
    assert str(out) in err and "not a directory" in err
    assert out.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["train", "compare"])
def test_output_dir_under_a_regular_file_cannot_be_created_even_by_root(command, synthetic_folder, tmp_path, capsys,
                                                                        no_loading):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run"
    assert main(_commands(synthetic_folder, out)[command]) == 2
    err = _one_line(capsys)
    assert str(out) in err and f"{tmp_path / 'file'} is a file" in err


@pytest.mark.parametrize("command", ["train", "compare"])
def test_read_only_output_dir(command, synthetic_folder, tmp_path, capsys, monkeypatch, no_loading):
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    real_probe = checks.probe_write
    monkeypatch.setattr(checks, "probe_write",
                        lambda d: "Read-only file system" if d == readonly else real_probe(d))
    assert main(_commands(synthetic_folder, readonly / "run")[command]) == 2
    err = _one_line(capsys)
    assert "output directory" in err and "not writable (Read-only file system in" in err and str(readonly) in err


def test_the_write_probe_really_writes():
    """As root os.access says yes to everything; the probe also creates a file, which a read-only mount refuses."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        assert checks.probe_write(Path(folder)) is None
        assert list(Path(folder).iterdir()) == []  # the probe file is removed
    assert checks.probe_write(Path("/proc/self")) is not None  # procfs refuses new files, even to root


@pytest.mark.parametrize("command", ["train", "eval", "compare", "encode"])
def test_read_only_embedding_cache(command, synthetic_folder, tmp_path, capsys, monkeypatch, private_cache,
                                   no_loading):
    private_cache.mkdir()
    real_probe = checks.probe_write
    monkeypatch.setattr(checks, "probe_write",
                        lambda d: "Read-only file system" if d == private_cache else real_probe(d))
    assert main(_commands(synthetic_folder, tmp_path / "out")[command]) == 2
    err = _one_line(capsys)
    assert "embedding cache ($EGGROLL_NDCG_CACHE)" in err and str(private_cache) in err
    assert "set EGGROLL_NDCG_CACHE to a writable folder" in err


def test_embedding_cache_under_a_regular_file(synthetic_folder, tmp_path, capsys, monkeypatch, no_loading):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(tmp_path / "file" / "cache"))
    assert main(_commands(synthetic_folder, tmp_path / "out")["train"]) == 2
    assert "is a file, not a directory" in _one_line(capsys)


def test_eval_run_out_that_is_a_directory(synthetic_folder, tmp_path, capsys, no_loading):
    assert main(_commands(synthetic_folder, tmp_path)["eval"] + ["--run-out", str(tmp_path)]) == 2
    assert "--run-out" in _one_line(capsys)


def test_eval_run_out_under_a_regular_file(synthetic_folder, tmp_path, capsys, no_loading):
    (tmp_path / "file").write_text("x")
    assert main(_commands(synthetic_folder, tmp_path)["eval"] + ["--run-out", str(tmp_path / "file" / "r.trec")]) == 2
    assert f"its folder {tmp_path / 'file'} exists and is not a directory" in _one_line(capsys)


def test_a_directory_where_a_cache_entry_should_be(tiny_beir, fake_encoder, private_cache, capsys):
    from eggroll_ndcg.data.beir import load_beir
    from eggroll_ndcg.encoders.cache import cache_key, cache_path

    entry = cache_path(cache_key(fake_encoder, list(load_beir(tiny_beir).doc_texts), kind="document"))
    entry.mkdir(parents=True)
    from eggroll_ndcg.encoders.cache import CacheCorruptionWarning

    with pytest.warns(CacheCorruptionWarning, match="invalid"):
        assert main(["encode", str(tiny_beir), "--encoder", "fake", "--no-progress"]) == 2
    assert _one_line(capsys).startswith(f"eggroll-ndcg: {entry}: a directory where a file should be")
    assert entry.is_dir() and not list(entry.parent.glob(".*.tmp"))  # nothing half-written left beside it


def test_debug_shows_the_traceback(synthetic_folder, tmp_path, no_cuda, no_loading):
    with pytest.raises(checks.PreflightError, match="CUDA is not available"):
        main(["--debug"] + _commands(synthetic_folder, tmp_path)["train"] + ["--device", "cuda"])


def test_an_os_error_during_a_command_is_one_line_naming_the_path(tiny_beir, fake_encoder, capsys, monkeypatch):
    """The safety net behind the checks: e.g. a disk that fills while the cache entry is written."""
    import eggroll_ndcg.encoders.cache as cache

    def full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(cache, "_atomic_write_bytes", full)
    assert main(["encode", str(tiny_beir), "--encoder", "fake", "--no-progress"]) == 2
    err = _one_line(capsys)
    assert "No space left on device" in err and ".safetensors" in err


def test_ctrl_c_is_one_line_with_exit_130(tiny_beir, capsys, monkeypatch):
    import eggroll_ndcg.encoders as encoders

    def interrupted(name, device="cpu"):
        raise KeyboardInterrupt

    monkeypatch.setattr(encoders, "load_encoder", interrupted)
    assert main(["encode", str(tiny_beir), "--no-progress"]) == 130
    assert "interrupted" in _one_line(capsys)


def test_warnings_print_as_one_line_without_the_source_line():
    from eggroll_ndcg.cli.errors import one_line_warning
    from eggroll_ndcg.encoders.cache import CacheCorruptionWarning

    text = one_line_warning("entry x is invalid; rebuilding it", CacheCorruptionWarning, "cache.py", 185, "src")
    assert text == "eggroll-ndcg: warning: entry x is invalid; rebuilding it (CacheCorruptionWarning)\n"
