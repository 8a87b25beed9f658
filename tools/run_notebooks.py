"""Execute the notebooks top to bottom at one size setting and keep their figures.

``make figures`` runs every notebook at the ``small`` sizes (cosmic_tl.workflows.notebook) on the
default model: run folders go to ``runs/notebooks`` (shared, so a finished step is reused) and
figures to ``figures/``, the folder the README links. The committed ``.ipynb`` files stay without
outputs; executed copies go to ``runs/notebooks/executed``. Prints each notebook's wall time.

Usage::

    python tools/run_notebooks.py [--size small] [NN_name ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("ci", "small", "paper"))
    parser.add_argument("names", nargs="*", help="notebook stems, e.g. 03_cosmic_selection (default: all)")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.names:
        unknown = sorted(set(args.names) - {p.stem for p in paths})
        if unknown:
            parser.error(f"no such notebook: {', '.join(unknown)} (see {NOTEBOOKS})")
        paths = [p for p in paths if p.stem in args.names]
    os.environ.update(COSMIC_TL_NOTEBOOK_SIZE=args.size, COSMIC_TL_NOTEBOOK_OUT=str(ROOT), TQDM_DISABLE="1")
    os.environ.pop("COSMIC_TL_NOTEBOOK_FIGURES", None)  # figures/ of the repository
    executed = ROOT / "runs" / "notebooks" / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        try:
            NotebookClient(notebook, timeout=7200, kernel_name="python3",
                           resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        except CellExecutionError as e:
            print(f"{path.name} failed:\n{e}", file=sys.stderr)
            return 1
        finally:
            nbformat.write(notebook, executed / path.name)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
