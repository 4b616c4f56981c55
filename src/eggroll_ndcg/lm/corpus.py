"""The language-model task and its pretraining text, both from the embedded `stdlib-code` collection.

Task (issue 18 §3): for one stdlib function,

- prompt = its `def ...:` header (decorators dropped; a header may span several lines, the doc text is
  dedented to column 0, so a method's header reads `def name(self, ...):`) followed by `'\\n    \"\"\"'`: a model
  trained on Python source continues with the function's docstring;
- target = its real docstring summary (the collection's query text: first paragraph, whitespace collapsed).

Splits are the collection's own (train / val / test by sha256 of the top-level package), so test functions
come from packages the pretraining never read: `pretraining_text` returns the source files of TRAIN-split
packages only (docstrings included), in sorted path order.

`summary_of` is the one rule that turns a generated continuation into the summary the judges see:

1. cut at the first `\"\"\"` (the closing quotes) if there is one;
2. cut at the first blank line (a line holding only whitespace: a docstring's first paragraph ends there);
3. collapse all whitespace (newlines included) to single spaces and strip the ends.

So `"Return x.\\n    More.\\n\\n    Details\"\"\"..."` -> `"Return x. More."` (the same first-paragraph rule the
collection uses for its queries).
"""

from __future__ import annotations

import hashlib
import io
import re
import sysconfig
import tokenize
from dataclasses import dataclass
from pathlib import Path

from ..data.beir import Collection
from ..data.stdlib_code import module_name, skipped_path, split_of, load_stdlib_code
from ..data.textfiles import DataError

__all__ = ["Task", "load_tasks", "summary_of", "STOP_STRINGS", "PROMPT_SUFFIX", "signature_header",
           "pretraining_files", "pretraining_text", "SPLITS"]

SPLITS = ("train", "val", "test")
PROMPT_SUFFIX = '\n    """'
# Strings at which a generation can stop: the closing quotes, or a blank line (end of the first paragraph).
STOP_STRINGS: tuple[str, ...] = ('"""', "\n\n")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclass(frozen=True)
class Task:
    id: str  # stdlib-code doc id "module:qualname"
    prompt: str  # the `def ...:` header + '\n    """'
    target: str  # the docstring summary (the collection's query text)


def signature_header(code: str) -> str:
    """The `def ...:` (or `async def ...:`) header of a function's code, decorators dropped.

    The header runs from the `def` keyword to the `:` that closes the signature (the first `:` outside
    brackets after `def`; annotations and defaults hold theirs inside brackets), so a multi-line signature is
    kept whole, with its own line breaks. Raises ValueError when the code has no such header.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError) as error:
        raise ValueError(f"cannot tokenize the function code ({error})") from None
    lines = code.splitlines(keepends=True)
    start = None
    depth = 0
    for index, token in enumerate(tokens):
        if start is None:
            if token.type == tokenize.NAME and token.string == "def":
                previous = tokens[index - 1] if index else None
                begin = previous if previous is not None and previous.string == "async" else token
                start = begin.start
            continue
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        elif token.type == tokenize.OP and token.string == ":" and depth == 0:
            (row0, col0), (row1, col1) = start, token.end
            if row0 == row1:
                return lines[row0 - 1][col0:col1]
            parts = [lines[row0 - 1][col0:]] + lines[row0:row1 - 1] + [lines[row1 - 1][:col1]]
            return "".join(parts)
    raise ValueError("no `def ...:` header in the function code")


def _order_key(task_id: str) -> str:
    return hashlib.sha256(task_id.encode("utf-8")).hexdigest()


def load_tasks(collection: Collection | None = None, *, max_per_split: int | None = None) -> dict[str, list[Task]]:
    """{"train", "val", "test"} -> tasks of the collection's own package split.

    Order: by sha256 of the id (deterministic, mixes packages), so `max_per_split=n` keeps the first n of
    that order: a deterministic subset, and a smaller budget's subset is a prefix of a larger one's.
    """
    if max_per_split is not None and max_per_split < 0:
        raise ValueError(f"max_per_split must be >= 0, got {max_per_split}")
    collection = collection if collection is not None else load_stdlib_code()
    code_of = dict(zip(collection.doc_ids, collection.doc_texts))
    tasks: dict[str, list[Task]] = {}
    for split in SPLITS:
        ids = sorted(collection.split_queries.get(split, ()), key=_order_key)
        if max_per_split is not None:
            ids = ids[:max_per_split]
        chosen = []
        for task_id in ids:
            if task_id not in code_of:
                raise DataError(f"{collection.name}: query {task_id!r} has no document with the same id")
            try:
                header = signature_header(code_of[task_id])
            except ValueError as error:
                raise DataError(f"{collection.name}: document {task_id!r}: {error}") from None
            chosen.append(Task(id=task_id, prompt=header + PROMPT_SUFFIX, target=collection.query_texts[task_id]))
        tasks[split] = chosen
    return tasks


def summary_of(generation: str) -> str:
    """The summary in a generated continuation: up to the closing '\"\"\"' or the first blank line (whichever
    comes first), whitespace collapsed to single spaces (see the module docstring)."""
    text = generation.split('"""', 1)[0]
    text = _BLANK_LINE.split(text, 1)[0]
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------ pretraining


def _stdlib_root(collection: Collection | None) -> Path:
    build = (collection.manifest.get("build") or {}) if collection is not None else {}
    recorded = build.get("stdlib") if isinstance(build, dict) else None
    return Path(recorded or sysconfig.get_paths()["stdlib"])


def pretraining_files(collection: Collection | None = None, *, split: str = "train") -> list[Path]:
    """The stdlib `.py` files the collection reads (same skip rules) whose top-level package is in `split`,
    in sorted path order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = _stdlib_root(collection)
    files = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if skipped_path(relative):
            continue
        if split_of(module_name(relative).split(".")[0]) == split:
            files.append(path)
    return files


def pretraining_text(collection: Collection | None = None) -> list[str]:
    """The source text (code and docstrings) of the TRAIN-split packages' files, one string per file, in
    sorted path order; files that are not UTF-8 are skipped. Val/test packages never enter pretraining."""
    texts = []
    for path in pretraining_files(collection, split="train"):
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return texts
