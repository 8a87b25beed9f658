"""Workflows: what composes the run steps, the run folder and the explorer into one job.

- :mod:`~cosmic_tl.workflows.pipeline`: :func:`run_pipeline` (``cosmic-tl run``), the pipeline as
  a list of steps, then ``summary.json``, ``report.md`` and the explorer page.
- :mod:`~cosmic_tl.workflows.explorer_page`: :func:`write_explorer`, the explorer page of a
  finished pipeline or experiment folder.
- :mod:`~cosmic_tl.workflows.notebook`: size settings and shared run folders for the notebooks.

Data flows one way: :mod:`cosmic_tl.runs` (run folders and the step library) and
:mod:`cosmic_tl.explore` (which reads run folders through :mod:`cosmic_tl.runs`) never import this
package; the experiments (:mod:`cosmic_tl.experiments`) use its explorer page.
"""

from cosmic_tl.workflows.explorer_page import write_explorer
from cosmic_tl.workflows.notebook import NotebookSettings, notebook_settings
from cosmic_tl.workflows.pipeline import open_pipeline_folder, pipeline_steps, run_pipeline

__all__ = [
    "NotebookSettings", "notebook_settings", "open_pipeline_folder", "pipeline_steps", "run_pipeline",
    "write_explorer",
]
