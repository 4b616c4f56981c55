"""Shared fixtures for the language-model tests (helpers in lm_fixtures.py)."""

from __future__ import annotations

import copy

import pytest
from lm_fixtures import code_subcollection, micro_model, micro_tokenizer


@pytest.fixture(scope="session")
def micro_lm():
    """(model, tokenizer): a fresh random micro Llama and its tokenizer; tests must not mutate the model
    in place (deep-copy it first)."""
    tokenizer = micro_tokenizer()
    return micro_model(len(tokenizer)), tokenizer


@pytest.fixture(scope="module")
def micro_folder(micro_lm, tmp_path_factory):
    """The micro Llama and its tokenizer saved as a `transformers` model folder (what `--model` takes)."""
    model, tokenizer = micro_lm
    folder = tmp_path_factory.mktemp("micro") / "model"
    copy.deepcopy(model).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def small_retrieval_corpus():
    """The retrieval judge searches 100 stdlib-code functions plus every task of the quick preset instead of the
    whole corpus (whose first MiniLM encoding takes minutes): `judges` loads the collection through
    `data.stdlib_code.load_stdlib_code`, patched here for the module."""
    from eggroll_ndcg.data import stdlib_code
    from eggroll_ndcg.lm.corpus import load_tasks

    full = stdlib_code.load_stdlib_code()
    quick = [t.id for split in load_tasks(max_per_split=8).values() for t in split]
    small = code_subcollection(quick + [d for d in full.doc_ids if d in full.query_texts][:100])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stdlib_code, "load_stdlib_code", lambda **_: small)
        yield small
