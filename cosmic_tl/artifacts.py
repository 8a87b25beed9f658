"""Deprecated names of the run-folder helpers, kept for code written before :mod:`cosmic_tl.runs`.

Writing goes through :mod:`cosmic_tl.atomic` (the package's one atomic writer), reading through
:mod:`cosmic_tl.runs.files`, run folders through :class:`cosmic_tl.runs.RunFolder`.
"""

from __future__ import annotations

import os  # noqa: F401  (tests patch ``artifacts.os``: the same module the atomic writer uses)

from cosmic_tl.atomic import write_bytes as atomic_write_bytes  # noqa: F401
from cosmic_tl.atomic import write_json, write_jsonl, write_text  # noqa: F401
from cosmic_tl.runs import folder as _folder
from cosmic_tl.runs.files import read_csv, read_json, read_jsonl, write_csv  # noqa: F401
from cosmic_tl.runs.folder import RunFolderError, peak_rss_gb  # noqa: F401


def RunFolder(root, fingerprint: str, config: dict) -> _folder.RunFolder:  # noqa: N802 (was a class)
    """The pipeline run folder of ``fingerprint`` (see :class:`cosmic_tl.runs.RunFolder`)."""
    return _folder.RunFolder(root, "pipeline", fingerprint, {"config": config})
