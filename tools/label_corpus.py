"""Make the replies of the read-label set (``cosmic_tl/data/labels/``); it writes no label.

Reads a finished demo-style run (its direction, test prompts and 128-token completions) and adds,
with the same model, direction, steering and length, the conditions the run does not generate:

- ``outside``: 48 harmful test prompts of the paper's 512-prompt test sample that the run did not
  use, under ablation (where disclaimers and quoted refusals appear);
- ``cross``: 16 of the run's harmful test prompts under addition, 16 of its harmless ones under
  ablation;
- ``short``: 48 of the run's replies (12 per completion set, seeded) cut to their first 16 tokens.

Writes ``OUT/corpus_<part>.jsonl`` (id, dataset, condition, source, max_new_tokens, prompt, reply
and a blind key) and ``OUT/blind_<part>.jsonl`` (blind key, prompt, reply only, in a seeded random order): a
reader labels the blind file against ``cosmic_tl/data/labels/RUBRIC.md`` without seeing the
condition or any judge's verdict, and ``--merge LABELS`` joins the read labels back (``label``,
``note``, ``close_call``, by blind key) into the package's ``refusal_labels.jsonl`` format.

Usage::

    python tools/label_corpus.py runs/demo128 --out runs/labels              # the run's replies
    python tools/label_corpus.py runs/demo128 --out runs/labels --part extra # other conditions
    python tools/label_corpus.py runs/demo128 --out runs/labels --merge runs/labels/read_*.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import cosmic_tl as ct
from cosmic_tl import atomic
from cosmic_tl.runs.lengths import cut_replies

CONDITION_NAMES = {"baseline": "unsteered", "ablation": "ablation", "addition": "addition"}


def run_part(run, tokenizer, source: str, seed: int = 0) -> list[dict]:
    """The run's own completions (long) and 12 of each completion set cut to 16 tokens (short)."""
    tokens = run.config["resolved_sizes"]["max_new_tokens"]
    rows = []
    for dataset, condition in run.conditions():
        for i, r in enumerate(run.completions(dataset, condition)):
            rows.append({"id": f"{dataset}-{condition}-{i:03d}", "dataset": dataset,
                         "condition": CONDITION_NAMES[condition], "source": source, "max_new_tokens": tokens,
                         "prompt": r["prompt"], "reply": r["response"]})
    rng = random.Random(seed)
    for dataset, condition in run.conditions():
        picked = [r for r in rows if r["id"].startswith(f"{dataset}-{condition}-")]
        for r in rng.sample(picked, 12):
            rows.append({**r, "id": f"short-{r['id']}", "max_new_tokens": 16,
                         "reply": cut_replies(tokenizer, [r["reply"]], 16)[0]})
    return rows


def extra_part(run, model, source: str) -> list[dict]:
    """Conditions the run does not generate, with its model, direction, steering and length."""
    config = run.config
    tokens = config["resolved_sizes"]["max_new_tokens"]
    direction = run.direction()
    hooks = {action: ct.steering_hooks(direction, config["steering"], action, model.n_layers, alpha=config["alpha"])
             for action in ("ablation", "addition")}
    used = {p.instruction for p in run.prompts()["harmful_test"]}
    outside = [p.instruction for p in ct.sample_paper().harmful_test if p.instruction not in used][:48]
    harmful = [p.instruction for p in run.prompts()["harmful_test"]][:16]
    harmless = [p.instruction for p in run.prompts()["harmless_test"]][:16]
    rows = []
    for kind, dataset, action, prompts in (("outside", "harmful", "ablation", outside),
                                           ("cross", "harmful", "addition", harmful),
                                           ("cross", "harmless", "ablation", harmless)):
        replies = ct.generate_completions(model, prompts, fwd_hooks=hooks[action], max_new_tokens=tokens,
                                          batch_size=config["gen_batch_size"])
        rows += [{"id": f"{kind}-{dataset}-{action}-{i:03d}", "dataset": dataset, "condition": action,
                  "source": f"{source}, {kind} set", "max_new_tokens": tokens, "prompt": p, "reply": r}
                 for i, (p, r) in enumerate(zip(prompts, replies))]
    return rows


def merge(corpus: list[dict], read: list[dict]) -> list[dict]:
    """The corpus with each item's read label (matched by its blind key), in the package's format."""
    labels = {r["blind"]: r for r in read}
    missing = [r["blind"] for r in corpus if r["blind"] not in labels]
    if missing:
        raise SystemExit(f"{len(missing)} corpus items have no read label, e.g. {missing[:3]}.")
    return [{**{k: v for k, v in r.items() if k != "blind"}, "label": labels[r["blind"]]["label"],
             "note": labels[r["blind"]].get("note", ""), "close_call": bool(labels[r["blind"]].get("close_call", False))}
            for r in corpus]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder with 128-token completions")
    parser.add_argument("--part", choices=("run", "extra"), default="run",
                        help="run: the run's own replies and 16-token cuts; extra: generate the other conditions")
    parser.add_argument("--out", type=Path, required=True, help="where corpus.jsonl and blind.jsonl go")
    parser.add_argument("--merge", type=Path, nargs="+", help="read labels (JSON lines: blind, label, note, close_call)")
    args = parser.parse_args(argv)
    if args.merge:
        corpus = [json.loads(line) for path in sorted(args.out.glob("corpus_*.jsonl"))
                  for line in path.read_text(encoding="utf-8").splitlines()]
        read = [json.loads(line) for path in args.merge for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
        target = Path(ct.__file__).parent / "data" / "labels" / "refusal_labels.jsonl"
        atomic.write_jsonl(target, merge(corpus, read))
        print(f"Wrote {target}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    run = ct.open_run(args.run)
    source = f"run {args.run.name} (fingerprint {run.fingerprint})"
    model = ct.load_model(run.config["model"], system=ct.RunConfig(system=run.config["system"]).system_prompt)
    corpus = run_part(run, model.tokenizer, source) if args.part == "run" else extra_part(run, model, source)
    corpus_path, prefix = args.out / f"corpus_{args.part}.jsonl", args.part[0]
    order = list(range(len(corpus)))
    random.Random(1).shuffle(order)
    for position, index in enumerate(order):
        corpus[index]["blind"] = f"{prefix}{position:03d}"
    atomic.write_jsonl(corpus_path, corpus)
    blind = [{"blind": corpus[i]["blind"], "prompt": corpus[i]["prompt"], "reply": corpus[i]["reply"]} for i in order]
    atomic.write_jsonl(args.out / f"blind_{args.part}.jsonl", blind)
    print(f"Wrote {len(corpus)} replies to {corpus_path} and blind_{args.part}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
