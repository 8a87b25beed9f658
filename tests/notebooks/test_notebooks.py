"""The per-section notebooks: structure, jupytext pairing, and a full execution in CI sizes.

Every ``notebooks/NN_name.py`` (jupytext py:percent, the reviewed source) must be paired with an
``NN_name.ipynb`` holding the same cells (committed executed at the ``small`` sizes: the unit test
``tests/unit/test_committed_notebooks.py`` checks those outputs). Each notebook is then executed top to
bottom in a fresh kernel with ``COSMIC_TL_NOTEBOOK_SIZE=ci`` (tiny sizes, the default model); any
cell error fails the test. The notebooks run in file order and share one temporary output folder
(``COSMIC_TL_NOTEBOOK_OUT``), so later notebooks reuse the run folders of earlier ones, as they do
for a user; each still runs on its own. Figures go to a temporary folder too
(``COSMIC_TL_NOTEBOOK_FIGURES``), never to the repository's ``figures/``. Every effect a notebook's
observations print is one of the runs it read, in that effect's own words.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import resource
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
_TOOL = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_TOOL)
_TOOL.loader.exec_module(run_notebooks)  # the tool that stamps the committed notebooks reads effects so
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = [
    "00_data",
    "01_background_directions_and_interventions",
    "02_substring_baseline_selection",
    "03_cosmic_selection",
    "04_main_results",
    "05_adversarial_complete_refusal",
    "06_weakly_aligned_models",
    "07_capabilities_appendix",
    "08_custom_concepts",
]
CELL_TIMEOUT_S = 1800


def _cells(notebook) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_every_section_has_a_paired_notebook():
    assert [p.stem for p in SOURCES] == EXPECTED
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    config = (ROOT / "jupytext.toml").read_text()
    assert 'formats = "ipynb,py:percent"' in config


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_py_and_ipynb_are_in_sync(source):
    """The .ipynb holds exactly the cells of its py:percent source (regenerate with
    ``jupytext --sync notebooks/*.py`` or ``make notebooks``)."""
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} is missing; run: jupytext --to ipynb {source}"
    from_py, from_ipynb = jupytext.read(source), jupytext.read(ipynb)
    assert _cells(from_py) == _cells(from_ipynb), f"{ipynb.name} is out of sync with {source.name}"


def _parameters(source: str) -> dict:
    """The values a parameter cell assigns; it may hold nothing else (papermill overrides them)."""
    values = {}
    for statement in ast.parse(source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, \
            f"the parameter cell holds only assignments, not {ast.unparse(statement)!r}"
        values[statement.targets[0].id] = ast.literal_eval(statement.value)
    return values


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    """A claim first, one parameter cell of plain values, observations computed last."""
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "first cell: the paper's claim"
    parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, "exactly one cell tagged 'parameters'"
    assert "COSMIC_TL_NOTEBOOK_SIZE" in parameters[0].source, "the parameter cell says how to choose the sizes"
    assert _parameters(parameters[0].source).get("SIZE", "unset") is None, \
        "SIZE = None: the size comes from COSMIC_TL_NOTEBOOK_SIZE unless set here"
    assert cells[-2].cell_type == "markdown" and "What we observed" in cells[-2].source
    assert cells[-1].cell_type == "code" and "print(" in cells[-1].source
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert "notebook_connected" not in code, "plotly must render offline"
    assert "fingerprint()[:8]" not in code, "run folders are found by NB.pipeline / NB.experiment, not by hand"


@pytest.fixture(scope="session")
def notebook_out(tmp_path_factory) -> Path:
    """One output folder (runs/ and figures/) shared by the notebooks of this session.

    Set ``COSMIC_TL_TEST_NOTEBOOK_OUT`` to keep it between sessions (finished run steps are then
    reused, which makes re-running one notebook's test fast).
    """
    kept = os.environ.get("COSMIC_TL_TEST_NOTEBOOK_OUT")
    return Path(kept) if kept else tmp_path_factory.mktemp("notebook_out")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_in_ci_sizes(path, notebook_out, monkeypatch):
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_SIZE", "ci")
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_OUT", str(notebook_out))
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_FIGURES", str(notebook_out / "figures"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    notebook = nbformat.read(path, as_version=4)  # its committed outputs are cleared cell by cell
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    start, cpu_start = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    try:
        client.execute()
    except CellExecutionError as e:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the traceback without terminal colours
        pytest.fail(f"{path.name} failed in CI sizes:\n{plain}", pytrace=False)
    finally:  # the executed copy (outputs included) for inspection, also after a failure
        (notebook_out / "executed").mkdir(exist_ok=True)
        nbformat.write(notebook, notebook_out / "executed" / path.name)
    # The kernel's CPU time (counted once it exits): less load-dependent than the wall time.
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu_start
    print(f"{path.name}: {time.perf_counter() - start:.0f} s wall, {cpu:.0f} s kernel CPU")
    figures = sorted((notebook_out / "figures").glob(f"{path.stem[:2]}_*.html"))
    assert figures, f"{path.name} saved no figure to figures/"
    _assert_printed_effects_are_the_runs(notebook, notebook_out)


def _effect_texts(out: Path) -> set[str]:
    """The sentence of every effect of every run under ``out`` and of the committed ``results/``
    runs (the ones notebook 04 reads), as the notebook tool reads them."""
    runs = out / "runs" / "notebooks"
    folders = sorted(runs.iterdir()) if runs.is_dir() else []  # 00_data writes no run
    folders += sorted(ROOT.glob("results/runs/*/*"))
    return set().union(*(run_notebooks.effect_sentences(folder) for folder in folders))


def _assert_printed_effects_are_the_runs(notebook, out: Path) -> None:
    """Every effect sentence the observations print (a line with the McNemar p-value) is, word for
    word, an effect of a run the notebooks wrote: the numbers come from the runs, not from a copy."""
    known = _effect_texts(out)
    assert [line for line in run_notebooks.printed_effects(notebook) if line not in known] == [], \
        "printed effects that no run holds"
