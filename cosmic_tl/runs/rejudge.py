"""``cosmic-tl judges RUN_DIR``: judge a finished run's replies again with every refusal judge and
print how far they agree, on each completion set and against the read labels.

Nothing in the run folder is written: the run's own verdicts stay those of its ``judges`` step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cosmic_tl import atomic
from cosmic_tl.judges import (
    DEFAULT_JUDGE_MODEL, HEADLINE_TARGET, Judge, JudgeUnavailableError, ModelJudge, SubstringJudge,
    judge_agreement, headline_judge,
)
from cosmic_tl.judges.degenerate import DegenerateJudge
from cosmic_tl.judges.heretic import HereticMarkerJudge
from cosmic_tl.judges.validation import kappa_text, validate_judge
from cosmic_tl.runs.reader import Run, open_run
from cosmic_tl.stats import rate_with_ci

DESCRIPTION = """\
Judge every completion set of a finished run again with each refusal judge: the headline judge,
the paper's substring judge, heretic's markers (when heretic is installed) and, with --judge-model,
a chat-model judge. Prints each judge's refusal count / n with its 95% Wilson interval per set,
Cohen's kappa of each judge against the headline judge on the same replies, and each text judge's
kappa against the shipped read labels. Also prints the share of degenerate replies per set.
Writes nothing into the run folder (--json FILE writes the numbers elsewhere).
"""


def refusal_judges(judge_model=None) -> tuple[list[Judge], list[str]]:
    """The refusal judges available here, headline first, and notes on those that are not."""
    judges: list[Judge] = [headline_judge(), SubstringJudge()]
    notes = []
    try:
        judges.append(HereticMarkerJudge())
    except JudgeUnavailableError as error:
        notes.append(str(error))
    if judge_model is not None:
        judges.append(ModelJudge(judge_model))
    return judges, notes


def rejudge_run(run: Run, judges: list[Judge]) -> dict:
    """Every judge's flags on every completion set of ``run`` and their agreement with the first.

    Returns:
        ``{"sets": {"<dataset>_<condition>": {"n", "rates": {judge: Rate dict}, "kappa": {judge:
        judge_agreement(...) against judges[0]}, "degenerate": Rate dict}}, "overall": {judge:
        agreement with judges[0] over all sets}}``.
    """
    out, pooled = {"sets": {}, "overall": {}}, {j.name: [] for j in judges}
    degenerate = DegenerateJudge()
    for dataset, condition in run.conditions():
        records = run.completions(dataset, condition)
        prompts, replies = [r["prompt"] for r in records], [r["response"] for r in records]
        flags = {j.name: [bool(f) for f in j.judge(prompts, replies)] for j in judges}
        first = flags[judges[0].name]
        out["sets"][f"{dataset}_{condition}"] = {
            "n": len(replies),
            "rates": {name: rate_with_ci(f).to_dict() for name, f in flags.items()},
            "kappa": {name: judge_agreement(first, f) for name, f in flags.items() if name != judges[0].name},
            "degenerate": rate_with_ci(degenerate.judge(prompts, replies)).to_dict(),
        }
        for name, f in flags.items():
            pooled[name] += f
    first = pooled[judges[0].name]
    out["overall"] = {name: judge_agreement(first, f) for name, f in pooled.items() if name != judges[0].name}
    return out


def _kappa_text(entry: dict) -> str:
    kappa = entry["cohen_kappa"]
    return "  n/a" if kappa is None else f"{kappa:5.2f}"


def format_rejudge(result: dict, judges: list[Judge], validated: dict[str, dict]) -> str:
    """The printed tables of :func:`rejudge_run` and of the judges' validation on the read labels."""
    names = [j.name for j in judges]
    width = max(len(n) for n in names) + 2
    lines = [f"Refusals per completion set (count/n, 95% Wilson interval); kappa against {names[0]}:", ""]
    for key, entry in result["sets"].items():
        lines.append(f"{key}  (n = {entry['n']}; degenerate {entry['degenerate']['count']}/{entry['n']})")
        for name in names:
            r = entry["rates"][name]
            kappa = "" if name == names[0] else f"  kappa {_kappa_text(entry['kappa'][name])}"
            lines.append(f"  {name:<{width}} {r['count']:>3}/{r['n']:<3} {r['rate']:.2f} "
                         f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]{kappa}")
    lines += ["", f"All sets: kappa against {names[0]}: "
              + ", ".join(f"{n} {_kappa_text(e)}" for n, e in result["overall"].items()), ""]
    lines.append(f"Against the read labels (target {HEADLINE_TARGET!r}: kappa [95% bootstrap interval], n):")
    for name, v in validated.items():
        o = v[HEADLINE_TARGET]["overall"]
        lines.append(f"  {name:<{width}} {kappa_text(o)}, n = {o['n']}")
    return "\n".join(lines)


def _cmd_judges(args) -> int:
    run = open_run(args.run_dir)
    judge_model = None
    if args.judge_model:
        from cosmic_tl.models import load_model

        judge_model = load_model(args.judge_model)
    judges, notes = refusal_judges(judge_model)
    result = rejudge_run(run, judges)
    validated = {j.name: validate_judge(j, targets=(HEADLINE_TARGET,)) for j in judges if not isinstance(j, ModelJudge)}
    for note in notes:
        print(f"note: {note}")
    print(format_rejudge(result, judges, validated))
    if args.json is not None:
        payload = {"run": str(run.root), **result,
                   "validation": {n: {k: v for k, v in r.items() if k != "flags"} for n, r in validated.items()}}
        atomic.write_json(args.json, payload)
        print(f"Wrote {args.json}")
    return 0


def add_judges_command(subparsers) -> argparse.ArgumentParser:
    """Register ``judges`` on the ``cosmic-tl`` parser's subparsers; returns its parser."""
    p = subparsers.add_parser("judges", help="judge a finished run's replies with every refusal judge",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run or experiment folder")
    p.add_argument("--judge-model", nargs="?", const=DEFAULT_JUDGE_MODEL, default=None,
                   help=f"also judge with a chat model (flag alone: {DEFAULT_JUDGE_MODEL}; slow)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the numbers to FILE")
    p.set_defaults(fn=_cmd_judges)
    return p
