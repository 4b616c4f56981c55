"""Fixtures for the command-line tests: a synthetic BEIR folder, a fast fake encoder, a private cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encoders"))
from _fake_encoder import FakeEncoder  # noqa: E402


@pytest.fixture()
def tiny_beir(tmp_path) -> Path:
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"document {i}"}) for i in range(5)) + "\n")
    (root / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) for i in range(3)) + "\n")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td1\t1\nq2\td3\t1\n")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty embedding cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(cache))
    return cache


@pytest.fixture()
def fake_encoder(monkeypatch) -> FakeEncoder:
    """`load_encoder` (everywhere the commands call it) returns a fast deterministic fake."""
    import eggroll_ndcg.encoders as encoders
    import eggroll_ndcg.train.prepare as prepare

    fake = FakeEncoder()
    monkeypatch.setattr(encoders, "load_encoder", lambda name, device="cpu": fake)
    monkeypatch.setattr(prepare, "load_encoder", lambda name, device="cpu": fake)
    return fake


@pytest.fixture()
def no_loading(monkeypatch):
    """Fail the test if a command resolves a collection or loads an encoder: pre-flight checks come first."""
    import eggroll_ndcg.data.sources as sources
    import eggroll_ndcg.encoders as encoders
    import eggroll_ndcg.experiments.compare as compare
    import eggroll_ndcg.train.prepare as prepare

    def forbidden(*args, **kwargs):
        raise AssertionError("loaded data or a model before the pre-flight checks")

    for module, name in ((sources, "resolve"), (prepare, "resolve"), (compare, "resolve"),
                         (encoders, "load_encoder"), (prepare, "load_encoder"), (prepare, "prepare_data")):
        monkeypatch.setattr(module, name, forbidden)
