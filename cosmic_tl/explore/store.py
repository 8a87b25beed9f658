"""The explorer's precomputations (``cosmic-tl explore --top-k``), saved in the run folder.

``RUN_DIR/explorer/precomputed.json`` holds, per part of the run, the top-K candidates'
completions and the test-prompt projections, with the fingerprint of the run they were computed
from: a file left from another configuration is ignored, never shown as this run's.
"""

from __future__ import annotations

from pathlib import Path

from cosmic_tl import atomic
from cosmic_tl.runs.files import read_json

PRECOMPUTED = Path("explorer") / "precomputed.json"


def run_fingerprint(root: Path) -> str | None:
    record = read_json(root / "config.json")
    return record.get("fingerprint") if isinstance(record, dict) else None


def load_precomputed(root: Path) -> dict:
    """The saved precomputations of the run in ``root`` (``{}`` if none or another run's).

    Raises:
        ArtifactError: the file is damaged (named; ``cosmic-tl explore --top-k`` rewrites it).
    """
    path = root / PRECOMPUTED
    if not path.is_file():
        return {}
    saved = read_json(path)
    return saved if isinstance(saved, dict) and saved.get("fingerprint") == run_fingerprint(root) else {}


def save_precomputed(root: Path, saved: dict) -> Path:
    """Write ``saved`` (stamped with the run's fingerprint) atomically."""
    return atomic.write_json(root / PRECOMPUTED, {**saved, "fingerprint": run_fingerprint(root)})
