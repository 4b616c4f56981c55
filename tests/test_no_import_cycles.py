"""Every module of the package imports, and the package's module-level imports form no cycle.

The graph is read with `ast` from the statements that run at import time (module level, including `if` and
`try` blocks, but not `if TYPE_CHECKING:` blocks nor imports inside functions, which run later). An import of
`pkg.sub.mod` also runs `pkg.sub/__init__.py`, so it counts as an edge to that package too, except from a
module inside it (a package's own submodules are imported while it initializes; that is no cycle).

`encoders/` is held to more: counting imports inside functions too (all but a module's `__getattr__`, which
only keeps old names importable), its modules form no cycle, and base.py imports none of them.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import eggroll_ndcg

ROOT = Path(eggroll_ndcg.__file__).resolve().parent
PACKAGE = "eggroll_ndcg"


def module_name(path: Path) -> str:
    """Dotted module name of a source file under ROOT (a package's __init__.py -> the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def all_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_time_statements(body: list[ast.stmt]):
    """The import statements of a module body that run at import time."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from import_time_statements(node.body)
            yield from import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from import_time_statements(block)
        elif isinstance(node, ast.With):
            yield from import_time_statements(node.body)


def all_import_statements(tree: ast.Module):
    """Every import statement of a module, in functions too, except inside a module-level `__getattr__`."""
    shims = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
    skipped = {id(node) for shim in shims for node in ast.walk(shim)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
            yield node


def _absolute(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(source: str, current: str, is_package: bool, known: set[str], *,
                     everywhere: bool = False) -> set[str]:
    """The package modules that `current` imports at import time (with the packages those imports run);
    with `everywhere`, also those imported inside functions (see `all_import_statements`)."""
    targets: set[str] = set()
    tree = ast.parse(source)
    statements = all_import_statements(tree) if everywhere else import_time_statements(tree.body)
    for node in statements:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            target = _absolute(node, current, is_package)
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # the module and every package above it
                prefix = ".".join(parts[:depth])
                if prefix in known and not (current == prefix or current.startswith(prefix + ".")):
                    targets.add(prefix)
    return targets


def import_graph(*, everywhere: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules it imports (at import time; with `everywhere`, anywhere)."""
    modules = all_modules()
    known = set(modules)
    return {
        name: imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known,
                               everywhere=everywhere)
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_a_cycle_through_a_package_init():
    known = {"eggroll_ndcg.a", "eggroll_ndcg.a.x", "eggroll_ndcg.b"}
    graph = {
        "eggroll_ndcg.a": imported_modules("from .x import f\n", "eggroll_ndcg.a", True, known),
        "eggroll_ndcg.a.x": imported_modules("from ..b import g\nfrom . import y\n", "eggroll_ndcg.a.x", False,
                                             known),
        "eggroll_ndcg.b": imported_modules("def f():\n    from .a import x\nfrom .a.x import h\n",
                                           "eggroll_ndcg.b", False, known),
    }
    assert graph["eggroll_ndcg.a.x"] == {"eggroll_ndcg.b"}, "its own package is no edge"
    assert graph["eggroll_ndcg.b"] == {"eggroll_ndcg.a", "eggroll_ndcg.a.x"}, "function-level imports are not"
    assert cycles(graph) == [["eggroll_ndcg.a", "eggroll_ndcg.a.x", "eggroll_ndcg.b"]]
    assert cycles({"p.a": {"p.b"}, "p.b": set()}) == []
    lazy = "def f():\n    from .a import x\ndef __getattr__(name):\n    from . import b\n"
    assert imported_modules(lazy, "eggroll_ndcg.b", False, known, everywhere=True) == {
        "eggroll_ndcg.a", "eggroll_ndcg.a.x"}, "function-level imports count, a __getattr__ shim does not"


@pytest.mark.parametrize("name", sorted(all_modules()))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_import_cycle_in_the_package():
    found = cycles(import_graph())
    assert not found, "import cycles among the package's modules: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_cycle_in_encoders_even_through_function_level_imports():
    prefix = f"{PACKAGE}.encoders"
    graph = {m: {t for t in ts if t.startswith(prefix)}
             for m, ts in import_graph(everywhere=True).items() if m.startswith(prefix)}
    assert graph[f"{prefix}.base"] == set(), "base.py imports no other module of the package"
    assert cycles(graph) == []
