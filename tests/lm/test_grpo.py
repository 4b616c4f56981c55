"""GRPO through TRL on the micro model: a couple of steps change the weights of the object passed in, the token
budget is counted as ES counts it and stops training, and a seed reproduces the weights."""

from __future__ import annotations

import copy

import pytest
import torch

from eggroll_ndcg.lm.corpus import Task
from eggroll_ndcg.lm.grpo import GRPOOptions, train_grpo
from eggroll_ndcg.lm.judges import continuation_length
from eggroll_ndcg.lm.rewards import make_reward_fn

TASKS = [
    Task("m:quote", 'def quote(s):\n    """', "Return a shell-escaped version of the string s."),
    Task("m:split", 'def split(s, comments=False, posix=True):\n    """', "Split the string s."),
    Task("m:dedent", 'def dedent(text):\n    """', "Remove any common leading whitespace."),
    Task("m:fill", 'def fill(text, width=70, **kwargs):\n    """', "Fill a single paragraph of text."),
]
FAST = dict(prompts_per_step=2, num_generations=2, max_new_tokens=8, learning_rate=1e-2)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _recording_reward(tokenizer, calls):
    inner = make_reward_fn(tokenizer)

    def reward_fn(summaries, tasks):
        calls.append((list(summaries), [t.id for t in tasks]))
        return inner(summaries, tasks)
    return reward_fn


def test_two_grpo_steps_change_the_weights_in_place_and_count_tokens(micro_lm, tmp_path):
    model, tokenizer = copy.deepcopy(micro_lm[0]), micro_lm[1]
    name = model.config._name_or_path
    before = _state(model)
    calls: list = []
    log = train_grpo(model, tokenizer, TASKS, _recording_reward(tokenizer, calls),
                     GRPOOptions(steps=2, beta=0.04, **FAST), work_dir=tmp_path, progress=False)
    after = _state(model)
    assert log["steps"] == 2 and len(log["reward"]) == 2 and len(calls) == 2
    assert all(len(s) == 4 and len(ids) == 4 for s, ids in calls)            # 2 prompts x 2 generations
    assert all(ids[0] == ids[1] and ids[2] == ids[3] for _, ids in calls)   # a group shares its prompt
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("q_proj" in k for k in changed) and any("lm_head" in k for k in changed)
    assert 0 < log["generated_tokens"] == sum(log["tokens_per_step"]) <= 2 * 4 * 8
    assert model.config._name_or_path == name and not model.training


def test_token_budget_stops_training_after_the_step_that_reaches_it(micro_lm, tmp_path):
    model, tokenizer = copy.deepcopy(micro_lm[0]), micro_lm[1]
    log = train_grpo(model, tokenizer, TASKS, make_reward_fn(tokenizer),
                     GRPOOptions(steps=20, beta=0.0, token_budget=10, **FAST), work_dir=tmp_path, progress=False)
    assert log["steps"] == 1 and log["generated_tokens"] >= 10


def test_budget_counts_tokens_as_es_does(micro_lm):
    from eggroll_ndcg.lm.grpo import _reward_wrapper, _Tally
    tokenizer = micro_lm[1]
    tally = _Tally()
    reward = _reward_wrapper(make_reward_fn(tokenizer), TASKS, tokenizer, tally)
    completions = ['Return x."""\n    return s', "Split it\n\nmore", "no stop"]
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
    values = reward(prompts=[t.prompt for t in TASKS[:3]], completions=completions, completion_ids=ids,
                    task_index=[0, 1, 2])
    assert values == make_reward_fn(tokenizer)(["Return x.", "Split it", "no stop"], TASKS[:3]).tolist()
    assert tally.tokens == sum(continuation_length(i, tokenizer) for i in ids) < sum(map(len, ids))


def test_same_seed_same_weights_and_another_seed_differs(micro_lm, tmp_path):
    tokenizer = micro_lm[1]
    states = []
    for run, seed in enumerate((0, 0, 1)):
        model = copy.deepcopy(micro_lm[0])
        train_grpo(model, tokenizer, TASKS, make_reward_fn(tokenizer), GRPOOptions(steps=2, seed=seed, **FAST),
                   work_dir=tmp_path / str(run), progress=False)
        states.append(_state(model))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_bad_options_fail_with_a_message():
    with pytest.raises(ValueError, match="num_generations"):
        GRPOOptions(num_generations=1)
    with pytest.raises(ValueError, match="token_budget"):
        GRPOOptions(token_budget=0)


def test_trainer_cuts_completions_where_es_stops(micro_lm, monkeypatch):
    import trl
    from eggroll_ndcg.lm.grpo import _trainer_class
    tokenizer = micro_lm[1]
    assert "_generate_single_turn" in vars(trl.GRPOTrainer)        # the TRL method the override relies on
    raw = [tokenizer('Return x."""\n    return s', add_special_tokens=False)["input_ids"],
           tokenizer("Split it\n\nmore text", add_special_tokens=False)["input_ids"],
           [5, 6, tokenizer.eos_token_id, 7, 8], [5, 6, 7]]
    fake = (raw, [[0.0] * len(r) for r in raw])
    monkeypatch.setattr(trl.GRPOTrainer, "_generate_single_turn", lambda self, *a, **k: fake)
    cls = _trainer_class()
    trainer = object.__new__(cls)
    trainer._tokenizer = tokenizer
    ids, logprobs = cls._generate_single_turn(trainer, None, None, {}, 1)
    assert [len(i) for i in ids] == [continuation_length(r, tokenizer) for r in raw] == [len(lp) for lp in logprobs]
    assert ids[2] == [5, 6, tokenizer.eos_token_id] and ids[3] == [5, 6, 7]
    assert tokenizer.decode(ids[0]).endswith('"""') and len(ids[0]) < len(raw[0]) and len(ids[1]) < len(raw[1])
