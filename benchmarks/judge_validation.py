"""Every refusal judge against the shipped read labels: accuracy, precision, recall and Cohen's κ with
95% intervals, overall and per steering condition, and a confusion matrix per judge and condition.

Judges: the paper's substring judge, heretic's markers (needs heretic installed), the headline
judge (``refusal_stance``), the degenerate-reply judge (scored against the ``degenerate`` label),
and with ``--judge-model`` the shipped 1.5B chat-model judge plus its combinations with the
substring judge. The headline judge's patterns were written while reading only the *dev* half of
the labels (items whose id hashes even); the *held-out* half is reported on its own so that its
agreement is not a fit to the items it was tuned on.

Usage::

    python benchmarks/judge_validation.py --out results/judges [--judge-model]
    python benchmarks/judge_validation.py --out results/judges --reuse results/judges/judges.json

Writes ``OUT/judges.json`` (every number, and each judge's flags) and ``OUT/judges.md`` (the
tables of the README).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import cosmic_tl as ct
from cosmic_tl.judges import (
    DEFAULT_JUDGE_MODEL, CallableJudge, DegenerateJudge, HereticMarkerJudge, JudgeUnavailableError, ModelJudge,
    SubstringJudge, headline_judge, reference_labels,
)
from cosmic_tl.judges.validation import CONDITIONS, TARGETS, agreement_scores, confusion, kappa_text, validate_flags


def half(item_id: str) -> str:
    """``"dev"`` or ``"held-out"``: a fixed split of the labels by a hash of the item id."""
    return "dev" if int(hashlib.sha256(item_id.encode()).hexdigest(), 16) % 2 == 0 else "held-out"


def interval(entry: dict, key: str) -> str:
    v = entry[key]
    if v["value"] is None:
        return "n/a"
    return f"{v['value']:.2f} [{v['ci_low']:.2f}, {v['ci_high']:.2f}]"


def tables(results: dict, n: int) -> str:
    lines = []
    for target in TARGETS:
        lines += [f"### Target `{target}` ({' or '.join(sorted(TARGETS[target]))} vs the rest), {n} read labels", "",
                  "| judge | accuracy | precision | recall | κ (all) | κ held-out half | κ unsteered | κ ablation | κ addition |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in results.items():
            if target not in r:
                continue
            t = r[target]
            by = t["by_condition"]
            lines.append(f"| {name} | {interval(t['overall'], 'accuracy')} | {interval(t['overall'], 'precision')} | "
                         f"{interval(t['overall'], 'recall')} | {kappa_text(t['overall'])} | "
                         f"{kappa_text(r['held_out'][target])} | "
                         + " | ".join(kappa_text(by[c]) if c in by else "n/a" for c in CONDITIONS) + " |")
        lines.append("")
    lines += ["### Confusion (judge flags / read label), all conditions", "",
              "| judge | refusal | inability | compliance | degenerate |", "|---|---|---|---|---|"]
    for name, r in results.items():
        conf = r["confusion"]["all"]
        lines.append(f"| {name} | " + " | ".join(f"{conf[l]['flagged']} of {conf[l]['flagged'] + conf[l]['not']}"
                                                  for l in ("refusal", "inability", "compliance", "degenerate")) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for judges.json and judges.md")
    parser.add_argument("--judge-model", nargs="?", const=DEFAULT_JUDGE_MODEL, default=None,
                        help=f"also score a chat-model judge (flag alone: {DEFAULT_JUDGE_MODEL})")
    parser.add_argument("--reuse", type=Path, default=None, metavar="JUDGES_JSON",
                        help="take the chat-model judge's flags from an earlier judges.json of the same labels "
                             "(the text judges are always run again)")
    args = parser.parse_args(argv)
    items = reference_labels()
    prompts, replies = [i.prompt for i in items], [i.reply for i in items]
    judges = [SubstringJudge(), headline_judge()]
    try:
        judges.insert(1, HereticMarkerJudge())
    except JudgeUnavailableError as error:
        print(f"note: {error}")
    flags, seconds = {}, {}
    for judge in judges:
        start = time.perf_counter()
        flags[judge.name] = [bool(f) for f in judge.judge(prompts, replies)]
        seconds[judge.name] = time.perf_counter() - start
    model_name = None
    if args.reuse is not None:
        earlier = json.loads(args.reuse.read_text(encoding="utf-8"))
        if earlier["n"] != len(items):
            raise SystemExit(f"{args.reuse} scored {earlier['n']} labels, the shipped set has {len(items)}; rerun the judge.")
        model_name = next(name for name in earlier["flags"] if name.startswith("model_judge:"))
        flags[model_name] = earlier["flags"][model_name]
        seconds[model_name] = earlier["judges"][model_name]["seconds"]
    elif args.judge_model:
        model_judge = ModelJudge(ct.load_model(args.judge_model), progress=True)
        model_name = model_judge.name
        start = time.perf_counter()
        flags[model_name] = [bool(f) for f in model_judge.judge(prompts, replies)]
        seconds[model_name] = time.perf_counter() - start
    if model_name is not None:
        model_flags, substring = flags[model_name], flags[SubstringJudge.name]
        flags["substring AND model"] = [a and b for a, b in zip(substring, model_flags)]
        flags["refusal_stance OR model"] = [a or b for a, b in zip(flags[headline_judge().name], model_flags)]
    held = [i for i, item in enumerate(items) if half(item.id) == "held-out"]
    results = {}
    for name, f in flags.items():
        r = {t: validate_flags(items, f, t) for t in TARGETS}
        r["held_out"] = {t: agreement_scores([items[i].label in TARGETS[t] for i in held], [f[i] for i in held])
                         for t in TARGETS}
        r["confusion"] = r["refusal"]["confusion"]
        r["seconds"] = seconds.get(name)
        results[name] = r
    degenerate = DegenerateJudge().judge(prompts, replies)
    results_degenerate = {"agreement": agreement_scores([i.label == "degenerate" for i in items], degenerate),
                          "confusion": confusion(items, degenerate)}
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"n": len(items), "n_held_out": len(held), "judges": results, "degenerate_judge": results_degenerate,
               "flags": flags, "label_counts": {c: {l: sum(1 for i in items if i.condition == c and i.label == l)
                                                    for l in ("refusal", "inability", "compliance", "degenerate")}
                                                for c in CONDITIONS}}
    (args.out / "judges.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    text = tables(results, len(items))
    d = results_degenerate["agreement"]
    text += (f"\nDegenerate-reply judge against the `degenerate` label: precision {interval(d, 'precision')}, "
             f"recall {interval(d, 'recall')}, κ {kappa_text(d)}.\n")
    (args.out / "judges.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
