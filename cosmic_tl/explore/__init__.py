"""Explore a run: linked position × layer maps of every candidate, offline page and notebook view.

- :func:`write_explorer_page` writes ``RUN_DIR/explorer.html`` from what the run folder holds.
- :func:`precompute_top_k` (``cosmic-tl explore RUN_DIR --top-k K``) adds what needs the model:
  the top-K candidates' completions and the test prompts' projections.
- :func:`explore` is the same explorer as an ipywidgets view in a notebook, with a live steering
  panel when a model is passed.
"""

from cosmic_tl.explore.data import build_explorer_data
from cosmic_tl.explore.page import write_explorer_page
from cosmic_tl.explore.source import ExplorerInputError

__all__ = ["ExplorerInputError", "build_explorer_data", "explore", "precompute_top_k", "write_explorer_page"]


def __getattr__(name):
    # The model-side modules import torch hooks and ipywidgets; load them only when asked for.
    if name == "explore":
        from cosmic_tl.explore.widget import explore

        return explore
    if name == "precompute_top_k":
        from cosmic_tl.explore.precompute import precompute_top_k

        return precompute_top_k
    raise AttributeError(f"module 'cosmic_tl.explore' has no attribute {name!r}")
