"""The explorer's precomputations (``cosmic-tl explore --top-k``), saved in the run folder.

``RUN_DIR/explorer/precomputed.json`` holds, per part of the run, the top-K candidates'
completions and the test-prompt projections, with the fingerprint of the run they were computed
from and the page-data version they were written in: a file left from another configuration is
ignored, never shown as this run's; one written in another version is refused (or, by the
precomputation itself, replaced), never shown with its old keys.
"""

from __future__ import annotations

from pathlib import Path

from cosmic_tl import atomic
from cosmic_tl.explore.source import ExplorerInputError
from cosmic_tl.runs import Run
from cosmic_tl.runs.files import read_json

PRECOMPUTED = Path("explorer") / "precomputed.json"
VERSION = 2
"""The explorer's page-data version (files before version 2 record none)."""


def load_precomputed(run: Run, *, refuse_other_version: bool = True) -> dict:
    """The saved precomputations of ``run`` (``{}`` if none or another run's).

    Args:
        run: The run (its folder and fingerprint).
        refuse_other_version: Raise for a file of another page-data version (else read it as ``{}``,
            as the precomputation does before it replaces the file).

    Raises:
        ArtifactError: the file is damaged (named; ``cosmic-tl explore --top-k`` rewrites it).
        ExplorerInputError: the file is of another page-data version (one line: rerun the precomputation).
    """
    path = run.root / PRECOMPUTED
    if not path.is_file():
        return {}
    saved = read_json(path)
    if not isinstance(saved, dict) or saved.get("fingerprint") != run.fingerprint:
        return {}
    version = saved.get("version", 1)
    if version == VERSION:
        return saved
    if refuse_other_version:
        raise ExplorerInputError(
            f"{path} was written by another explorer (page-data version {version}, this one reads {VERSION}); "
            f"rerun `cosmic-tl explore {run.root} --top-k N` to recompute it.")
    return {}


def save_precomputed(run: Run, saved: dict) -> Path:
    """Write ``saved`` (stamped with the run's fingerprint and the page-data version) atomically."""
    return atomic.write_json(run.root / PRECOMPUTED, {**saved, "fingerprint": run.fingerprint, "version": VERSION})
