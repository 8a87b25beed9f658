"""The explorer page of a finished run folder, written by the composers (pipeline, experiments).

The page (``explorer.html``) is written after a run's steps, outside any step's marker, so that
``cosmic-tl explore RUN_DIR --top-k K`` may rewrite it without the figures step looking damaged on
the next resume. It sits here, above :mod:`cosmic_tl.runs` and :mod:`cosmic_tl.explore`, because
the explorer reads run folders through :mod:`cosmic_tl.runs`: the run package never calls back up.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cosmic_tl.explore import ExplorerInputError, write_explorer_page

logger = logging.getLogger("cosmic_tl")


def write_explorer(root: Path, log=logger.info) -> Path | None:
    """Write ``explorer.html`` from what the folder holds (no model; about a second).

    Returns:
        The page, or None (logged) when the folder has nothing to explore: an experiment whose
        selections all came out empty.
    """
    try:
        page = write_explorer_page(root)
    except ExplorerInputError as e:
        log(f"No explorer page: {e}")
        return None
    log(f"Explorer page (every candidate, linked): {page}")
    return page
