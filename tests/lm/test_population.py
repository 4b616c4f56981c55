"""The batched population decode equals explicitly materialized members W ± sigma·E_j (the oracle)."""

from __future__ import annotations

import copy

import pytest
import torch

from eggroll_ndcg.es import EggrollES
from eggroll_ndcg.es.perturb import lowrank_delta, materialize
from eggroll_ndcg.lm.population import (
    _cut,
    encode_prompts,
    generate_members,
    generate_population,
    lm_parameters,
    population_logits,
)

PROMPTS = ['def quote(s):\n    """', 'def fill(text, width=70, **kwargs):\n    """', "def f(x):"]
SIGMA = 0.05  # large enough that members decode differently on the random micro model


def _engine(model, population=4, rank=1, seed=3):
    params = lm_parameters(model)
    opt = torch.optim.SGD(list(params.values()), lr=0.0)
    return EggrollES(params, population_size=population, rank=rank, sigma=SIGMA, seed=seed, optimizer=opt,
                     shaping="zscore")


def _materialized(model, population, member):
    """A deep copy whose perturbed weights are W ± sigma·E_j of ``member`` (es/perturb.py materialize)."""
    clone = copy.deepcopy(model)
    params = dict(clone.named_parameters())
    with torch.no_grad():
        for spec in population.specs:
            A, B = population.factors(spec.name)
            params[spec.name].copy_(materialize(params[spec.name], A, B, population.sigma)[member])
    return clone


def _plain_generate(model, tokenizer, prompt, *, max_new_tokens, use_cache):
    """One prompt alone (no padding) through plain ``generate``, cut like the population's."""
    ids, mask = encode_prompts(tokenizer, [prompt], "cpu")
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         use_cache=use_cache, stop_strings=['"""', "\n\n"], tokenizer=tokenizer,
                         temperature=None, top_k=None, top_p=None)
    return _cut(tokenizer, out[0, ids.shape[1]:].tolist(), ['"""', "\n\n"], {tokenizer.eos_token_id})


def test_lm_parameters_are_the_linear_weights_not_embeddings(micro_lm):
    model, _ = micro_lm
    params = lm_parameters(model)
    assert "lm_head.weight" in params and "model.embed_tokens.weight" not in params
    assert len(params) == 2 * 7 + 1  # q k v o gate up down per layer + lm_head
    assert all(p.dim() == 2 for p in params.values())
    assert set(lm_parameters(model, include=("mlp",))) == {n for n in params if ".mlp." in n}
    with pytest.raises(ValueError, match="unknown groups"):
        lm_parameters(model, include=("embedding",))


def test_tied_unembedding_is_skipped(micro_lm):
    model = copy.deepcopy(micro_lm[0])
    model.lm_head.weight = model.model.embed_tokens.weight
    assert "lm_head.weight" not in lm_parameters(model)


def test_lowrank_delta_accepts_member_major_rows():
    torch.manual_seed(0)
    J, R, T, n, m, r = 2, 3, 5, 6, 4, 2
    A, B, x = torch.randn(J, m, r), torch.randn(J, n, r), torch.randn(2 * J * R, T, n)
    got = lowrank_delta(x, A, B, 0.1)
    assert got.shape == (2 * J * R, T, m)
    per_member = lowrank_delta(x.view(2 * J, R, T, n), A, B, 0.1).reshape(2 * J * R, T, m)
    torch.testing.assert_close(got, per_member)
    with pytest.raises(ValueError, match="multiple of 2J"):
        lowrank_delta(x[:5], A, B, 0.1)


@pytest.mark.parametrize("use_cache", [True, False])
def test_member_greedy_generation_equals_materialized_model(micro_lm, use_cache):
    model, tok = micro_lm
    population = _engine(model).ask()
    gens = generate_population(model, tok, population.all(), PROMPTS, max_new_tokens=10, use_cache=use_cache)
    assert len(gens) == population.num_members and all(len(row) == len(PROMPTS) for row in gens)
    for member in range(population.num_members):
        oracle = _materialized(model, population, member)
        for p, prompt in enumerate(PROMPTS):
            text, count = _plain_generate(oracle, tok, prompt, max_new_tokens=10, use_cache=use_cache)
            assert gens.texts[member][p] == text, (member, p)
            assert gens.token_counts[member][p] == count
    assert len({tuple(row) for row in gens.texts}) == population.num_members  # the members really differ


def test_population_logits_equal_materialized_logits_and_padding_does_not_leak(micro_lm):
    model, tok = micro_lm
    population = _engine(model, rank=2).ask()
    ids, mask = encode_prompts(tok, PROMPTS, "cpu")
    logits = population_logits(model, population.all(), ids, mask)
    assert logits.shape[:2] == (population.num_members * len(PROMPTS), ids.shape[1])
    for member in range(population.num_members):
        oracle = _materialized(model, population, member)
        for p, prompt in enumerate(PROMPTS):
            alone, _ = encode_prompts(tok, [prompt], "cpu")  # unpadded
            with torch.no_grad():
                want = oracle(input_ids=alone).logits[0]
            got = logits[member * len(PROMPTS) + p, -alone.shape[1]:]
            torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    base = model(input_ids=encode_prompts(tok, PROMPTS[:1], "cpu")[0]).logits[0]
    assert not torch.allclose(logits[0, -base.shape[0]:], base, atol=1e-3)  # the perturbation is visible


def test_other_prompts_in_the_batch_do_not_change_a_row(micro_lm):
    model, tok = micro_lm
    chunk = _engine(model).ask().all()
    a = generate_population(model, tok, chunk, PROMPTS, max_new_tokens=8)
    b = generate_population(model, tok, chunk, [PROMPTS[0], "x" * 40, "def g():"], max_new_tokens=8)
    assert [row[0] for row in a.texts] == [row[0] for row in b.texts]


def test_chunked_members_equal_one_batch(micro_lm):
    model, tok = micro_lm
    population = _engine(model, population=6).ask()
    whole = generate_members(model, tok, population, PROMPTS, max_new_tokens=8)
    parts = generate_members(model, tok, population, PROMPTS, max_new_tokens=8, pairs_per_chunk=1)
    assert whole.texts == parts.texts and whole.token_counts == parts.token_counts
    assert whole.total_tokens == sum(map(sum, whole.token_counts)) > 0


def test_sampled_decoding_is_reproducible_from_the_seed(micro_lm):
    model, tok = micro_lm
    chunk = _engine(model).ask().all()
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.0)
    state = torch.get_rng_state()
    a = generate_population(model, tok, chunk, PROMPTS, seed=7, **kw)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG stream is untouched
    b = generate_population(model, tok, chunk, PROMPTS, seed=7, **kw)
    c = generate_population(model, tok, chunk, PROMPTS, seed=8, **kw)
    assert a.texts == b.texts and a.token_counts == b.token_counts
    assert a.texts != c.texts


def test_counts_stop_at_the_stop_string(micro_lm):
    _, tok = micro_lm
    ids = tok('Return a string."""\n    return s', add_special_tokens=False)["input_ids"]
    text, count = _cut(tok, ids, ['"""'], {tok.eos_token_id})
    assert text.endswith('"""') and 0 < count < len(ids)
    assert tok.decode(ids[: count - 1]).count('"""') == 0
    text, count = _cut(tok, ids[:3] + [tok.eos_token_id] + ids[3:], ['"""'], {tok.eos_token_id})
    assert count == 4 and text == tok.decode(ids[:3])
