"""`stdlib-code`: an embedded code-search collection built from the running Python's standard library.

The CodeSearchNet construction, with no download:

- query    = the first paragraph of a function's docstring (whitespace collapsed);
- document = that function's source code without its docstring (decorators kept, dedented to column 0);
- one relevant document (grade 1) per query.

Which functions count (all rules are deterministic and documented in data/README.md):

- files: the `.py` files under `sysconfig.get_paths()["stdlib"]`, walked in sorted order, skipping test suites,
  IDLE, demos, vendored/installer code, `site-packages`, and private modules (a path part starting with `_`
  other than `__init__.py`);
- functions: module-level functions and methods of (nested) classes, whatever their name (private helpers and
  dunders with a real docstring are code one searches for too), not nested inside another function, with a
  docstring, and whose body does more than hold the docstring (`pass`, `...` and `raise NotImplementedError`
  do not count);
- queries: the summary must have at least `MIN_SUMMARY_WORDS` words;
- duplicates: functions with byte-identical code (after docstring removal) keep only the first; a summary
  shared by two or more functions is ambiguous, so those functions stay in the corpus as documents but get no
  query.

Doc ids and query ids are `module:qualname` (a query has the id of its function). Splits are by top-level
package: `sha256(package name)` maps it to [0, 1); below `TRAIN_SHARE` is train, then val up to
`TRAIN_SHARE + VAL_SHARE`, the rest test. So test functions come from packages never seen in training.

The collection is written once as a BEIR folder (plus `manifest.json` with the Python version, the counts and a
content hash) under `<cache>/stdlib-code/<python version>-v<BUILD_VERSION>`, with an atomic rename.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .beir import Collection, content_hash, load_beir, write_beir

__all__ = ["build_stdlib_code", "load_stdlib_code", "stdlib_code_dir", "cache_dir", "NAME"]

NAME = "stdlib-code"
BUILD_VERSION = 1  # bump when the construction changes, so old caches are not reused
MIN_SUMMARY_WORDS = 3
TRAIN_SHARE, VAL_SHARE = 0.6, 0.2

# Top-level folders and modules of the standard library that are not library code to search.
SKIPPED_PARTS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "turtledemo",
        "lib2to3",  # deprecated, mostly grammar/fixer boilerplate
        "ensurepip",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "__phello__",
    }
)


def cache_dir() -> Path:
    """The project cache folder: `$EGGROLL_NDCG_CACHE`, else `~/.cache/eggroll-ndcg`."""
    configured = os.environ.get("EGGROLL_NDCG_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "eggroll-ndcg"


def stdlib_code_dir(root: Path | None = None) -> Path:
    """The folder that holds (or will hold) the build for the running Python."""
    version = ".".join(map(str, sys.version_info[:3]))
    return (root or cache_dir()) / NAME / f"py{version}-v{BUILD_VERSION}"


# ------------------------------------------------------------------------------------------ extraction


@dataclass(frozen=True)
class _Function:
    id: str  # module:qualname
    package: str  # top-level package, used for the split
    summary: str
    code: str


def skipped_path(relative: Path) -> bool:
    """Whether a stdlib file (path relative to the stdlib root) is left out (module docstring rules)."""
    parts = relative.parts
    if any(part in SKIPPED_PARTS or part.startswith("config-3") for part in parts):  # config-3.11-x86_64-...
        return True
    if parts[-1].startswith("test_") or parts[-1] == "__main__.py":
        return True
    return any(part.startswith("_") and part != "__init__.py" for part in parts)


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _summary(docstring: str) -> str:
    """First paragraph of the cleaned docstring, whitespace collapsed."""
    first = inspect.cleandoc(docstring).strip().split("\n\n", 1)[0]
    return " ".join(first.split())


def _is_trivial(body: list[ast.stmt]) -> bool:
    """True when the body (after the docstring) does nothing: empty, `pass`, `...` or raise NotImplementedError."""
    for statement in body:
        if isinstance(statement, ast.Pass):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue
        if isinstance(statement, ast.Raise):
            target = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
            if isinstance(target, ast.Name) and target.id == "NotImplementedError":
                continue
        return False
    return True


def _code_without_docstring(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The function's source (decorators included) with the docstring statement cut out, dedented."""
    docstring = node.body[0]
    start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
    end = node.end_lineno  # exclusive index of the line after the function
    first, last = docstring.lineno - 1, docstring.end_lineno - 1
    before = lines[first][: docstring.col_offset]
    after = lines[last][docstring.end_col_offset :].lstrip().lstrip(";").strip()
    kept = lines[start:first]
    if before.strip():  # docstring on the `def` line: `def f(): "doc"; return 1`
        kept.append(before.rstrip() + (" " + after if after else ""))
    elif after:
        kept.append(" " * docstring.col_offset + after)
    kept += lines[last + 1 : end]
    # dedent by the `def` column (not textwrap.dedent: a multi-line string at column 0 would block it)
    indent = node.col_offset
    kept = [line[indent:] if line[:indent].isspace() else line for line in kept]
    return "\n".join(line.rstrip() for line in kept).strip("\n")


