"""The LM task (prompt = `def` header + opening quotes, target = docstring summary) and the pretraining text
(train-split packages only) from the embedded stdlib-code collection."""

from __future__ import annotations

import ast

import pytest

from eggroll_ndcg.data.stdlib_code import split_of, load_stdlib_code
from eggroll_ndcg.lm.corpus import (PROMPT_SUFFIX, STOP_STRINGS, Task, _stdlib_root, load_tasks,
                                    pretraining_files, pretraining_text, signature_header, summary_of)


@pytest.fixture(scope="module")
def collection():
    return load_stdlib_code()


@pytest.fixture(scope="module")
def tasks(collection):
    return load_tasks(collection)


def test_tasks_follow_the_collection_splits_one_per_query(collection, tasks):
    assert set(tasks) == {"train", "val", "test"}
    for split, items in tasks.items():
        assert sorted(t.id for t in items) == sorted(collection.split_queries[split])
        for task in items[:50]:
            assert task.target == collection.query_texts[task.id]
    packages = {split: {t.id.split(":")[0].split(".")[0] for t in items} for split, items in tasks.items()}
    assert not packages["train"] & packages["test"] and not packages["train"] & packages["val"]


def test_every_prompt_is_a_parsable_def_header_followed_by_opening_quotes(tasks):
    for items in tasks.values():
        for task in items:
            assert isinstance(task, Task) and task.prompt.endswith(PROMPT_SUFFIX)
            header = task.prompt[: -len(PROMPT_SUFFIX)]
            assert header.startswith(("def ", "async def ")) and header.endswith(":")
            # the header plus a body is a whole function definition: the signature was cut at the right colon
            tree = ast.parse(header + "\n    pass\n")
            assert isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef))
            assert tree.body[0].name == task.id.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


def test_signature_header_drops_decorators_keeps_multiline_signatures_and_annotations():
    code = ('@functools.cache\n@other(x=1)\ndef f(a: dict[str, int] = {"k": 1},\n      b=lambda y: y) -> '
            'list[int]:  # note\n    return [a, b]')
    assert signature_header(code) == ('def f(a: dict[str, int] = {"k": 1},\n      b=lambda y: y) -> list[int]:')
    assert signature_header("async def g(): return 1") == "async def g():"
    with pytest.raises(ValueError):
        signature_header("x = 1\n")


def test_max_per_split_is_a_deterministic_prefix(collection, tasks):
    small = load_tasks(collection, max_per_split=5)
    larger = load_tasks(collection, max_per_split=20)
    for split in small:
        assert len(small[split]) == 5
        assert small[split] == larger[split][:5] == tasks[split][:5]
    assert load_tasks(collection, max_per_split=5) == small


@pytest.mark.parametrize("generation, summary", [
    ('Return the sum.\n    """\n    return a + b', "Return the sum."),
    ("Return the sum\n    of a and b.\n\n    More detail.", "Return the sum of a and b."),
    ("Split it.\n    \t \n    Details", "Split it."),
    ('  Closing on the same line."""  more', "Closing on the same line."),
    ('"""', ""),
    ("no stop at all", "no stop at all"),
    ("", ""),
])
def test_summary_of_cuts_at_closing_quotes_or_blank_line_and_collapses_whitespace(generation, summary):
    assert summary_of(generation) == summary


def test_stop_strings_are_where_summary_of_cuts():
    assert '"""' in STOP_STRINGS
    for stop in STOP_STRINGS:
        assert summary_of("A b c." + stop + "later text") == "A b c."


def test_pretraining_text_reads_only_train_packages(collection):
    files = pretraining_files(collection)
    held_out = pretraining_files(collection, split="val") + pretraining_files(collection, split="test")
    assert files and held_out and not set(held_out) & set(files)
    stdlib = _stdlib_root(collection)
    for path in files:
        assert path.suffix == ".py"
        assert split_of(path.relative_to(stdlib).with_suffix("").parts[0]) == "train", path


def test_held_out_functions_do_not_leak_into_pretraining_text(collection, tasks):
    text = "\n".join(pretraining_text(collection))
    code_of = dict(zip(collection.doc_ids, collection.doc_texts))
    # the real function bodies of held-out tasks (longer than a few lines) do not appear in the text
    for split in ("val", "test"):
        bodies = [code_of[t.id].split("\n", 1)[1] for t in tasks[split] if code_of[t.id].count("\n") >= 6][:200]
        leaked = [b for b in bodies if b in text]
        assert len(leaked) <= len(bodies) // 50, leaked[:3]
    # while train bodies do appear (methods are dedented in the collection, so top-level functions only)
    top_level = [code_of[t.id].split("\n", 1)[1] for t in tasks["train"]
                 if "." not in t.id.split(":")[1] and code_of[t.id].count("\n") >= 6][:50]
    assert top_level and sum(b in text for b in top_level) >= len(top_level) // 2


def test_pretraining_text_is_deterministic(collection):
    first = pretraining_text(collection)
    assert first == pretraining_text(collection)
    assert any('"""' in text for text in first)
