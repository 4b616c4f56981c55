"""The content-addressed embedding cache: keys, reuse, corruption detection, atomic writes."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest
import torch

from eggroll_ndcg.encoders import CacheCorruptionWarning, cache_key, cache_path, default_cache_dir, encode_cached
from eggroll_ndcg.encoders import cache as cache_module

from _fake_encoder import FakeEncoder

TEXTS = ["alpha beta", "gamma", "delta epsilon zeta", "한국어 문장"]


def test_key_changes_with_text_encoder_and_kind():
    enc = FakeEncoder()
    base = cache_key(enc, TEXTS, kind="document")
    assert base == cache_key(FakeEncoder(), list(TEXTS), kind="document")
    assert base != cache_key(enc, TEXTS[:-1] + ["한국어 문장!"], kind="document")
    assert base != cache_key(enc, list(reversed(TEXTS)), kind="document")
    assert base != cache_key(enc, TEXTS, kind="query")
    assert base != cache_key(FakeEncoder(identity="fake-v2"), TEXTS, kind="document")
    # length prefixes: moving a boundary between texts changes the key
    assert cache_key(enc, ["ab", "c"], kind="query") != cache_key(enc, ["a", "bc"], kind="query")


def test_second_call_is_served_from_cache(tmp_path):
    enc = FakeEncoder()
    first = encode_cached(enc, TEXTS, kind="document", cache_dir=tmp_path, progress=False)
    second = encode_cached(enc, TEXTS, kind="document", cache_dir=tmp_path, progress=False)
    assert enc.calls == 1
    assert first.dtype == torch.float32 and first.shape == (len(TEXTS), enc.dim)
    assert torch.equal(first, second)
    encode_cached(enc, TEXTS, kind="query", cache_dir=tmp_path, progress=False)
    assert enc.calls == 2


def test_cache_dir_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    enc = FakeEncoder()
    encode_cached(enc, TEXTS, kind="query", progress=False)
    assert cache_path(cache_key(enc, TEXTS, kind="query")).is_file()
    assert str(cache_path("ab" * 32)).startswith(str(tmp_path / "env-cache"))


def _entry(tmp_path) -> tuple[FakeEncoder, Path, torch.Tensor]:
    enc = FakeEncoder()
    expected = encode_cached(enc, TEXTS, kind="document", cache_dir=tmp_path, progress=False)
    return enc, cache_path(cache_key(enc, TEXTS, kind="document"), tmp_path), expected


def _reload_expect_rebuild(enc, tmp_path, expected):
    with pytest.warns(CacheCorruptionWarning):
        again = encode_cached(enc, TEXTS, kind="document", cache_dir=tmp_path, progress=False)
    assert enc.calls == 2, "the entry must be rebuilt, not used"
    assert torch.equal(again, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(encode_cached(enc, TEXTS, kind="document", cache_dir=tmp_path, progress=False), expected)
    assert enc.calls == 2, "the rebuilt entry is valid and reused"


def test_corrupt_matrix_bytes_are_detected_and_rebuilt(tmp_path):
    enc, path, expected = _entry(tmp_path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF                                   # flip a byte inside the float data
    path.write_bytes(bytes(data))
    _reload_expect_rebuild(enc, tmp_path, expected)


def test_truncated_file_is_detected_and_rebuilt(tmp_path):
    enc, path, expected = _entry(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])
    _reload_expect_rebuild(enc, tmp_path, expected)


def test_garbage_and_empty_files_are_detected_and_rebuilt(tmp_path):
    enc, path, expected = _entry(tmp_path)
    path.write_bytes(b"")
    _reload_expect_rebuild(enc, tmp_path, expected)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    enc.calls = 1
    _reload_expect_rebuild(enc, tmp_path, expected)


def test_entry_of_another_key_is_not_used(tmp_path):
    enc, path, expected = _entry(tmp_path)
    other = encode_cached(enc, TEXTS[:1] * 4, kind="document", cache_dir=tmp_path, progress=False)  # same shape
    other_path = cache_path(cache_key(enc, TEXTS[:1] * 4, kind="document"), tmp_path)
    path.write_bytes(other_path.read_bytes())
    enc.calls = 1
    _reload_expect_rebuild(enc, tmp_path, expected)
    assert not torch.equal(other, expected)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    enc = FakeEncoder()
    path = cache_path(cache_key(enc, TEXTS, kind="document"), tmp_path)

    def failing_replace(src, dst):
        raise OSError("disk full (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(cache_module.os, "replace", failing_replace)
        with pytest.raises(OSError, match="simulated"):
            encode_cached(enc, TEXTS, kind="document", cache_dir=tmp_path, progress=False)
    assert not path.exists()
    assert list(path.parent.iterdir()) == [], "the temp file is removed too"
    encode_cached(enc, TEXTS, kind="document", cache_dir=tmp_path, progress=False)
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == sorted([path.name, path.with_suffix(".json").name]), "only the entry and its sidecar remain"


def test_entry_is_plain_safetensors_with_checksum(tmp_path):
    from safetensors import safe_open

    enc, path, expected = _entry(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        assert torch.equal(handle.get_tensor("embeddings"), expected)
    assert meta["shape"] == f"{len(TEXTS)},{enc.dim}"
    assert meta["sha256"] == hashlib.sha256(expected.numpy().tobytes()).hexdigest()
