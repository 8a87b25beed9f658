"""Runs: the run folder, the shared steps, the pipeline, and reading finished runs.

- :mod:`~cosmic_tl.runs.folder`: :class:`RunFolder` (claim or refuse a folder, lock it, resumable
  steps whose markers vouch for their files).
- :mod:`~cosmic_tl.runs.reader`: :func:`open_run` → :class:`Run` (pipeline and experiment folders,
  with the experiments' sub-runs).
- :mod:`~cosmic_tl.runs.context`: :class:`StepContext` (what a step gets) and the data describing a
  step's model and steering (:class:`ModelVariant`, :class:`Intervention`, :class:`Condition`).
- :mod:`~cosmic_tl.runs.steps` / :mod:`~cosmic_tl.runs.evaluate`: the steps shared by the pipeline
  and every experiment.
- :mod:`~cosmic_tl.runs.pipeline`: :func:`run_pipeline`, the pipeline as a list of steps;
  :mod:`~cosmic_tl.runs.report` and :mod:`~cosmic_tl.runs.figures` read its :class:`Run`.
- :mod:`~cosmic_tl.runs.notebook`: size settings and shared run folders for the notebooks.

Nothing in the method core (models, prompts, data, activations, directions, hooks, steering, scores,
similarity, selection, generation, judges) imports this package.
"""

from cosmic_tl.runs.reader import Run, open_run
from cosmic_tl.runs.folder import RunFolder, RunFolderError
from cosmic_tl.runs.context import Condition, Intervention, ModelVariant, Step, StepContext
from cosmic_tl.runs.pipeline import pipeline_steps, run_pipeline

__all__ = [
    "Condition", "Intervention", "ModelVariant", "Run", "RunFolder", "RunFolderError", "Step", "StepContext",
    "open_run", "pipeline_steps", "run_pipeline",
]
