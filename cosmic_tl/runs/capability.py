"""What steering costs: the pipeline's TruthfulQA step (``docs/method.md §7``).

Step ``capabilities`` asks the run's fixed sample of TruthfulQA binary questions
(:func:`cosmic_tl.capabilities.truthfulqa_binary`, one forward pass per question, one letter order
as the authors) without intervention, under ablation and under addition of the selected
direction, with the same hooks as the completions. It writes

- ``capabilities/truthfulqa_<condition>.jsonl``: one record per question (CSV row, answer
  letter, correct, logit margin);
- ``capabilities/truthfulqa.json``: :func:`cosmic_tl.capabilities.capability_summary` (accuracy
  per condition with its 95% Wilson interval, paired exact McNemar effects against no
  intervention) with each condition's ``share_answer_a``: small models prefer one letter, so the
  one-order accuracy is partly a measure of that bias.

Its size is the preset's ``n_truthfulqa`` (0 skips the step's work and writes nothing).
"""

from __future__ import annotations

from cosmic_tl import atomic
from cosmic_tl.capabilities import BENCHMARK, TRUTHFULQA_ROWS, CapabilityResult, capability_summary, truthfulqa_binary
from cosmic_tl.runs.context import Intervention, Step, StepContext
from cosmic_tl.runs.files import read_json
from cosmic_tl.runs.layout import PIPELINE
from cosmic_tl.runs.reader import Run

TRUTHFULQA_SUMMARY = "capabilities/truthfulqa.json"
# Conditions of the check: the completions' interventions (docs/method.md §6), one letter order.
CAPABILITY_CONDITIONS = (
    ("baseline", ()),
    ("ablation", (Intervention(PIPELINE.direction, "ablation"),)),
    ("addition", (Intervention(PIPELINE.direction, "addition"),)),
)


def truthfulqa_records_file(condition: str) -> str:
    return f"capabilities/truthfulqa_{condition}.jsonl"


def n_truthfulqa(ctx: StepContext) -> int:
    """The number of questions of this run (the preset's ``n_truthfulqa``, at most all 790)."""
    return min(ctx.sizes.n_truthfulqa, TRUTHFULQA_ROWS)


def letter_a_share(result: CapabilityResult) -> float:
    """Share of questions answered "A" (the letter bias; 0.5 for a model without one)."""
    return sum(a == "A" for a in result.answers) / len(result.answers)


def _truthfulqa(ctx: StepContext) -> None:
    n = n_truthfulqa(ctx)
    if n < 1:
        ctx.log("  n_truthfulqa = 0: TruthfulQA check skipped")
        return
    model = ctx.get_model()
    results = []
    for condition, interventions in CAPABILITY_CONDITIONS:
        result = truthfulqa_binary(model, ctx.hooks(interventions), n=n, seed=ctx.config.seed,
                                   batch_size=ctx.config.batch_size, condition=condition, progress=ctx.progress)
        atomic.write_jsonl(ctx.path(truthfulqa_records_file(condition)), result.records())
        results.append(result)
    summary = capability_summary(results[0], results[1:])
    for entry, result in zip(summary["conditions"], results):
        entry["share_answer_a"] = letter_a_share(result)
    atomic.write_json(ctx.path(TRUTHFULQA_SUMMARY), summary)
    accuracies = ", ".join(f"{c['condition']} {c['accuracy']:.2f} ({c['count']}/{c['n']})" for c in summary["conditions"])
    ctx.log(f"  TruthfulQA binary accuracy: {accuracies}")


def capability_step() -> Step:
    """Step ``capabilities``: TruthfulQA binary choice unsteered, ablated and with addition."""
    return Step("capabilities", _truthfulqa)


def read_capabilities(run: Run) -> dict | None:
    """``{"truthfulqa_binary": ...}`` of a run that has the check, else None."""
    path = run.root / TRUTHFULQA_SUMMARY
    return {BENCHMARK: read_json(run._checked(path))} if path.is_file() else None
