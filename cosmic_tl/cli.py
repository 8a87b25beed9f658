"""``cosmic-tl`` (also ``python -m cosmic_tl``): the pipeline and experiments from the shell.

Every option defaults to :class:`cosmic_tl.config.RunConfig`; ``--config FILE.toml`` replaces the
flags (flags given explicitly win over the file). ``cosmic-tl run`` also takes the concept flags
(``--concept chinese|FILE.toml``, ``--positive/--negative FILE``, ``--positive-suffix``,
``--judge``; :func:`cosmic_tl.concepts.add_concept_arguments`): any error of theirs is reported
on one line before a run folder exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import signal
import sys
from pathlib import Path

from cosmic_tl.config import PRESETS, SELECTION, SIZE_FIELDS, SYSTEM_CHOICES, ConfigError, RunConfig, steering_choices
from cosmic_tl.concepts import add_concept_arguments
from cosmic_tl.judges import DEFAULT_JUDGE_MODEL
from cosmic_tl.selection.refusal_token import REFUSAL_TOKEN_VARIANTS

# Options whose value may be a negative float in exponent form ("-1e30"), which argparse would
# otherwise take for an option.
_SIGNED_FLOAT_OPTIONS = ("--alpha",)

log = logging.getLogger("cosmic_tl")

# Errors caused by the input (names, files, sizes, disk): one line on stderr, exit 2; --verbose
# re-raises them with the traceback. Anything else is a bug and always shows its traceback.
USER_ERRORS = (ConfigError, ValueError, OSError, RuntimeError, ImportError, FloatingPointError)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    p.add_argument("--config", type=Path, help="TOML file of RunConfig fields (flags override it)")
    p.add_argument("--model", help=f"shipped name, Hugging Face id, folder or .gguf (default {d.model})")
    p.add_argument("--steering", choices=steering_choices(), help=f"default {d.steering}")
    p.add_argument("--selection", choices=SELECTION, help=f"{' | '.join(SELECTION)} (default {d.selection})")
    p.add_argument("--preset", choices=list(PRESETS), help=f"sizes (default {d.preset})")
    p.add_argument("--system", help=f"system turn: {SYSTEM_CHOICES} (default {d.system})")
    p.add_argument("--refusal-token-variant", choices=list(REFUSAL_TOKEN_VARIANTS),
                   help=f"the refusal-token selection's variant (default {d.refusal_token_variant})")
    for name in (*SIZE_FIELDS, "batch_size", "gen_batch_size", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"override (default {getattr(d, name)})")
    p.add_argument("--alpha", type=float, help=f"addition coefficient (default {d.alpha})")
    p.add_argument("--dtype", help=f"float32 | bfloat16 | float16 (default {d.dtype})")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument(
        "--judge-model", nargs="?", const=DEFAULT_JUDGE_MODEL,
        help=f"also judge completions with a chat model (flag alone: {DEFAULT_JUDGE_MODEL}, needs .[models-1-5b])",
    )
    p.add_argument("--out", required=True,
                   help="run folder: new, empty, or a run folder of this configuration (then resumed)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Build the RunConfig from a parsed namespace (``--config`` file first, flags on top)."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    flags = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.config is not None:
        return RunConfig.from_toml(args.config, **flags)
    return RunConfig(**flags)


def _cmd_run(args) -> int:
    from cosmic_tl.workflows import run_pipeline

    config = config_from_args(args)
    log.debug("Configuration (fingerprint %s): %s", config.fingerprint(), config.to_dict())
    summary = run_pipeline(config, args.out, sibling=args.reuse_from, progress=not args.quiet, log=log.info)
    print((Path(args.out) / "report.md").read_text())
    print(f"Artifacts: {args.out}/  (summary.json, report.md, figures/*.html, explorer.html)")
    return 0 if summary else 1


def _cmd_models(args) -> int:
    from cosmic_tl.shipped import DEFAULT_MODEL, SHIPPED_MODELS

    for name, m in SHIPPED_MODELS.items():
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}: {m.hf_id}\n    install: {m.install}")
    return 0


def _add_global_options(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging and tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cosmic-tl", description=__doc__.splitlines()[0])
    _add_global_options(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the end-to-end COSMIC pipeline")
    _add_run_options(run)
    run.add_argument("--reuse-from", metavar="RUN", help="a run of the same model, sizes and prompts that differs "
                     "only in selection, steering, alpha or filters: its prompts, directions, evaluation layers "
                     "and unsteered completions are copied (hash-checked) instead of recomputed, and its steered "
                     "steps too when it differs only in the selection and picked the same direction")
    add_concept_arguments(run)
    run.set_defaults(fn=_cmd_run)
    models = sub.add_parser("models", help="list the shipped offline models")
    models.set_defaults(fn=_cmd_models)
    from cosmic_tl.experiments.cli import add_experiment_commands

    add_experiment_commands(sub, _add_run_options, config_from_args)
    from cosmic_tl.explore.cli import add_explore_command

    add_explore_command(sub)
    from cosmic_tl.runs.rejudge import add_judges_command

    add_judges_command(sub)
    for command in sub.choices.values():
        # -v/-q also work after the subcommand; SUPPRESS keeps it from resetting the global flags.
        _add_global_options(command, default=argparse.SUPPRESS)
    return parser


def _join_signed_floats(argv: list[str]) -> list[str]:
    """``--alpha -1e30`` as ``--alpha=-1e30`` (argparse reads "-1e30" as an unknown option)."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] in _SIGNED_FLOAT_OPTIONS and token.startswith("-"):
            try:
                float(token)
            except ValueError:
                pass
            else:
                out[-1] = f"{out[-1]}={token}"
                continue
        out.append(token)
    return out


class _InterruptGuard(logging.Filter):
    """Makes one Ctrl-C always stop a run. Python drops a KeyboardInterrupt that lands in a
    finalizer or an import-lock callback ("Exception ignored in ..."), and the run would go on; the
    guard remembers the signal and raises again at the next log message (every step logs)."""

    def __init__(self):
        super().__init__()
        self.pending = False

    def on_sigint(self, signum, frame):
        self.pending = True
        raise KeyboardInterrupt

    def filter(self, record) -> bool:
        if self.pending:
            raise KeyboardInterrupt
        return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_signed_floats(sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("transformers", "transformer_lens", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    guard = _InterruptGuard()
    previous_handler = signal.signal(signal.SIGINT, guard.on_sigint)
    log.addFilter(guard)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("Interrupted; finished steps are saved and will be reused on the next run.", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.verbose:
            raise
        hint = " (free some space and rerun: finished steps are reused)" if _disk_full(e) else ""
        print(f"cosmic-tl: error: {_one_line(e)}{hint}", file=sys.stderr)
        return 2
    finally:
        log.removeFilter(guard)
        signal.signal(signal.SIGINT, previous_handler)


def _disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages, e.g. a pip command, are joined)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
