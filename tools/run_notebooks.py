"""Execute the notebooks top to bottom at one size setting and keep their figures.

``make figures`` runs every notebook at the ``small`` sizes (cosmic_tl.workflows.notebook) on the
default model: run folders go to ``runs/notebooks`` (shared, so a finished step is reused) and
figures to ``figures/``, the folder the README links. Each notebook is built from its jupytext
source (``notebooks/NN_name.py``, the reviewed text) and executed in a fresh kernel; the executed
copy goes to ``runs/notebooks/executed``, or, with ``--in-place``, back to ``notebooks/NN_name.ipynb``
(the committed notebook: the source's cells with their outputs, so the code a reader sees is the
reviewed code). Prints each notebook's wall time.

Usage::

    python tools/run_notebooks.py [--size small] [--in-place] [NN_name ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from cosmic_tl.runs import RunFolderError, open_run
from cosmic_tl.runs.capability import read_capabilities
from cosmic_tl.runs.effects import effects
from cosmic_tl.stats import Effect

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"
EFFECT_MARK = "exact McNemar p ="  # in every printed effect sentence (ct.Effect's str)


def run_folders() -> list[Path]:
    """The folders the notebooks read runs from: their own (``runs/notebooks``, not committed) and
    the committed ``results/runs/<model>/<run>``."""
    own = ROOT / "runs" / "notebooks"
    return sorted([*(own.iterdir() if own.is_dir() else ()), *(ROOT / "results" / "runs").glob("*/*")])


def effect_sentences(folder: Path) -> set[str]:
    """The sentence of every effect of the run in ``folder`` (its sub-runs' and its capability
    effects included); none where ``folder`` holds no run."""
    try:
        run = open_run(folder)
    except RunFolderError:  # e.g. executed/, or a run that never got its record
        return set()
    texts = {str(e) for part in (run, *run.subruns().values()) for e in effects(part)}
    capabilities = read_capabilities(run) or {}
    return texts | {str(Effect.from_dict(e)) for c in capabilities.values() for e in c["effects"]}


def printed_effects(notebook: nbformat.NotebookNode) -> list[str]:
    """The effect sentences the observations (the last cell) print."""
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream")
    return [line.strip().removeprefix("- ") for line in printed.splitlines() if EFFECT_MARK in line]


def effect_sources(notebook: nbformat.NotebookNode) -> dict[str, list[Path]]:
    """For each effect sentence the observations print, the run folders that hold it word for word."""
    lines = printed_effects(notebook)
    holders: dict[str, list[Path]] = {line: [] for line in lines}
    for folder in run_folders() if lines else ():
        for line in set(lines) & effect_sentences(folder):
            holders[line].append(folder)
    return holders


def code_digest(notebook: nbformat.NotebookNode) -> str:
    """sha256 of a notebook's code cells: what its outputs depend on (markdown edits do not count)."""
    code = [cell.source.strip() for cell in notebook.cells if cell.cell_type == "code"]
    return hashlib.sha256("\n\0".join(code).encode()).hexdigest()


def from_source(source: Path) -> nbformat.NotebookNode:
    """The notebook of a jupytext source, with the cell ids and metadata of its committed ``.ipynb``
    where there is one (so regenerating it changes only what changed), and no outputs."""
    notebook = jupytext.read(source)
    ipynb = source.with_suffix(".ipynb")
    if ipynb.is_file():
        notebook = combine_inputs_with_outputs(notebook, nbformat.read(ipynb, as_version=4), fmt="py:percent")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def is_plotly_bundle(output: nbformat.NotebookNode) -> bool:
    """Whether ``output`` is the copy of plotly.js (about 5 MB) that plotly's ``notebook`` renderer
    puts before a notebook's first figure."""
    html = output.get("data", {}).get("text/html", "")
    return output.output_type == "display_data" and "window.PlotlyConfig" in html and "plotly.js v" in html


def tidy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what a saved notebook need not carry, so a committed one stays small and its diff shows
    changed results only: execution timings, the plotly.js copy, and widgets (progress bars: the
    notebooks ask for them, and tqdm's ``TQDM_DISABLE`` yields to that), whose views show nothing
    without their state and whose state is a bar's last frame.

    Without that copy a figure stays interactive where the plotly mimetype is rendered (JupyterLab,
    Notebook 7, VS Code); elsewhere (GitHub, nbviewer) the PNG that ``NB.show`` puts below each
    figure shows it. Executing the notebook again brings the copy back.
    """
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if not is_plotly_bundle(o) and WIDGET not in o.get("data", {})]
    return notebook


def execute(notebook: nbformat.NotebookNode) -> None:
    """Run ``notebook`` in a fresh kernel started in ``notebooks/`` (outputs land in its cells)."""
    NotebookClient(notebook, timeout=7200, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    # A failed display (e.g. a formatter's exception) leaves an error output without raising.
    failed = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code"
              and any(o.output_type == "error" for o in c.get("outputs", []))]
    if failed:
        raise CellExecutionError(f"cell {failed[0]} shows an error output", "", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("ci", "small", "paper"))
    parser.add_argument("--in-place", action="store_true",
                        help="write each executed notebook to notebooks/NN_name.ipynb (the committed file)")
    parser.add_argument("names", nargs="*", help="notebook stems, e.g. 03_cosmic_selection (default: all)")
    args = parser.parse_args(argv)
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if args.names:
        unknown = sorted(set(args.names) - {p.stem for p in sources})
        if unknown:
            parser.error(f"no such notebook: {', '.join(unknown)} (see {NOTEBOOKS})")
        sources = [p for p in sources if p.stem in args.names]
    # Progress bars off where tqdm picks the default (a text bar saves as pages of carriage returns);
    # the widget bars a notebook asks for are dropped by tidy().
    os.environ.update(COSMIC_TL_NOTEBOOK_SIZE=args.size, COSMIC_TL_NOTEBOOK_OUT=str(ROOT), TQDM_DISABLE="1")
    os.environ.pop("COSMIC_TL_NOTEBOOK_FIGURES", None)  # figures/ of the repository
    executed = ROOT / "runs" / "notebooks" / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    for source in sources:
        notebook = from_source(source)
        # What the outputs were made from, so a test can tell outputs of an older source: `jupytext
        # --sync` carries new code into the .ipynb but keeps this stamp and the old outputs.
        notebook.metadata["cosmic_tl"] = {"size": args.size, "code_sha256": code_digest(notebook)}
        name = source.with_suffix(".ipynb").name
        start = time.perf_counter()
        try:
            execute(notebook)
        except CellExecutionError as e:
            print(f"{name} failed:\n{e}", file=sys.stderr)
            return 1
        finally:  # the executed copy for inspection, also after a failure
            nbformat.write(tidy(notebook), executed / name)
        holders = effect_sources(notebook)
        unheld = [line for line, folders in holders.items() if not folders]
        if unheld:  # the observations must print the runs' numbers, not a copy
            print(f"{name}: printed effects that no run holds:\n" + "\n".join(unheld), file=sys.stderr)
            return 1
        # The runs the observations read, for tests/unit/test_committed_notebooks.py.
        notebook.metadata["cosmic_tl"]["effects_from"] = sorted(
            {str(f.relative_to(ROOT)) for folders in holders.values() for f in folders})
        if args.in_place:  # only a notebook that ran to the end replaces the committed one
            nbformat.write(notebook, NOTEBOOKS / name)  # tidied and stamped above
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
