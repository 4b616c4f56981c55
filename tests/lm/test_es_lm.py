"""ES fine-tuning of the micro LM: determinism, budget, fitness layout, the Qiu et al. step, and learning."""

from __future__ import annotations

import copy

import pytest
import torch

from eggroll_ndcg.es.shaping import shape_fitness
from eggroll_ndcg.lm.corpus import Task, summary_of
from eggroll_ndcg.lm.es_lm import ESOptions, center_reward, make_engine, population_fitness, step_prompts, train_es
from eggroll_ndcg.lm.population import generate_members

TASKS = [Task(f"m:f{i}", p, "Return x.") for i, p in enumerate([
    'def quote(s):\n    """', 'def split(s, comments=False):\n    """', 'def dedent(text):\n    """',
    'def join(a):\n    """'])]
FAST = dict(population=8, sigma=0.05, learning_rate=0.05, optimizer="adam", prompts_per_step=2, steps=3,
            max_new_tokens=6)


def count_e(summaries, tasks):
    """A reward the random micro model starts at 0 on: how many 'e' the summary holds."""
    assert len(summaries) == len(tasks)
    return torch.tensor([s.count("e") for s in summaries], dtype=torch.float32)


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_same_seed_same_weights_other_seed_other_weights(micro_lm):
    base, tok = micro_lm
    runs = []
    for seed in (0, 0, 1):
        model = copy.deepcopy(base)
        log = train_es(model, tok, TASKS, count_e, ESOptions(**FAST, seed=seed), progress=False)
        runs.append((_weights(model), log["reward"]))
    (w0, r0), (w1, r1), (w2, _) = runs
    assert r0 == r1 and all(torch.equal(w0[n], w1[n]) for n in w0)
    assert any(not torch.equal(w0[n], w2[n]) for n in w0)
    b = _weights(base)
    assert torch.equal(w0["model.embed_tokens.weight"], b["model.embed_tokens.weight"])  # not perturbed
    assert not torch.equal(w0["lm_head.weight"], b["lm_head.weight"])


def test_resume_from_a_checkpoint_is_bit_identical(micro_lm, tmp_path):
    base, tok = micro_lm
    whole = copy.deepcopy(base)
    log_whole = train_es(whole, tok, TASKS, count_e, ESOptions(**{**FAST, "steps": 4}), progress=False)
    first = copy.deepcopy(base)
    train_es(first, tok, TASKS, count_e, ESOptions(**{**FAST, "steps": 2}), progress=False,
             checkpoint_dir=tmp_path / "ck")
    resumed = copy.deepcopy(base)  # a fresh process: the base model again, the checkpoint restores the rest
    log = train_es(resumed, tok, TASKS, count_e, ESOptions(**{**FAST, "steps": 4}), progress=False,
                   checkpoint_dir=tmp_path / "ck")
    assert log["steps"] == 4 and log["reward"] == log_whole["reward"]
    assert log["generated_tokens"] == log_whole["generated_tokens"]
    w, v = _weights(whole), _weights(resumed)
    assert all(torch.equal(w[n], v[n]) for n in w)
    with pytest.raises(ValueError, match="differ in \\['sigma'\\]"):
        train_es(copy.deepcopy(base), tok, TASKS, count_e, ESOptions(**{**FAST, "steps": 5, "sigma": 0.1}),
                 progress=False, checkpoint_dir=tmp_path / "ck")
    other = copy.deepcopy(base)
    with torch.no_grad():
        other.model.norm.weight.add_(1.0)
    with pytest.raises(ValueError, match="another base model"):
        train_es(other, tok, TASKS, count_e, ESOptions(**{**FAST, "steps": 5}), progress=False,
                 checkpoint_dir=tmp_path / "ck")


def test_token_budget_stops_training(micro_lm):
    base, tok = micro_lm
    model = copy.deepcopy(base)
    log = train_es(model, tok, TASKS, count_e, ESOptions(**{**FAST, "steps": 50}, token_budget=150), progress=False)
    per_step = [h["tokens"] for h in log["history"]]
    assert log["steps"] == len(per_step) < 50 and log["generated_tokens"] == per_step[-1] >= 150
    assert len(per_step) == 1 or per_step[-2] < 150  # it stopped at the first step past the budget
    assert all(0 < h["tokens"] for h in log["history"]) and log["history"][0]["tokens"] <= 8 * 2 * 6


