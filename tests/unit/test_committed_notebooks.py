"""The committed notebooks are executed, from their reviewed source, with a static image per figure.

``tools/run_notebooks.py --size small --in-place`` (``make figures``) writes each executed notebook
to ``notebooks/NN_name.ipynb``. A reader on GitHub (which runs no JavaScript) sees its outputs: the
tables, the printed observations, and below every interactive plotly figure its PNG. These checks
read the committed files only (no kernel, no model): every code cell ran, top to bottom, from the
code of the ``.py`` source as it is now; no cell failed; each figure has its image; and the effects
the observations print are, word for word, those of the runs the notebook read (where those runs
are on this machine: ``runs/notebooks`` is not committed, ``results/runs`` is).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
PLOTLY = "application/vnd.plotly.v1+json"


def _tool():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_notebooks = _tool()


def _committed(source: Path) -> nbformat.NotebookNode:
    return nbformat.read(source.with_suffix(".ipynb"), as_version=4)


def _code(notebook) -> list[str]:
    return [c.source.strip() for c in notebook.cells if c.cell_type == "code"]


def expects_output(source: str) -> bool:
    """Whether a cell always shows something: it prints, displays or shows a figure outside any
    ``if`` (a conditional display may rightly show nothing), or ends with a bare expression."""
    try:
        body = ast.parse(source).body
    except SyntaxError:  # an IPython magic: no telling
        return False

    def shows(node) -> bool:
        if isinstance(node, ast.If):
            return False
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id in ("print", "display")) or \
                    (isinstance(f, ast.Attribute) and f.attr == "show"):
                return True
        return any(shows(child) for child in ast.iter_child_nodes(node))

    ends_with_value = bool(body) and isinstance(body[-1], ast.Expr) and not isinstance(body[-1].value, ast.Call)
    return ends_with_value or any(shows(statement) for statement in body)


def test_expects_output_reads_a_cell():
    assert expects_output("x = 1\nprint(x)") and expects_output("for f in figs:\n    NB.show(f, 'a')")
    assert expects_output("table") and expects_output("display(t)")
    assert not expects_output("x = 1") and not expects_output("if natural:\n    display(natural)")
    assert not expects_output("model.reset_hooks()") and not expects_output("%time x = 1")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_ran_from_its_source(source):
    """Outputs of the code as reviewed: the stamp the tool wrote is the digest of the source's code
    cells now (``jupytext --sync`` brings edited code into the .ipynb but keeps the old outputs and
    stamp), at the size the README documents, top to bottom in one kernel."""
    notebook = _committed(source)
    assert _code(notebook) == _code(jupytext.read(source)), f"{source.stem}.ipynb: code differs from {source.name}"
    stamp = notebook.metadata.get("cosmic_tl", {})
    assert stamp.get("size") == "small", f"{source.stem}.ipynb was not executed by tools/run_notebooks.py --size small"
    assert stamp.get("code_sha256") == run_notebooks.code_digest(jupytext.read(source)), \
        f"{source.stem}.ipynb holds outputs of an older {source.name}; run tools/run_notebooks.py --in-place {source.stem}"
    counts = [c.execution_count for c in notebook.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{source.stem}.ipynb: cells not run once each, in order"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_has_its_outputs_and_no_error(source):
    notebook = _committed(source)
    for k, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        assert not [o for o in cell.outputs if o.output_type == "error"], f"{source.stem} cell {k} failed"
        if expects_output(cell.source):
            assert cell.outputs, f"{source.stem} cell {k} shows nothing"
        streams = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert "Traceback" not in streams and "\r" not in streams, f"{source.stem} cell {k}: a traceback or progress bar"
        assert not [o for o in cell.outputs if run_notebooks.WIDGET in o.get("data", {})], \
            f"{source.stem} cell {k}: a widget (progress bar) without its state"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_figure_has_its_image(source):
    """Each interactive plotly output is followed by the PNG NB.show makes of it, and every
    NB.show call made one (a notebook shows at least one figure)."""
    notebook = _committed(source)
    figures = 0
    for k, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        kinds = [set(o.get("data", {})) for o in cell.outputs]
        for i, kind in enumerate(kinds):
            if PLOTLY in kind or "plotly-graph-div" in cell.outputs[i].get("data", {}).get("text/html", ""):
                figures += 1
                assert i + 1 < len(kinds) and "image/png" in kinds[i + 1], f"{source.stem} cell {k}: a figure without its image"
        texts = "".join(o.get("text", "") for o in cell.outputs)
        assert "no static image of" not in texts, f"{source.stem} cell {k}: executed where PNG export did not work"
        assert not any(run_notebooks.is_plotly_bundle(o) for o in cell.outputs), f"{source.stem} cell {k}: plotly.js kept"
    assert figures, f"{source.stem}.ipynb shows no figure"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_observations_print_the_runs_numbers(source):
    notebook = _committed(source)
    lines = run_notebooks.printed_effects(notebook)
    if not lines:
        return
    folders = [ROOT / f for f in notebook.metadata.get("cosmic_tl", {}).get("effects_from", [])]
    assert folders, f"{source.stem}.ipynb prints effects but names no run they came from"
    if not all(f.is_dir() for f in folders):
        pytest.skip(f"the runs {source.stem} read are not on this machine: {[str(f) for f in folders]}")
    known = set().union(*(run_notebooks.effect_sentences(f) for f in folders))
    assert [line for line in lines if line not in known] == [], "printed effects that its runs do not hold"
