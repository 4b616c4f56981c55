"""Serving quantized codes: FAISS IndexBinaryFlat search equals the exact computation with the tie rule,
and the trainer's full-corpus evaluation goes through the quantized index."""

from __future__ import annotations

import pytest
import torch

from eggroll_ndcg.data.retrieval import retrieve
from eggroll_ndcg.quant.outputs import OutputCodec, binary_codes, make_codec
from eggroll_ndcg.quant.serving import quantized_retrieve, search_timing


def _ids(n):
    return [f"d{(i * 37) % n:04d}" for i in range(n)]  # ids not in corpus order


def test_faiss_binary_search_equals_exact_with_ties_and_identical_ids():
    g = torch.Generator().manual_seed(0)
    docs = torch.randn(300, 16, generator=g)  # 16 bits: many equal Hamming scores, tie groups cut at k
    docs[100:140] = docs[7]  # exact duplicates: one big tie group
    queries = torch.randn(25, 16, generator=g)
    queries[0] = docs[7]
    doc_ids = _ids(300)
    query_ids = [doc_ids[5], "q1"] + [f"q{i}" for i in range(2, 25)]  # query 0 shares a document's id
    codec = OutputCodec("binary")
    for k in (1, 10, 45):
        fs, fi = quantized_retrieve(codec, queries, docs, k, doc_ids=doc_ids, query_ids=query_ids, method="faiss")
        es, ei = retrieve(binary_codes(queries), binary_codes(docs), k, doc_ids=doc_ids, query_ids=query_ids,
                          method="exact")
        assert torch.equal(fi, ei) and torch.equal(fs, es)
    assert doc_ids.index(query_ids[0]) not in fi[0].tolist()


def test_int8_and_asymmetric_exact_paths_score_integer_codes_and_float_queries():
    g = torch.Generator().manual_seed(1)
    docs, queries = torch.randn(50, 8, generator=g), torch.randn(4, 8, generator=g)
    codec = make_codec("int8", docs, normalize=True)
    scores, indices = quantized_retrieve(codec, queries, docs, 5, doc_ids=_ids(50))
    expected = codec.query_codes(queries) @ codec.doc_codes(docs).T
    assert torch.equal(scores, expected.gather(1, indices))
    assert torch.equal(scores, scores.round())  # int32 values
    asym = OutputCodec("binary_asym")
    scores, indices = quantized_retrieve(asym, queries, docs, 5, doc_ids=_ids(50))
    torch.testing.assert_close(scores, (torch.nn.functional.normalize(queries, dim=-1) @ binary_codes(docs).T)
                               .gather(1, indices))
    with pytest.raises(ValueError, match="serves quantize=binary"):
        quantized_retrieve(codec, queries, docs, 5, doc_ids=_ids(50), method="faiss")


def test_search_timing_reports_bits_and_index_size():
    docs, queries = torch.randn(64, 32), torch.randn(3, 32)
    timing = search_timing(OutputCodec("binary"), queries, docs, _ids(64), k=5, repeats=1)
    assert timing["bits_per_document"] == 32 and timing["index_bytes"] == 64 * 4
