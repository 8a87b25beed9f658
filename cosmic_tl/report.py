"""Where the run report used to live; it is :mod:`cosmic_tl.runs.report`."""

from cosmic_tl.runs.report import render_report, run_summary

__all__ = ["render_report", "run_summary"]
