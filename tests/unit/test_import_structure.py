"""The package's import structure: no circle among its modules, data flows one way (the method core
does not reach the run, plot or explorer layers; :mod:`cosmic_tl.runs` does not reach the explorer or
the workflows above it), read from the source with ``ast``; and importing a core module does not
load those layers (checked in a fresh interpreter).

Every import counts, also those inside functions (a lazy import is still a call into that module,
and a circle hidden behind one is still a circle); only those under ``if TYPE_CHECKING`` do not.
``from pkg.mod import x`` is an edge to ``pkg.mod`` and to each package above it (their
``__init__`` runs first), except the module's own packages: a package's ``__init__`` importing its
submodules, which import their siblings by full path, is how a package is built, not a circle.
The top-level ``cosmic_tl`` package is left out for the same reason (its names load lazily).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cosmic_tl

PACKAGE_ROOT = Path(cosmic_tl.__file__).parent

# The layers above the method core (see the docstring of cosmic_tl.runs).
UPPER_LAYERS = ("cosmic_tl.runs", "cosmic_tl.plots", "cosmic_tl.explore", "cosmic_tl.experiments",
                "cosmic_tl.workflows")
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


def _imports(node: ast.AST):
    """Every import statement under ``node``, at any depth, except under ``if TYPE_CHECKING``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for block_node in child.orelse:  # the body runs only under a type checker
                yield from _imports(ast.Module(body=[block_node], type_ignores=[]))
        else:
            yield from _imports(child)


def import_graph(root: Path) -> dict[str, set[str]]:
    """``module -> package modules it imports`` (anywhere in its source) for the package at ``root``."""
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

        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
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


def test_the_walker_finds_circles_through_lazy_imports_but_not_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("from pkg.sub.b import B\nA = 1\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import D\n"
        "from .. import c as _c\nB = 2\n")
    (pkg / "c.py").write_text("C = 3\n")
    (pkg / "d.py").write_text("class D:\n    def f(self):\n        from pkg.a import A\n        return A\n")
    graph = import_graph(pkg)
    assert graph["pkg.sub.b"] == {"pkg.c"}  # the relative import; not its own package, not TYPE_CHECKING
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.d"] == {"pkg.a"}  # inside a method
    assert import_cycles(graph) == []
    (pkg / "c.py").write_text("def f():\n    from pkg.a import A\n    return A\n")  # a lazy way back
    assert import_cycles(import_graph(pkg)) == [["pkg.a", "pkg.c", "pkg.sub", "pkg.sub.b"]]


def test_no_import_circle_among_package_modules():
    graph = import_graph(PACKAGE_ROOT)
    assert "cosmic_tl.hooks" in graph and "cosmic_tl.workflows.pipeline" in graph
    assert import_cycles(graph) == []


def test_the_method_core_does_not_import_runs_plots_or_explore():
    graph = import_graph(PACKAGE_ROOT)
    for core in CORE_MODULES:
        reached = _reach(graph, f"cosmic_tl.{core}")
        upper = sorted(m for m in reached if m.startswith(UPPER_LAYERS))
        assert upper == [], f"cosmic_tl.{core} imports {upper}"


def test_runs_is_storage_and_steps_and_never_calls_up():
    """The run package is below the explorer and the workflows that compose both."""
    graph = import_graph(PACKAGE_ROOT)
    for module in (m for m in graph if m == "cosmic_tl.runs" or m.startswith("cosmic_tl.runs.")):
        above = sorted(m for m in _reach(graph, module)
                       if m.startswith(("cosmic_tl.explore", "cosmic_tl.workflows", "cosmic_tl.experiments")))
        assert above == [], f"{module} imports {above}"


@pytest.mark.parametrize("module", ["hooks", "directions", "selection.cosmic", "steering"])
def test_importing_a_core_module_loads_no_upper_layer(module):
    code = ("import json, sys, cosmic_tl.%s; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('cosmic_tl'))))" % module)
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                       text=True).stdout)
    assert f"cosmic_tl.{module}" in loaded
    assert [m for m in loaded if m.startswith(UPPER_LAYERS + ("cosmic_tl.judges",))] == []


def test_the_package_names_load_on_first_use():
    import cosmic_tl

    assert set(cosmic_tl.__all__) <= set(cosmic_tl._MODULE_OF) | {"explore"}
    for name in cosmic_tl.__all__:
        assert getattr(cosmic_tl, name) is not None
    from cosmic_tl.explore import widget  # the subpackage of the same name does not replace the function

    assert callable(cosmic_tl.explore) and widget.explore is not cosmic_tl.explore
