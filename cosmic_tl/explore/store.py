"""The explorer's precomputations (``cosmic-tl explore --top-k``), saved in the run folder.

``RUN_DIR/explorer/precomputed.json`` holds, per part of the run, the top-K candidates'
completions and the test-prompt projections, with the fingerprint of the run they were computed
from: a file left from another configuration is ignored, never shown as this run's.
"""

from __future__ import annotations

import json
from pathlib import Path

from cosmic_tl import atomic

PRECOMPUTED = Path("explorer") / "precomputed.json"


def run_fingerprint(root: Path) -> str | None:
    return json.loads((root / "config.json").read_text()).get("fingerprint")


def load_precomputed(root: Path) -> dict:
    """The saved precomputations of the run in ``root`` (``{}`` if none or another run's)."""
    path = root / PRECOMPUTED
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    return saved if saved.get("fingerprint") == run_fingerprint(root) else {}


def save_precomputed(root: Path, saved: dict) -> Path:
    """Write ``saved`` (stamped with the run's fingerprint) atomically."""
    return atomic.write_json(root / PRECOMPUTED, {**saved, "fingerprint": run_fingerprint(root)})