def test_fitness_is_the_mean_reward_over_the_step_prompts(micro_lm):
    base, tok = micro_lm
    options = ESOptions(**FAST)
    model = copy.deepcopy(base)
    engine = make_engine(model, options)
    chosen = TASKS[:3]
    lengths = lambda s, t: torch.tensor([float(len(x)) for x in s])  # noqa: E731
    fitness, tokens, texts = population_fitness(model, tok, engine, chosen, lengths, options, step=0)
    gens = generate_members(model, tok, engine.ask(), [t.prompt for t in chosen], max_new_tokens=6)
    assert texts == gens.texts and tokens == gens.total_tokens
    want = torch.tensor([sum(len(summary_of(x)) for x in row) / 3 for row in gens.texts], dtype=torch.float64)
    torch.testing.assert_close(fitness, want)
    assert fitness.shape == (8,) and len(set(fitness.tolist())) > 1


def test_step_prompts_are_deterministic_and_distinct():
    assert step_prompts(10, 4, 0, 3) == step_prompts(10, 4, 0, 3)
    assert len(set(step_prompts(10, 4, 0, 3))) == 4
    assert step_prompts(10, 4, 0, 3) != step_prompts(10, 4, 0, 4)
    assert sorted(step_prompts(3, 8, 0, 0)) == [0, 1, 2]


def test_sgd_at_alpha_times_sigma_is_the_qiu_update(micro_lm):
    """theta += alpha * 1/N sum_i z_i E_i (Qiu et al. 2025, no 1/sigma) == SGD at lr = alpha * sigma."""
    base, _ = micro_lm
    alpha, sigma = 0.5, 0.01
    model = copy.deepcopy(base)
    engine = make_engine(model, ESOptions(population=6, sigma=sigma, learning_rate=alpha * sigma))
    population = engine.ask()
    fitness = torch.tensor([3.0, -1.0, 0.5, 2.0, -2.0, 1.0], dtype=torch.float64)
    z = (fitness - fitness.mean()) / fitness.std(unbiased=False)
    torch.testing.assert_close(shape_fitness(fitness, "zscore"), z)
    before = {n: p.detach().clone() for n, p in engine.params.items()}
    engine.tell(fitness)
    for name, p in engine.params.items():
        E = population.perturbation(name).double()  # [J, m, n]
        pm = torch.tensor([1.0, -1.0], dtype=torch.float64)[None, :, None, None]
        members = (E[:, None] * pm).reshape(6, *E.shape[1:])  # member 2j = +E_j, 2j+1 = -E_j
        want = before[name].double() + alpha * (z[:, None, None] * members).mean(0)
        torch.testing.assert_close(p.detach().double(), want, atol=1e-6, rtol=1e-5)


def test_es_increases_a_simple_reward_and_zero_learning_rate_does_not(micro_lm):
    base, tok = micro_lm
    options = dict(population=16, sigma=0.05, optimizer="adam", prompts_per_step=4, steps=8, max_new_tokens=8,
                   seed=0)
    start = float(center_reward(base, tok, TASKS, count_e, max_new_tokens=8).mean())
    tuned = copy.deepcopy(base)
    log = train_es(tuned, tok, TASKS, count_e, ESOptions(**options, learning_rate=0.1), progress=False)
    frozen = copy.deepcopy(base)
    train_es(frozen, tok, TASKS, count_e, ESOptions(**options, learning_rate=0.0), progress=False)
    assert start == 0.0
    assert float(center_reward(tuned, tok, TASKS, count_e, max_new_tokens=8).mean()) >= 1.0
    assert float(center_reward(frozen, tok, TASKS, count_e, max_new_tokens=8).mean()) == start
    assert sum(log["reward"][-3:]) > sum(log["reward"][:3])


@pytest.mark.parametrize("bad", [dict(population=5), dict(optimizer="lbfgs"), dict(steps=0), dict(sigma=0.0),
                                 dict(token_budget=0)])
def test_bad_options_are_one_line_errors(bad):
    with pytest.raises(ValueError, match="ESOptions"):
        ESOptions(**bad)
