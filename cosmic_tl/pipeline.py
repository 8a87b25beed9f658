"""Where the pipeline used to live; kept so that ``from cosmic_tl.pipeline import run_pipeline``
and ``load_run`` keep working. The pipeline is :mod:`cosmic_tl.runs.pipeline`."""

from cosmic_tl.runs.evaluate import PIPELINE_CONDITIONS
from cosmic_tl.runs.pipeline import pipeline_steps, run_pipeline
from cosmic_tl.runs.reader import Run, open_run

# (dataset, condition, intervention) of every completion set, as before the conditions were data.
CONDITIONS = tuple((c.dataset, c.name, c.interventions[0].action if c.interventions else None)
                   for c in PIPELINE_CONDITIONS)
load_run = open_run

__all__ = ["CONDITIONS", "PIPELINE_CONDITIONS", "Run", "load_run", "open_run", "pipeline_steps", "run_pipeline"]
