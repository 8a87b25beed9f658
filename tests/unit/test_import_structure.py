"""The package's import structure: no circle among its modules, and the method core does not
reach the run, plot or explorer layers (read from the source with ``ast``, nothing is imported).

Only module-level imports count (also those under a module-level ``if``/``try``/``with``, but not
under ``if TYPE_CHECKING``); imports inside functions are run-time calls, not import edges.
``from pkg.mod import x`` is an edge to ``pkg.mod`` and to each package above it (their
``__init__`` runs first), except the module's own packages: a package's ``__init__`` importing its
submodules, which import their siblings by full path, is how a package is built, not a circle.
The top-level ``cosmic_tl`` package is left out for the same reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cosmic_tl

PACKAGE_ROOT = Path(cosmic_tl.__file__).parent

# The layers above the method core (see the docstring of cosmic_tl.runs).
UPPER_LAYERS = ("cosmic_tl.runs", "cosmic_tl.plots", "cosmic_tl.explore", "cosmic_tl.experiments")
CORE_MODULES = (
    "activations", "candidates", "concepts", "config", "data", "directions", "generation", "hooks", "judges",
    "metrics", "models", "prompts", "scores", "selection", "similarity", "steering",
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(body):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
                yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _module_level_imports(block)
        elif isinstance(node, ast.With):
            yield from _module_level_imports(node.body)


def import_graph(root: Path) -> dict[str, set[str]]:
    """``module -> package modules it imports at module level`` for the package at ``root``."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    top = root.name
    graph = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets = set()

        def add(target: str) -> None:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in files:
                    targets.add(candidate)

        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
                continue
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            submodules = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in files]
            for sub in submodules:
                add(sub)
            if len(submodules) < len(node.names):
                add(module)
        graph[name] = {t for t in targets if t != name and t != top and not name.startswith(t + ".")}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each is an import circle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_walker_finds_a_circle_and_ignores_lazy_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("from pkg.sub.b import B\nA = 1\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n"
        "def f():\n    from pkg import c\nfrom .. import c as _c\nB = 2\n")
    (pkg / "c.py").write_text("from pkg.a import A\nC = 3\n")
    graph = import_graph(pkg)
    assert graph["pkg.sub.b"] == {"pkg.c"}  # the relative import; not its own package, not the lazy ones
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert import_cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub", "pkg.sub.b"]]


def test_no_import_circle_among_package_modules():
    graph = import_graph(PACKAGE_ROOT)
    assert "cosmic_tl.hooks" in graph and "cosmic_tl.runs.pipeline" in graph
    assert import_cycles(graph) == []


def test_the_method_core_does_not_import_runs_plots_or_explore():
    graph = import_graph(PACKAGE_ROOT)
    for core in CORE_MODULES:
        reached = _reach(graph, f"cosmic_tl.{core}")
        upper = sorted(m for m in reached if m.startswith(UPPER_LAYERS))
        assert upper == [], f"cosmic_tl.{core} imports {upper} at module level"
