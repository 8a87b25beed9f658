"""Experiments are one registration each: an :class:`Experiment` value, registered where it is defined.

:func:`register_experiment` makes the experiment a ``cosmic-tl`` subcommand
(:mod:`cosmic_tl.experiments.cli` reads :data:`EXPERIMENTS`) and its folders readable
(:func:`~cosmic_tl.runs.reader.open_run`, the explorer: its :class:`~cosmic_tl.runs.kinds.RunKind`
goes to :data:`cosmic_tl.runs.kinds.RUN_KINDS`). The run reader sits below the experiments and
never imports them, so the built-in experiments' kinds are defined in :mod:`cosmic_tl.runs.kinds`;
a new experiment defines its kind beside it.

Example:
    >>> from cosmic_tl.runs import RunKind
    >>> def run_toy(config, out, *, model=None, progress=True, log=print, repeats=1): ...
    >>> toy = register_experiment(Experiment(RunKind("toy"), "a toy experiment", run_toy))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from cosmic_tl.runs.kinds import RunKind, register_run_kind


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """An experiment with no options of its own beyond the run options."""


def _no_params(args: argparse.Namespace) -> dict:
    return {}


@dataclass(frozen=True)
class Experiment:
    """One experiment: what its folder holds, how to run it and its command line.

    Attributes:
        kind: Its run kind (the name, also the subcommand and the folder's record ``kind``, and its
            sub-runs).
        help: The subcommand's one-line help.
        run: ``run(config, out, *, model, progress, log, **params)`` runs (or resumes) it into the
            folder ``out`` and writes ``report.md`` there.
        add_arguments: Adds the experiment's own options to its subcommand's parser.
        params: The keyword arguments of ``run`` from the parsed options.
    """

    kind: RunKind
    help: str
    run: Callable[..., object]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    params: Callable[[argparse.Namespace], dict] = _no_params

    @property
    def name(self) -> str:
        return self.kind.name


EXPERIMENTS: dict[str, Experiment] = {}
"""Every registered experiment by name, in registration order (the CLI's order)."""


def register_experiment(experiment: Experiment) -> Experiment:
    """Register ``experiment`` as a ``cosmic-tl`` subcommand and its run kind with the reader."""
    register_run_kind(experiment.kind)
    EXPERIMENTS[experiment.name] = experiment
    return experiment
