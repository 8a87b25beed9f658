"""Where the run figures used to live; they are :mod:`cosmic_tl.runs.figures`."""

from cosmic_tl.runs.figures import run_figures, write_run_figures

__all__ = ["run_figures", "write_run_figures"]
