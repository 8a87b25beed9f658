"""Verdicts against reply length: the same replies judged at 16, 32, 64, … new tokens
(``docs/method.md §7``).

Greedy decoding makes the first k tokens of a reply the reply ``max_new_tokens=k`` would have
given, so one long generation, cut and judged again, shows what a shorter generation would have
counted (up to re-tokenizing the decoded text). The ``lengths`` step writes every text judge's
flags at every cut (``judges/lengths.json``); :func:`length_summary` turns them into rates with
95% Wilson intervals, the number of verdicts that differ from the full-length ones, the paired
effects at every cut, and the length from which the verdicts stop changing.
"""

from __future__ import annotations

from typing import Callable, Sequence

from cosmic_tl import atomic
from cosmic_tl.judges import Judge, jailbreak_flags
from cosmic_tl.runs.context import Condition, Step, StepContext
from cosmic_tl.runs.files import read_jsonl
from cosmic_tl.runs.layout import LENGTHS
from cosmic_tl.stats import paired_effect, rate_with_ci

CUTS = (16, 32, 64, 128, 256)
"""The reply lengths (new tokens) verdicts are read at, up to the run's ``max_new_tokens``."""


def run_cuts(max_new_tokens: int, cuts: Sequence[int] = CUTS) -> list[int]:
    """The cuts shorter than ``max_new_tokens``, then ``max_new_tokens`` itself (the full replies)."""
    return sorted({k for k in cuts if k < max_new_tokens} | {max_new_tokens})


def cut_replies(tokenizer, replies: Sequence[str], k: int) -> list[str]:
    """Each reply cut to its first ``k`` tokens (the model's tokenizer, no special tokens), stripped.

    A reply of at most ``k`` tokens is kept exactly as it is, so the verdicts on the full replies
    are those of the ``judges`` step.
    """
    out = []
    for reply in replies:
        ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
        out.append(reply if len(ids) <= k else tokenizer.decode(ids[:k]).strip())
    return out


def length_step(conditions: Sequence[Condition], judges: Callable[[StepContext], list[Judge]]) -> Step:
    """Step ``lengths``: ``judges(ctx)``'s flags on every condition's replies at every cut.

    ``judges/lengths.json``: ``{"max_new_tokens", "cuts", "flags": {"<dataset>_<condition>":
    {judge: {"<k>": [bool, ...]}}}, "too_short": {same keys: {"<k>": [bool, ...]}}}``, where
    ``too_short`` marks replies under 2 characters at that cut (counted as refusals by the
    refusal metric, as in ``metrics/refusal.csv``).
    """

    def fn(ctx: StepContext) -> None:
        tokenizer = ctx.get_model().tokenizer
        cuts = run_cuts(ctx.sizes.max_new_tokens)
        chosen = judges(ctx)
        flags, too_short = {}, {}
        for condition in conditions:
            records = read_jsonl(ctx.path(condition.completions_file))
            prompts, replies = [r["prompt"] for r in records], [r["response"] for r in records]
            key = f"{condition.dataset}_{condition.label}"
            flags[key], too_short[key] = {j.name: {} for j in chosen}, {}
            for k in cuts:
                # The full length is the replies as generated (re-tokenized text can be longer).
                cut = replies if k == ctx.sizes.max_new_tokens else cut_replies(tokenizer, replies, k)
                too_short[key][str(k)] = [not ok for ok in jailbreak_flags([False] * len(cut), cut)]
                for judge in chosen:
                    flags[key][judge.name][str(k)] = [bool(f) for f in judge.judge(prompts, cut)]
        atomic.write_json(ctx.path(LENGTHS), {"max_new_tokens": ctx.sizes.max_new_tokens, "cuts": cuts,
                                              "flags": flags, "too_short": too_short})

    return Step("lengths", fn)


def counted(record: dict, key: str, judge: str, k: int, refusal: bool) -> list[bool]:
    """The verdicts the run's metric counts at cut ``k``: the judge's flags, or for the refusal
    metric its flags or too short to be an answer."""
    flags = record["flags"][key][judge][str(k)]
    if not refusal:
        return [bool(f) for f in flags]
    return [bool(f) or bool(s) for f, s in zip(flags, record["too_short"][key][str(k)])]


def length_summary(record: dict, tests: Sequence[tuple[str, str, str]], *, refusal: bool) -> dict:
    """Rates, changes and effects at every cut of ``judges/lengths.json`` (``summary.json["lengths"]``).

    Args:
        record: The file's contents.
        tests: ``(prompt key, intervention, expected change)`` of the run's paired effects.
        refusal: The run counts refusals (short replies count as refusals).

    Returns:
        ``{"max_new_tokens", "cuts", "judges": {judge: {"rates": {"<dataset>_<condition>": [{"k",
        "count", "n", "rate", "ci_low", "ci_high", "changed"}]}, "effects": [{"k", **paired_effect}],
        "changed": [{"k", "count", "n", "rate", "ci_low", "ci_high"}], "stable_from": k}}}``.
        ``changed`` counts verdicts at cut k that differ from those on the full replies (with the
        Wilson interval of that share); ``stable_from`` is the shortest cut from which no verdict
        of any condition differs from the full-length one (the full length when every shorter cut
        changes some).
    """
    cuts, full = record["cuts"], record["max_new_tokens"]
    keys = list(record["flags"])
    judges = list(record["flags"][keys[0]]) if keys else []
    out = {"max_new_tokens": full, "cuts": cuts, "judges": {}}
    for judge in judges:
        verdicts = {key: {k: counted(record, key, judge, k, refusal) for k in cuts} for key in keys}
        differ = {key: {k: [a != b for a, b in zip(by_cut[k], by_cut[full])] for k in cuts}
                  for key, by_cut in verdicts.items()}
        rates = {key: [{"k": k, **rate_with_ci(verdicts[key][k]).to_dict(), "changed": sum(differ[key][k])}
                       for k in cuts] for key in keys}
        changed = [{"k": k, **rate_with_ci([d for key in keys for d in differ[key][k]]).to_dict()} for k in cuts]
        stable = full
        for entry in reversed(changed):
            if entry["count"] > 0:
                break
            stable = entry["k"]
        effects = [{"k": k, **paired_effect(dataset, condition, verdicts[f"{dataset}_baseline"][k],
                                           verdicts[f"{dataset}_{condition}"][k], expected=expected)}
                   for k in cuts for dataset, condition, expected in tests
                   if f"{dataset}_baseline" in verdicts and f"{dataset}_{condition}" in verdicts]
        out["judges"][judge] = {"rates": rates, "effects": effects, "changed": changed, "stable_from": stable}
    return out
