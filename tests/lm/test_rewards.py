"""The conciseness reward: -|len_tokens(summary) - len_tokens(target)| with the model's tokenizer, no special
tokens, against an explicit per-string token count."""

from __future__ import annotations

import pytest
import torch

from eggroll_ndcg.lm.corpus import Task
from eggroll_ndcg.lm.rewards import conciseness, make_reward_fn, token_lengths


def _bos_tokenizer(micro_lm):
    """The micro tokenizer with a post-processor that adds <s> ... </s> (as many real tokenizers do)."""
    import copy
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    inner = copy.deepcopy(micro_lm[1].backend_tokenizer)
    inner.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=inner, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def test_conciseness_is_minus_the_token_length_gap_without_special_tokens(micro_lm):
    tokenizer = _bos_tokenizer(micro_lm)
    plain = tokenizer("Return x.", add_special_tokens=False)["input_ids"]
    assert len(tokenizer("Return x.")["input_ids"]) == len(plain) + 2
    summaries = ["Return a shell-escaped version.", "", "Split the string s using shell-like syntax.", "x"]
    targets = ["Return a shell-escaped version of the string s.", "Remove any common leading whitespace.",
               "Split the string s using shell-like syntax.", "Fill a single paragraph of text."]
    count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    expected = [-abs(count(s) - count(t)) for s, t in zip(summaries, targets)]
    got = conciseness(summaries, targets, tokenizer)
    assert got.dtype == torch.float32 and got.tolist() == expected
    assert got[2] == 0 and got[1] == -len(tokenizer.encode(targets[1], add_special_tokens=False))
    assert all(v < 0 for i, v in enumerate(got.tolist()) if i != 2)


def test_token_lengths_of_the_empty_text_is_zero(micro_lm):
    assert token_lengths(["", "a"], _bos_tokenizer(micro_lm)) == [0, 1]
    assert token_lengths([], micro_lm[1]) == []


def test_reward_fn_has_the_es_signature_and_matches_conciseness(micro_lm):
    tokenizer = micro_lm[1]
    tasks = [Task("m:a", 'def a():\n    """', "Return a shell-escaped string."),
             Task("m:b", 'def b():\n    """', "Split the string s.")]
    reward_fn = make_reward_fn(tokenizer)
    summaries = ["Return it.", "Split the string s."]
    for _ in range(2):  # second call: memoized target lengths
        assert torch.equal(reward_fn(summaries, tasks), conciseness(summaries, [t.target for t in tasks], tokenizer))
    assert reward_fn([], []).shape == (0,)
    with pytest.raises(ValueError, match="summaries for"):
        reward_fn(["x"], tasks)
