"""The package's shape: imports go one way, the CLI is a shell, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "recipes"
BASE = ("recipes.core", "recipes.schedules")  # what everything stands on
UPPER = ("recipes.training", "recipes.search", "recipes.tuning", "recipes.ensembles",
         "recipes.transfer", "recipes.distributed", "recipes.cli")  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.AST) -> set[str]:
    """Every `recipes` module imported, at module level or inside functions, but not in
    `if TYPE_CHECKING:` blocks (those never run)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("recipes"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recipes"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (names that are not modules are dropped)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py") if "metrics/" not in str(p)[-40:]}
    files.update({module_name(p): p for p in (PACKAGE / "ensembles" / "metrics").glob("*.py")})
    graph = {}
    for name, path in files.items():
        imported = runtime_imports(ast.parse(path.read_text()))
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


GRAPH = import_graph()


def test_no_import_cycle() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {**GRAPH, "recipes.core.errors": {*GRAPH["recipes.core.errors"], "recipes.cli"}}
    assert find_cycle(graph) is not None


def test_only_the_cli_imports_the_cli() -> None:
    outside = {
        module: sorted(m for m in imported if m.startswith("recipes.cli"))
        for module, imported in GRAPH.items()
        if not module.startswith("recipes.cli") and module != "recipes.__main__"
    }
    assert not {m: i for m, i in outside.items() if i}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith(BASE)))
def test_the_base_imports_nothing_above_it(module: str) -> None:
    assert not sorted(m for m in GRAPH[module] if m.startswith(UPPER))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_every_module_says_why_it_exists_and_stays_small(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path} has no module docstring"
    assert len(path.read_text().splitlines()) <= 300
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    long = [f.name for f in functions if f.end_lineno - f.lineno + 1 > 60]
    assert not long, f"functions over 60 lines in {path}: {long}"
