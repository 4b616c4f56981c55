"""Top-k retrieval: exact equals brute force, the trec_eval tie rule, FAISS equals exact, TREC runs."""

from __future__ import annotations

import pytest
import torch

from eggroll_ndcg.data.retrieval import retrieve, tie_order, to_run


def _random(q: int, d: int, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(q, dim, generator=g), torch.randn(d, dim, generator=g)


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_exact_equals_brute_force(chunk_size):
    queries, docs = _random(23, 101)
    scores, indices = retrieve(queries, docs, 10, method="exact", chunk_size=chunk_size)
    full = queries @ docs.T
    expected_scores, expected_indices = torch.sort(full, dim=1, descending=True, stable=True)
    assert scores.shape == indices.shape == (23, 10) and indices.dtype == torch.long
    assert torch.equal(indices, expected_indices[:, :10])
    torch.testing.assert_close(scores, expected_scores[:, :10])


def test_ties_rank_the_larger_doc_id_first():
    docs = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]])
    doc_ids = ("b", "d", "a", "c", "z")
    query = torch.tensor([[1.0, 0.0]])
    _, indices = retrieve(query, docs, 4, doc_ids=doc_ids, method="exact")
    assert [doc_ids[i] for i in indices[0].tolist()] == ["d", "c", "b", "a"]
    _, indices = retrieve(query, docs, 2, doc_ids=doc_ids, method="exact")
    assert [doc_ids[i] for i in indices[0].tolist()] == ["d", "c"], "the cut keeps the tie winners"
    _, indices = retrieve(query, docs, 4, method="exact")
    assert indices[0].tolist() == [0, 1, 2, 3], "without ids, the lower index wins"


def test_tie_order_is_byte_order_descending():
    ids = ("10", "9", "a", "B", "é", "100")
    order = tie_order(ids)
    assert [ids[i] for i in order] == sorted(ids, key=lambda s: s.encode("utf-8"), reverse=True)


def test_k_is_clipped_and_numpy_inputs_work():
    queries, docs = _random(3, 5)
    scores, indices = retrieve(queries.numpy(), docs.numpy(), 50)
    assert scores.shape == (3, 5)
    assert sorted(indices[0].tolist()) == list(range(5))


def test_faiss_equals_exact():
    pytest.importorskip("faiss")
    queries, docs = _random(11, 300, dim=32, seed=3)
    doc_ids = tuple(f"doc{i}" for i in range(300))
    exact_scores, exact_indices = retrieve(queries, docs, 20, doc_ids=doc_ids, method="exact")
    faiss_scores, faiss_indices = retrieve(queries, docs, 20, doc_ids=doc_ids, method="faiss")
    assert torch.equal(exact_indices, faiss_indices)
    torch.testing.assert_close(exact_scores, faiss_scores, rtol=1e-5, atol=1e-5)
    # ties: FAISS results follow the same doc-id-descending rule
    tied = torch.tensor([[1.0, 0.0]] * 5)
    ids = ("3", "1", "4", "0", "2")
    _, indices = retrieve(torch.tensor([[1.0, 0.0]]), tied, 5, doc_ids=ids, method="faiss")
    assert [ids[i] for i in indices[0].tolist()] == ["4", "3", "2", "1", "0"]


def test_auto_picks_exact_for_small_corpora(monkeypatch):
    import eggroll_ndcg.data.retrieval as retrieval

    calls = []
    monkeypatch.setattr(retrieval, "_faiss", lambda *a: calls.append("faiss") or (None, None))
    queries, docs = _random(2, 10)
    retrieve(queries, docs, 3)
    assert calls == []
    monkeypatch.setattr(retrieval, "EXACT_MAX_DOCS", 5)
    retrieve(queries, docs, 3)
    assert calls == ["faiss"]


def test_to_run_builds_a_trec_run_and_skips_padding():
    scores = torch.tensor([[0.9, 0.5], [0.7, 0.0]])
    indices = torch.tensor([[2, 0], [1, -1]])
    run = to_run(["q1", "q2"], ["d0", "d1", "d2"], scores, indices)
    assert run == {"q1": {"d2": pytest.approx(0.9), "d0": 0.5}, "q2": {"d1": pytest.approx(0.7)}}
    with pytest.raises(ValueError):
        to_run(["q1"], ["d0"], scores, indices)
