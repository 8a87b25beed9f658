"""Runs: the run folder, the shared steps, the pipeline, and reading finished runs.

- :mod:`~cosmic_tl.runs.folder`: :class:`RunFolder` (claim or refuse a folder, lock it, resumable
  steps whose markers vouch for their files).
- :mod:`~cosmic_tl.runs.reader`: :func:`open_run` → :class:`Run` (pipeline and experiment folders,
  with the experiments' sub-runs); :mod:`~cosmic_tl.runs.kinds`: the run kinds it reads (each
  kind's sub-runs, their labels, comparisons and model); :mod:`~cosmic_tl.runs.effects`: each
  (sub-)run's paired effects.
- :mod:`~cosmic_tl.runs.context`: :class:`StepContext` (what a step gets) and the data describing a
  step's model and steering (:class:`ModelVariant`, :class:`Intervention`, :class:`Condition`).
- :mod:`~cosmic_tl.runs.steps` / :mod:`~cosmic_tl.runs.evaluate`: the steps shared by the pipeline
  and every experiment; :mod:`~cosmic_tl.runs.report` and :mod:`~cosmic_tl.runs.figures` read a
  finished :class:`Run`.

This package is storage plus the step library. What composes the steps into a job (the pipeline,
the notebooks' helper, the explorer page) lives above it in :mod:`cosmic_tl.workflows`; nothing here
imports :mod:`cosmic_tl.explore`, and nothing in the method core (models, prompts, data,
activations, directions, hooks, steering, scores, similarity, selection, generation, judges)
imports this package.
"""

from cosmic_tl.runs.reader import Run, open_run
from cosmic_tl.runs.folder import RunFolder, RunFolderError
from cosmic_tl.runs.context import Condition, ModelVariant, Step, StepContext
from cosmic_tl.runs.kinds import Comparison, Intervention, RunKind, SubRun

__all__ = [
    "Comparison", "Condition", "Intervention", "ModelVariant", "Run", "RunFolder", "RunFolderError", "RunKind", "Step",
    "StepContext", "SubRun", "open_run",
]
