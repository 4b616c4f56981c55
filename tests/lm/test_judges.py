"""Held-out judges against oracles: a hand-written token loop (log-likelihood), the exact KL of a one-step
distribution (k3 estimator), and an explicit full-corpus ranking scored by pytrec_eval (retrieval)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from eggroll_ndcg.lm.corpus import Task
from eggroll_ndcg.lm.judges import (continuation_length, docstring_log_likelihood, generate_summaries, judge,
                                    kl_to_base, retrieval_judge)

TASKS = [
    Task("m:quote", 'def quote(s):\n    """', "Return a shell-escaped version of the string s."),
    Task("m:split", 'def split(s, comments=False, posix=True):\n    """', "Split the string s."),
    Task("m:dedent", 'def dedent(text):\n    """', "Remove any common leading whitespace from every line in text."),
]


def _peaky(model, scale: float):
    """A copy whose output distribution is far from uniform (lm_head scaled)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.lm_head.weight.mul_(scale)
    return out


def test_log_likelihood_matches_a_token_by_token_loop(micro_lm):
    model, tokenizer = micro_lm
    got = docstring_log_likelihood(model, tokenizer, TASKS, batch_size=2)   # padding and two batches
    for value, task in zip(got, TASKS):
        prompt = tokenizer(task.prompt)["input_ids"]
        target = tokenizer(task.target, add_special_tokens=False)["input_ids"]
        total = 0.0
        for t, token in enumerate(target):
            ids = torch.tensor([prompt + target[:t]])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, -1]
            total += torch.log_softmax(logits.double(), -1)[token].item()
        assert value == pytest.approx(total / len(target), abs=1e-5)


def test_kl_of_a_model_to_itself_is_exactly_zero(micro_lm):
    model, tokenizer = micro_lm
    kl = kl_to_base(model, copy.deepcopy(model), tokenizer, TASKS, samples=3, max_new_tokens=6, seed=1)
    assert kl.shape == (3,) and np.all(kl == 0.0)


def test_kl_k3_matches_the_exact_one_step_kl_within_sampling_error(micro_lm):
    model, tokenizer = micro_lm
    from lm_fixtures import micro_model
    tuned, base = _peaky(model, 60.0), _peaky(micro_model(len(tokenizer), seed=1), 60.0)
    task = TASKS[:1]
    n = 3000
    estimate = kl_to_base(tuned, base, tokenizer, task, samples=n, max_new_tokens=1, seed=0, batch_size=1000)[0]
    ids = torch.tensor([tokenizer(task[0].prompt)["input_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(tuned(input_ids=ids).logits[0, -1].double(), -1)
        lb = torch.log_softmax(base(input_ids=ids).logits[0, -1].double(), -1)
    p = lp.exp()
    exact = float((p * (lp - lb)).sum())                      # KL(tuned || base), one token
    log_r = lb - lp
    k3 = torch.expm1(log_r) - log_r
    assert float((p * k3).sum()) == pytest.approx(exact, rel=1e-6)   # k3 is unbiased (exactly, over the vocab)
    se = float(((p * k3 ** 2).sum() - exact ** 2).clamp(min=0).sqrt()) / np.sqrt(n)
    assert exact > 0.1 and abs(estimate - exact) < 4 * se + 1e-9
    again = kl_to_base(tuned, base, tokenizer, task, samples=n, max_new_tokens=1, seed=0, batch_size=1000)[0]
    assert again == estimate                                   # deterministic given the seed


def test_kl_estimate_is_nonnegative_and_leaves_the_global_rng_alone(micro_lm):
    model, tokenizer = micro_lm
    from lm_fixtures import micro_model
    base = micro_model(len(tokenizer), seed=3)
    state = torch.random.get_rng_state()
    kl = kl_to_base(model, base, tokenizer, TASKS, samples=2, max_new_tokens=5)
    assert torch.equal(state, torch.random.get_rng_state())
    assert np.all(kl > 0)


def test_continuation_stops_at_eos_or_the_token_completing_a_stop_string(micro_lm):
    tokenizer = micro_lm[1]
    ids = tokenizer('Return x."""more', add_special_tokens=False)["input_ids"]
    k = continuation_length(ids, tokenizer)
    assert '"""' in tokenizer.decode(ids[:k]) and '"""' not in tokenizer.decode(ids[:k - 1])
    assert continuation_length([5, 6, tokenizer.eos_token_id, 7], tokenizer) == 3
    plain = tokenizer("Return x", add_special_tokens=False)["input_ids"]
    assert continuation_length(plain, tokenizer) == len(plain)


@pytest.fixture(scope="module")
def embedding_cache(tmp_path_factory):
    """One temporary embedding cache for this module's retrieval tests (the user's cache stays untouched)."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def small_code_collection():
    """The first 30 stdlib-code functions with queries, as their own collection (seconds to encode)."""
    from lm_fixtures import code_subcollection

    from eggroll_ndcg.data.stdlib_code import load_stdlib_code

    full = load_stdlib_code()
    return code_subcollection([d for d in full.doc_ids if d in full.query_texts][:30])


def test_retrieval_judge_matches_pytrec_eval_on_an_explicit_full_ranking(small_code_collection, embedding_cache,
                                                                        monkeypatch):
    import pytrec_eval
    from eggroll_ndcg.encoders import load_encoder

    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(embedding_cache))
    collection = small_code_collection
    ids = list(collection.doc_ids)
    summaries = [collection.query_texts[d] for d in ids[:12]] + ["", "zzz qqq", "Return the value."]
    task_ids = ids[:12] + ids[12:15]
    got = retrieval_judge(summaries, task_ids, collection=collection)

    encoder = load_encoder("minilm")
    docs = encoder.encode(list(collection.doc_texts), kind="document", progress=False)
    run, qrels = {}, {}
    for i, (s, t) in enumerate(zip(summaries, task_ids)):
        qrels[str(i)] = {t: 1}
        if s:
            scores = docs @ encoder.encode([s], kind="query", progress=False)[0]
            run[str(i)] = {d: float(v) for d, v in zip(ids, scores)}
    oracle = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    expected = [oracle[str(i)]["ndcg_cut_10"] if str(i) in oracle else 0.0 for i in range(len(summaries))]
    assert got == pytest.approx(expected, abs=1e-6)
    assert got[12] == 0.0                                      # the empty summary
    # a case verified here: the exact query text whose own document ranks first scores 1.0
    first = [i for i in range(12) if max(run[str(i)], key=run[str(i)].get) == task_ids[i]]
    assert first and all(got[i] == 1.0 for i in first)
    assert any(v < 1.0 for v in got)                           # the judge can fail


def test_judge_returns_every_judge_per_task(micro_lm, small_code_collection, embedding_cache, monkeypatch):
    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(embedding_cache))
    model, tokenizer = micro_lm
    ids = list(small_code_collection.doc_ids[:3])
    tasks = [Task(d, t.prompt, t.target) for d, t in zip(ids, TASKS)]
    summaries, counts = generate_summaries(model, tokenizer, tasks, max_new_tokens=6)
    assert len(summaries) == 3 and all(1 <= c <= 6 for c in counts)
    out = judge(model, copy.deepcopy(model), tokenizer, tasks, max_new_tokens=6, collection=small_code_collection)
    assert set(out) == {"conciseness", "retrieval_ndcg@10", "log_likelihood", "kl_to_base", "summary_tokens"}
    assert all(v.shape == (3,) for v in out.values())
    assert np.all(out["kl_to_base"] == 0) and np.all(out["conciseness"] <= 0) and np.all(out["log_likelihood"] < 0)
