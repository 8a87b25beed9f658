"""``cosmic-tl`` subcommands of the registered experiments (:data:`~cosmic_tl.experiments.registry.EXPERIMENTS`).

Each takes the same run options as ``cosmic-tl run`` (``--out`` is the experiment's folder,
resumed when it holds the same experiment and configuration) and its own options, prints the
report and returns 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cosmic_tl.experiments.registry import EXPERIMENTS, Experiment

log = logging.getLogger("cosmic_tl")


def _command(experiment: Experiment, config_from_args):
    def command(args) -> int:
        experiment.run(config_from_args(args), args.out, progress=not args.quiet, log=log.info,
                       **experiment.params(args))
        print(Path(args.out, "report.md").read_text())
        print(f"Artifacts: {args.out}/  (report.md, *.csv, figures/*.html)")
        return 0

    return command


def add_experiment_commands(sub, add_run_options, config_from_args) -> None:
    """Register a subcommand per registered experiment on the ``cosmic-tl`` parser.

    Args:
        sub: The parser's subparsers action.
        add_run_options: Adds the ``cosmic-tl run`` options (incl. ``--out``) to a parser.
        config_from_args: Builds the :class:`~cosmic_tl.config.RunConfig` from parsed arguments.
    """
    for experiment in EXPERIMENTS.values():
        p = sub.add_parser(experiment.name, help=experiment.help)
        add_run_options(p)
        experiment.add_arguments(p)
        p.set_defaults(fn=_command(experiment, config_from_args))
