"""Helpers of the language-model tests (a uniquely named module: `conftest` names several files in tests/):
a micro Llama (random weights), a BPE tokenizer trained in milliseconds on a few stdlib-like lines, and
stdlib-code sub-collections that encode in seconds."""

from __future__ import annotations

import torch

MICRO_TEXT = [
    'def quote(s):\n    """Return a shell-escaped version of the string s."""\n    return s\n',
    'def split(s, comments=False, posix=True):\n    """Split the string s using shell-like syntax."""\n',
    'def join(split_command):\n    """Return a shell-escaped string from split_command."""\n',
    'def dedent(text):\n    """Remove any common leading whitespace from every line in text."""\n',
    'def fill(text, width=70, **kwargs):\n    """Fill a single paragraph of text, returning a new string."""\n',
] * 4


def micro_tokenizer():
    """A byte-level BPE of 300 tokens as a `transformers` fast tokenizer (bos/eos/pad defined)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(MICRO_TEXT, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   padding_side="left")


def micro_model(vocab_size: int, seed: int = 0):
    """A random 2-layer Llama (hidden 32), untied embeddings, float32, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval()


def code_subcollection(ids):
    """The stdlib-code functions `ids` (in that order) as their own collection: seconds to encode."""
    from eggroll_ndcg.data.beir import Collection
    from eggroll_ndcg.data.stdlib_code import load_stdlib_code

    full = load_stdlib_code()
    texts = dict(zip(full.doc_ids, full.doc_texts))
    ids = list(dict.fromkeys(ids))
    return Collection(name=f"stdlib-code-{len(ids)}", doc_ids=tuple(ids), doc_texts=tuple(texts[d] for d in ids),
                      query_texts={d: full.query_texts[d] for d in ids if d in full.query_texts},
                      judgments={d: dict(full.judgments[d]) for d in ids if d in full.judgments}, split_queries={},
                      problems=(), manifest={})
