"""Property tests: the batched torch metrics and trec.evaluate equal pytrec_eval on thousands of random runs."""

from __future__ import annotations

import pytest
import pytrec_eval
import torch

from _metrics_cases import KS, METHODS, random_cases, to_pools
from eggroll_ndcg.metrics import evaluate, rank_count, ranking_metrics, relevant

N_QUERIES = 3000
OURS_TO_TREC = {"ndcg": "ndcg_cut_{k}", "recall": "recall_{k}", "map": "map_cut_{k}"}


@pytest.fixture(scope="module")
def oracle():
    """Random runs (many ties), their qrels and pytrec_eval's values for every query."""
    run, qrels = random_cases(N_QUERIES, seed=1234)
    cuts = ",".join(map(str, KS))
    evaluator = pytrec_eval.RelevanceEvaluator(
        qrels, {f"ndcg_cut.{cuts}", f"recall.{cuts}", f"map_cut.{cuts}", "recip_rank", "ndcg", "map"})
    return run, qrels, evaluator.evaluate(run)


def test_the_random_cases_have_ties_empty_runs_and_queries_without_relevant_documents(oracle):
    run, qrels, _ = oracle
    assert sum(len(set(s.values())) < len(s) for s in run.values()) > N_QUERIES // 3
    assert sum(len(s) == 0 for s in run.values()) > 50
    assert sum(all(g == 0 for g in j.values()) for j in qrels.values()) > 50
    assert sum(len(s) < 100 for s in run.values()) > N_QUERIES // 2  # k = 100 longer than the run


def test_trec_evaluate_equals_pytrec_eval_on_random_tied_runs(oracle):
    run, qrels, expected = oracle
    measures = [f"{name}@{k}" for name in OURS_TO_TREC for k in KS] + ["mrr", "ndcg", "map"]
    got = evaluate(run, qrels, measures=measures).per_query
    assert set(got) == set(expected)
    for qid, values in expected.items():
        for name, pattern in OURS_TO_TREC.items():
            for k in KS:
                assert got[qid][f"{name}@{k}"] == pytest.approx(values[pattern.format(k=k)], abs=1e-9), (qid, name, k)
        assert got[qid]["mrr"] == pytest.approx(values["recip_rank"], abs=1e-9), qid
        assert got[qid]["ndcg"] == pytest.approx(values["ndcg"], abs=1e-9), qid
        assert got[qid]["map"] == pytest.approx(values["map"], abs=1e-9), qid


def test_trec_mrr_at_k_equals_recip_rank_when_k_covers_the_run(oracle):
    run, qrels, expected = oracle
    got = evaluate(run, qrels, measures=[f"mrr@{k}" for k in KS]).per_query
    checked = 0
    for qid, values in expected.items():
        for k in KS:
            if k >= len(run[qid]):
                assert got[qid][f"mrr@{k}"] == pytest.approx(values["recip_rank"], abs=1e-9)
                checked += 1
    assert checked > N_QUERIES


@pytest.mark.parametrize("method", METHODS)
def test_batched_torch_metrics_equal_pytrec_eval_on_random_tied_runs(oracle, method):
    check_batched_against_pytrec_eval(oracle, method)


def test_the_compiled_rank_kernel_equals_pytrec_eval(oracle, monkeypatch):
    """The rank path with the fused kernel forced on (float64, ties, masks, up to 40 relevant per pool)."""
    if not rank_count.compiled_kernel_usable(torch.device("cpu")):
        pytest.skip("torch.compile is unavailable here (no C++ compiler or turned off)")
    monkeypatch.setattr(rank_count, "MIN_COMPILED_WORK", 0)
    monkeypatch.setattr(relevant, "MIN_COMPILED_WORK", 0)
    check_batched_against_pytrec_eval(oracle, "rank")
    assert relevant._SUMS, "the compiled measure sums did not run"
    for compiled in (rank_count._COMPILED, *relevant._SUMS.values()):
        assert compiled.failed is None and compiled.keys, "the compiled kernels did not run"


def check_batched_against_pytrec_eval(oracle, method: str) -> None:
    run, qrels, expected = oracle
    qids = sorted(run)
    scores, grades, mask, ideal = to_pools(run, qrels, qids, dtype=torch.float64)
    ks = list(KS) + [1000]  # 1000 covers every run: MRR@1000 = recip_rank
    out = ranking_metrics(scores, grades, ks=ks, ideal_grades=ideal, mask=mask, method=method)
    for name, pattern in OURS_TO_TREC.items():
        for j, k in enumerate(KS):
            want = torch.tensor([expected[q][pattern.format(k=k)] for q in qids], dtype=torch.float64)
            torch.testing.assert_close(out[name][:, j], want, atol=1e-9, rtol=0, msg=f"{name}@{k}")
    want_rr = torch.tensor([expected[q]["recip_rank"] for q in qids], dtype=torch.float64)
    torch.testing.assert_close(out["mrr"][:, -1], want_rr, atol=1e-9, rtol=0)
    lengths = mask.sum(-1)
    for j, k in enumerate(KS):
        covered = lengths <= k
        torch.testing.assert_close(out["mrr"][covered, j], want_rr[covered], atol=1e-9, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_batched_metrics_with_a_member_dimension_equal_pytrec_eval(oracle, method):
    """scores [N, Q, P] with grades, mask [Q, P] and ideal_grades [Q, J] broadcast over members."""
    run, qrels, expected = oracle
    qids = sorted(run)[:200]
    scores, grades, mask, ideal = to_pools(run, qrels, qids)
    generator = torch.Generator().manual_seed(0)
    members = torch.randint(0, 3, (4, *scores.shape), generator=generator).double()  # heavy ties
    members[0] = scores
    out = ranking_metrics(members, grades, ks=[10], ideal_grades=ideal, mask=mask, measures=("ndcg", "map"),
                          method=method)
    assert out["ndcg"].shape == (4, len(qids), 1)
    for n in range(4):
        member_run = {q: {d: float(members[n, i, sorted(run[q], reverse=True).index(d)]) for d in run[q]}
                      for i, q in enumerate(qids)}
        member_qrels = {q: qrels[q] for q in qids}
        want = pytrec_eval.RelevanceEvaluator(member_qrels, {"ndcg_cut.10", "map_cut.10"}).evaluate(member_run)
        for i, q in enumerate(qids):
            assert out["ndcg"][n, i, 0].item() == pytest.approx(want[q]["ndcg_cut_10"], abs=1e-9)
            assert out["map"][n, i, 0].item() == pytest.approx(want[q]["map_cut_10"], abs=1e-9)
