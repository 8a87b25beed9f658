"""``cosmic-tl`` subcommands of the experiments: ``agreement``, ``adversarial``, ``weak``.

Each takes the same run options as ``cosmic-tl run`` (``--out`` is the experiment's folder,
resumed when it holds the same experiment and configuration), prints the report and returns 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("cosmic_tl")


def _finish(args) -> int:
    print(Path(args.out, "report.md").read_text())
    print(f"Artifacts: {args.out}/  (report.md, *.csv, figures/*.html)")
    return 0


def add_experiment_commands(sub, add_run_options, config_from_args) -> None:
    """Register the experiment subcommands on the ``cosmic-tl`` parser.

    Args:
        sub: The parser's subparsers action.
        add_run_options: Adds the ``cosmic-tl run`` options (incl. ``--out``) to a parser.
        config_from_args: Builds the :class:`~cosmic_tl.config.RunConfig` from parsed arguments.
    """

    def cmd_agreement(args) -> int:
        from cosmic_tl.experiments.agreement import run_agreement

        run_agreement(config_from_args(args), args.out, progress=not args.quiet, log=log.info)
        return _finish(args)

    def cmd_adversarial(args) -> int:
        from cosmic_tl.experiments.adversarial import run_adversarial

        run_adversarial(config_from_args(args), args.out, progress=not args.quiet, log=log.info)
        return _finish(args)

    def cmd_weak(args) -> int:
        from cosmic_tl.experiments.weak import WEAK_ALPHAS, run_weak

        alphas = args.alphas if args.alphas is not None else WEAK_ALPHAS
        run_weak(config_from_args(args), args.out, alphas=alphas, natural=args.natural,
                 progress=not args.quiet, log=log.info)
        return _finish(args)

    p = sub.add_parser("agreement", help="COSMIC vs refusal-token selection on one score table")
    add_run_options(p)
    p.set_defaults(fn=cmd_agreement)

    p = sub.add_parser("adversarial", help="directions extracted under a forced-refusal system prompt")
    add_run_options(p)
    p.set_defaults(fn=cmd_adversarial)

    p = sub.add_parser("weak", help="weakly aligned model: find a second direction and sweep α")
    add_run_options(p)
    p.add_argument("--alphas", type=float, nargs="+", metavar="ALPHA",
                   help="addition strengths of the stage-2 direction (default: 1 2 3, as the paper)")
    p.add_argument("--natural", action="store_true",
                   help="no stage 1: find the direction in the model as it is (e.g. a barely aligned model)")
    p.set_defaults(fn=cmd_weak)
