"""`eggroll-ndcg encode` fills the cache for the corpus and the labelled queries."""

from __future__ import annotations

import json

import eggroll_ndcg.encoders as encoders
from eggroll_ndcg.cli import main

from _fake_encoder import FakeEncoder


def _tiny_beir(root):
    root.mkdir()
    (root / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"document {i}"}) for i in range(5)) + "\n"
    )
    (root / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) for i in range(3)) + "\n"
    )
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td1\t1\nq2\td3\t1\n")
    return root


def test_encode_command_fills_the_cache(tmp_path, monkeypatch, capsys):
    folder = _tiny_beir(tmp_path / "tiny")
    fake = FakeEncoder()
    monkeypatch.setattr(encoders, "load_encoder", lambda name, device="cpu": fake)
    cache = tmp_path / "cache"
    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(cache))
    assert main(["encode", str(folder), "--encoder", "fake", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "5 documents, 2 labelled queries" in out
    files = sorted(cache.rglob("*.safetensors"))
    assert len(files) == 2 and all(str(f) in out for f in files)
    assert main(["encode", str(folder), "--encoder", "fake", "--no-progress"]) == 0
    assert fake.calls == 2, "the second run is served from the cache"
