"""What the explorer reads of a run, all of it through the run reader (:mod:`cosmic_tl.runs`).

A pipeline run is one :class:`Part`; an experiment's parts are its sub-runs (``Run.subruns()``),
so the explorer follows the reader's layouts instead of keeping its own. A part is the sub-run's
:class:`~cosmic_tl.runs.reader.Run`, whose label, comparisons and model the run's kind gives
(:mod:`cosmic_tl.runs.kinds`) and whose files the reader checks. A file a part does not have yet
(a selection whose filters left nothing, an unfinished run) reads as None here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from cosmic_tl.candidates import Candidates
from cosmic_tl.directions import Direction
from cosmic_tl.runs import Comparison, Run, RunFolderError, open_run
from cosmic_tl.runs.kinds import run_alpha
from cosmic_tl.steering import steering_hooks


class ExplorerInputError(ValueError):
    """The folder given to the explorer is not a finished run or experiment folder."""


def optional(read: Callable, *args):
    """``read(*args)``, or None where the part has no such file (yet)."""
    try:
        return read(*args)
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Part:
    """One explorable (sub-)run.

    Attributes:
        key: ``"run"`` for a pipeline run, else the sub-run's key (``"stage2"``, ...).
        run: The sub-run (the run itself for a pipeline run).
    """

    key: str
    run: Run

    @property
    def whole(self) -> Run:
        """The whole run (its config, concept and the unsteered completions sub-runs share)."""
        return self.run.whole

    @property
    def label(self) -> str:
        return self.run.label

    @property
    def comparisons(self) -> list[Comparison]:
        return self.run.comparisons()

    def model_hooks(self, model) -> list:
        """The hooks under which the part's candidates were read (the weak experiment's M′; none for
        the model as it is), built for the loaded ``model``. A direction not saved yet adds none."""
        config, hooks = self.whole.config, []
        for iv in self.run.model_interventions():
            direction = optional(self.whole.stored_direction, iv.direction)
            if direction is not None:
                alpha = run_alpha(self.whole) if iv.alpha is None else iv.alpha
                hooks += steering_hooks(direction, config.get("steering", "ace"), iv.action, model.n_layers,
                                        alpha=alpha, model=model)
        return hooks

    def candidates(self) -> Candidates | None:
        return optional(self.run.candidates)

    def direction(self) -> Direction | None:
        return optional(self.run.direction)

    def cosine_pos_layer(self) -> pd.DataFrame | None:
        return optional(self.run.cosine_pos_layer)

    def eval_layers(self) -> list[int]:
        return optional(self.run.eval_layers) or []

    def selection_table(self) -> pd.DataFrame | None:
        return optional(self.run.selection_table)

    def selection_summary(self) -> dict:
        summary = optional(self.run.selection_summary)
        return {"error": "not selected yet"} if summary is None else summary

    def completions(self, dataset: str, condition: str, *, baseline: bool = False) -> list[dict] | None:
        """A completion set of the part (``baseline``: of the whole run), None if it was not written."""
        return optional((self.whole if baseline else self.run).completions, dataset, condition)

    def test_prompts(self, dataset: str) -> list[str]:
        """The instructions of the run's ``<dataset>_test`` prompts."""
        return [p.instruction for p in self.whole.prompts()[f"{dataset}_test"]]


def open_source(run) -> Run:
    """The run reader of ``run``: a folder path, or a :class:`~cosmic_tl.runs.reader.Run`.

    Raises:
        ExplorerInputError: not a run folder.
    """
    if isinstance(run, Run):
        return run.whole
    if not isinstance(run, (str, os.PathLike)):
        raise ExplorerInputError(f"Expected a run folder path or a Run (cosmic_tl.open_run), got {type(run).__name__}.")
    try:
        return open_run(run)
    except RunFolderError as e:
        raise ExplorerInputError(str(e)) from None


def run_parts(run) -> list[Part]:
    """The explorable parts of a run or experiment folder (at least one).

    Args:
        run: A folder path or a run reader.

    Raises:
        ExplorerInputError: not a run folder, or no part has a selection table yet.
    """
    whole = open_source(run)
    parts = [Part(key, sub) for key, sub in (whole.subruns() or {"run": whole}).items()]
    parts = [p for p in parts if p.selection_table() is not None]
    if not parts:
        raise ExplorerInputError(
            f"{whole.root} has no selection table yet (selection/…/table.csv): finish the run first "
            "(rerunning the same command resumes it).")
    return parts
