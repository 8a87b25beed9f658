"""How many new tokens the substring judge needs before its verdict stops changing.

Reads a finished run's completions, cuts every reply to its first k tokens (the model's own
tokenizer) and judges the prefix again. Greedy decoding makes the first k tokens of a longer
reply the reply a run with ``max_new_tokens=k`` would give (up to re-tokenizing the decoded text),
so this measures, without generating anything, what a shorter ``max_new_tokens`` would change.

Usage::

    python benchmarks/judge_tokens.py runs/demo [--tokens 4 8 12 16 24]

Prints, per (prompts, intervention), the refusal count at every k and how many verdicts differ
from the verdict on the whole reply.
"""

from __future__ import annotations

import argparse
import sys

import cosmic_tl as ct


def prefix_flags(tokenizer, judge: ct.Judge, prompts: list[str], replies: list[str], k: int) -> list[bool]:
    """The judge's flags on every reply cut to its first ``k`` tokens."""
    prefixes = [tokenizer.decode(tokenizer(r, add_special_tokens=False)["input_ids"][:k]) for r in replies]
    return judge.judge(prompts, prefixes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished pipeline run folder")
    parser.add_argument("--tokens", type=int, nargs="+", default=[4, 8, 12, 16, 24, 32, 48])
    args = parser.parse_args(argv)
    try:
        run = ct.open_run(args.run)
    except ct.RunFolderError as e:
        parser.error(str(e))
    tokenizer = ct.load_model(run.config["model"]).tokenizer
    judge = ct.SubstringJudge()
    n_new = run.config["resolved_sizes"]["max_new_tokens"]
    cuts = [k for k in sorted(set(args.tokens)) if k < n_new]
    print(f"{args.run}: replies of {n_new} new tokens; verdicts on the first k tokens vs on the whole reply")
    print(f"{'prompts / intervention':32} " + " ".join(f"{'k=' + str(k):<9}" for k in cuts) + f"  all {n_new}")
    for dataset, condition in run.conditions():
        rows = run.completions(dataset, condition)
        prompts, replies = [r["prompt"] for r in rows], [r["response"] for r in rows]
        full = judge.judge(prompts, replies)
        cells = []
        for k in cuts:
            flags = prefix_flags(tokenizer, judge, prompts, replies, k)
            changed = sum(a != b for a, b in zip(flags, full))
            cells.append((f"{sum(flags)}/{len(flags)}" + (f"({changed})" if changed else "")).ljust(9))
        print(f"{dataset + ' / ' + condition:32} " + " ".join(cells) + f"  {sum(full)}/{len(full)}")
    print("a(b): a replies flagged at k tokens, b of them differ from the verdict on the whole reply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