def _functions_in(tree: ast.Module, lines: list[str], module: str, package: str) -> list[_Function]:
    found: list[_Function] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node, clean=False)
                if not docstring or _is_trivial(node.body[1:]):
                    continue
                summary = _summary(docstring)
                if len(summary.split()) < MIN_SUMMARY_WORDS:
                    continue
                code = _code_without_docstring(lines, node)
                found.append(_Function(f"{module}:{prefix}{node.name}", package, summary, code))

    visit(tree.body, "")
    return found


def _extract(stdlib: Path) -> tuple[list[_Function], dict[str, int]]:
    """All candidate functions of the standard library at `stdlib`, in sorted file order."""
    functions: list[_Function] = []
    stats = {"files": 0, "unparsable_files": 0}
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib)
        if skipped_path(relative):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source, filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            stats["unparsable_files"] += 1
            continue
        stats["files"] += 1
        module = module_name(relative)
        functions += _functions_in(tree, source.splitlines(), module, module.split(".")[0])
    return functions, stats


def split_of(package: str) -> str:
    """train / val / test from the hash of the top-level package name (stable across runs and machines)."""
    value = int(hashlib.sha256(package.encode("utf-8")).hexdigest()[:15], 16) / 16**15
    if value < TRAIN_SHARE:
        return "train"
    return "val" if value < TRAIN_SHARE + VAL_SHARE else "test"


# ------------------------------------------------------------------------------------------ build


def build_stdlib_code(target: str | Path, *, stdlib: str | Path | None = None) -> Path:
    """Build the stdlib-code BEIR folder at `target` (which must not exist yet) and return its path."""
    target = Path(target)
    stdlib = Path(stdlib or sysconfig.get_paths()["stdlib"])
    functions, stats = _extract(stdlib)

    # the same qualname defined twice in one module (e.g. under `if sys.platform ...`): keep the first;
    # byte-identical code under two ids (copies, aliases): keep the first, in sorted walk order
    documents: list[_Function] = []
    seen_ids: set[str] = set()
    seen_code: set[str] = set()
    for function in functions:
        if function.id in seen_ids or function.code in seen_code:
            continue
        seen_ids.add(function.id)
        seen_code.add(function.code)
        documents.append(function)

    # a summary shared by several functions is ambiguous: no query for any of them
    summary_count: dict[str, int] = {}
    for function in documents:
        summary_count[function.summary] = summary_count.get(function.summary, 0) + 1
    queried = [f for f in documents if summary_count[f.summary] == 1]

    qrels: dict[str, list[tuple[str, str, int]]] = {"train": [], "val": [], "test": []}
    for function in queried:
        qrels[split_of(function.package)].append((function.id, function.id, 1))
    qrels = {split: rows for split, rows in qrels.items() if rows}  # a tiny stdlib may leave one empty
    split_queries = {split: tuple(sorted(row[0] for row in rows)) for split, rows in qrels.items()}
    counts = {
        **stats,
        "functions_found": len(functions),
        "docs": len(documents),
        "duplicates_dropped": len(functions) - len(documents),
        "queries": len(queried),
        "ambiguous_summaries_dropped": len(documents) - len(queried),
        "splits": {split: len(ids) for split, ids in split_queries.items()},
    }
    manifest = {
        "name": NAME,
        "build_version": BUILD_VERSION,
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "stdlib": str(stdlib),
        "rules": {
            "min_summary_words": MIN_SUMMARY_WORDS,
            "split": f"sha256(top-level package) in [0, 1): train < {TRAIN_SHARE:g} <= val "
            f"< {TRAIN_SHARE + VAL_SHARE:g} <= test",
            "skipped_parts": sorted(SKIPPED_PARTS),
        },
        "counts": counts,
        "content_hash": content_hash(
            [f.id for f in documents],
            [f.code for f in documents],
            {f.id: f.summary for f in queried},
            {f.id: {f.id: 1} for f in queried},
            split_queries,
        ),
    }
    write_beir(
        target,
        docs=((f.id, "", f.code) for f in documents),
        queries=((f.id, f.summary) for f in queried),
        qrels=qrels,
        manifest=manifest,
    )
    return target


def load_stdlib_code(*, cache_root: str | Path | None = None, rebuild: bool = False) -> Collection:
    """The stdlib-code collection for the running Python, built on first use and cached on disk."""
    folder = stdlib_code_dir(Path(cache_root) if cache_root else None)
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    if not (folder / "manifest.json").is_file():
        build_stdlib_code(folder)
    return load_beir(folder, name=NAME)
