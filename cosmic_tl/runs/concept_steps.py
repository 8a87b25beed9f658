"""What a concept decides in a run: its evaluation conditions, its judges, and (for a concept judged
by a plain rate) its metrics, summary and report (``docs/method.md §11``).

The refusal concept keeps the paper's conditions (``harmful`` / ``harmless``), judges and
refusal tables; any other concept gets the same four conditions on its own prompt keys, its own
judge, and ``metrics/rates.csv``: each judge's share of flagged replies with count, n and the 95%
Wilson interval, and each intervention against its baseline by the exact McNemar test.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from cosmic_tl import __version__, atomic, plots
from cosmic_tl.concepts import Concept
from cosmic_tl.judges import DEFAULT_JUDGE_MODEL, Judge, ModelJudge
from cosmic_tl.metrics import ALL_CATEGORIES, UNCATEGORIZED, ce_loss, next_token_kl
from cosmic_tl.models import load_model
from cosmic_tl.runs.context import Condition, Intervention, Step, StepContext
from cosmic_tl.runs.files import read_json, read_jsonl, write_csv
from cosmic_tl.runs.layout import PIPELINE, RATE_METRICS, SIDE_EFFECTS, run_concept
from cosmic_tl.runs.reader import Run
from cosmic_tl.stats import paired_effect, rate_with_ci

SELECTED = PIPELINE.direction
EXPECTED = {"lower": "decrease", "raise": "increase"}  # a concept's effect as cosmic_tl.stats names it


def concept_conditions(concept: Concept) -> tuple[Condition, ...]:
    """Positive test prompts unsteered and ablated, negative ones unsteered and with the addition.

    For the refusal concept these are the pipeline's ``PIPELINE_CONDITIONS``.
    """
    positive, negative = concept.labels.positive_key, concept.labels.negative_key
    return (
        Condition(positive, "baseline"),
        Condition(positive, "ablation", (Intervention(SELECTED, "ablation"),)),
        Condition(negative, "baseline"),
        Condition(negative, "addition", (Intervention(SELECTED, "addition"),)),
    )


def concept_record(concept: Concept) -> dict:
    """What ``config.json`` records of the concept (read back with :func:`~cosmic_tl.runs.layout.run_concept`)."""
    conditions = [[c.dataset, c.name] for c in concept_conditions(concept)]
    return {**concept.describe(), "conditions": conditions}


def concept_judges(concept: Concept) -> Callable[[StepContext], list[Judge]]:
    """The judges factory of the ``judges`` step: the concept's judge, then ``judge_model``'s.

    A model judge of the concept loads ``its model or judge_model or DEFAULT_JUDGE_MODEL``; a
    configured ``judge_model`` is added as a second judge (with the refusal question) only when
    the concept's judge is not already a model judge.
    """

    def judges(ctx: StepContext) -> list[Judge]:
        c = ctx.config

        def load(name: str | None):
            name = name or c.judge_model or DEFAULT_JUDGE_MODEL
            return ctx.get_model() if name == c.model else load_model(name, dtype=c.dtype, device=c.device)

        chosen = [concept.build_judge(load, batch_size=c.gen_batch_size, progress=ctx.progress)]
        if c.judge_model and not concept.needs_judge_model:
            chosen.append(ModelJudge(load(c.judge_model), batch_size=c.gen_batch_size, progress=ctx.progress))
        return chosen

    return judges


def rate_rows(records: Sequence[dict], flags: Sequence[bool], **labels) -> list[dict]:
    """One row per category (when the prompts have categories) and an ``"all"`` row: n, count,
    rate and its 95% Wilson interval."""
    categories = [r.get("category") or UNCATEGORIZED for r in records]
    groups = sorted(set(categories)) if any(r.get("category") for r in records) else []
    rows = []
    for name in (*groups, ALL_CATEGORIES):
        picked = [bool(f) for f, c in zip(flags, categories) if name in (ALL_CATEGORIES, c)]
        rows.append({**labels, "category": name, **rate_with_ci(picked).to_dict()})
    return rows


def rate_frame(ctx: StepContext, conditions: Sequence[Condition]) -> pd.DataFrame:
    """Every judge's rate per condition and category (``metrics/rates.csv``)."""
    rows = []
    for condition in conditions:
        records = read_jsonl(ctx.path(condition.completions_file))
        for judge, flags in read_json(ctx.path(condition.judged_file))["flags"].items():
            if len(flags) != len(records):
                raise ValueError(f"{condition.judged_file} holds {len(flags)} flags for {len(records)} completions "
                                 f"in {condition.completions_file}; rerun the run into its folder.")
            rows += rate_rows(records, flags, judge=judge, dataset=condition.dataset, condition=condition.label)
    return pd.DataFrame(rows)


def negative_side_effects(ctx: StepContext, dataset: str) -> dict:
    """KL of the next-token distribution and CE loss of the model's own replies, on ``dataset``'s
    test prompts (the negative ones); the keys are the refusal run's (``kl_harmless_*`` ...)."""
    model = ctx.get_model()
    prompts = [q.instruction for q in ctx.run.prompts()[f"{dataset}_test"]]
    baseline = [r["response"] for r in read_jsonl(ctx.path(PIPELINE.completions(dataset, "baseline")))]
    ablation, addition = ctx.hooks([Intervention(SELECTED, "ablation")]), ctx.hooks([Intervention(SELECTED, "addition")])
    kw = dict(batch_size=ctx.config.batch_size)
    return {
        "kl_harmless_ablation": next_token_kl(model, prompts, ablation, **kw),
        "kl_harmless_addition": next_token_kl(model, prompts, addition, **kw),
        "ce_harmless_baseline": ce_loss(model, prompts, baseline, **kw),
        "ce_harmless_ablation": ce_loss(model, prompts, baseline, fwd_hooks=ablation, **kw),
    }


def rate_metrics_step(concept: Concept) -> Step:
    """Step ``metrics`` of a rate concept: ``metrics/rates.csv`` and ``metrics/side_effects.json``."""
    conditions = concept_conditions(concept)

    def fn(ctx: StepContext) -> None:
        write_csv(ctx.path(RATE_METRICS), rate_frame(ctx, conditions))
        atomic.write_json(ctx.path(SIDE_EFFECTS), negative_side_effects(ctx, concept.labels.negative_key))

    return Step("metrics", fn)


def concept_effects(run: Run) -> list[dict]:
    """Ablation and addition against their baselines, per judge (``cosmic_tl.stats.paired_effect``)."""
    info = run_concept(run)
    positive, negative = info["labels"]["positive_key"], info["labels"]["negative_key"]
    effects = []
    for dataset, condition, effect in ((positive, "ablation", info["ablation_effect"]),
                                       (negative, "addition", info["addition_effect"])):
        base, steered = run.judged(dataset, "baseline")["flags"], run.judged(dataset, condition)["flags"]
        for judge in base:
            effects.append({"judge": judge, **paired_effect(dataset, condition, base[judge], steered[judge],
                                                            expected=EXPECTED[effect])})
    return effects


def concept_summary(run: Run) -> dict:
    """The headline numbers of a finished rate-concept run (``summary.json``)."""
    return {
        "cosmic_tl_version": __version__,
        "run_folder": str(run.root),
        "fingerprint": run.fingerprint,
        "model": run.candidates().meta,
        "config": run.config,
        "concept": run_concept(run),
        "selection": run.selection_summary(),
        "effects": concept_effects(run),
        "side_effects": run.side_effects(),
        "timings_s": run.timings(),
        "peak_rss_gb": run.peak_rss_gb(),
    }


def render_concept_report(summary: dict) -> str:
    """A short Markdown report of a rate-concept run."""
    concept, sel, cfg = summary["concept"], summary["selection"], summary["config"]
    labels = concept["labels"]
    names = {labels["positive_key"]: labels["positive"], labels["negative_key"]: labels["negative"]}
    lines = [
        f"# COSMIC run, concept {concept['name']!r}: {summary['model'].get('model')} "
        f"({cfg['selection']} selection, {cfg['steering'].upper()} steering)",
        "",
        f"- Positive prompts: {labels['positive']}; negative prompts: {labels['negative']}; "
        f"judge: {concept['judge']['description']}.",
        f"- Chosen direction: position **{sel['position']}**, layer **{sel['layer']}**; "
        f"L_low = {sel.get('eval_layers')}.",
        "",
        f"| judge | prompts | intervention | {labels['judged']} before | after | exact McNemar p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in summary["effects"]:
        lines.append(
            f"| {e['judge']} | {names.get(e['dataset'], e['dataset'])} | {e['condition']} | "
            f"{e['baseline_count']}/{e['n']} [{e['baseline_ci_low']:.2f}, {e['baseline_ci_high']:.2f}] | "
            f"{e['count']}/{e['n']} [{e['ci_low']:.2f}, {e['ci_high']:.2f}] | {e['p_value']:.3g} | {e['verdict']} |"
        )
    side = summary["side_effects"]
    lines += [
        "",
        "Rates are count/n with 95% Wilson intervals; expected: ablation "
        f"{concept['ablation_effect']}s and addition {concept['addition_effect']}s the rate.",
        f"Next-token KL on {labels['negative']} prompts: ablation {side['kl_harmless_ablation']:.4f}, "
        f"addition {side['kl_harmless_addition']:.4f}.",
        "",
        "Figures: `figures/`; rates per category: `metrics/rates.csv`; completions: `completions/*.jsonl`.",
    ]
    return "\n".join(lines) + "\n"


def concept_figures(run: Run) -> dict:
    """A rate-concept run's figures: the position × layer heatmap, the layer cosine and the
    selection dashboard (the refusal run's bars read ``metrics/refusal.csv``, which it has not)."""
    return {
        "cosine_heatmap": plots.cosine_heatmap(run.cosine_pos_layer(), run.eval_layers()),
        "layer_cosine": plots.layer_cosine_line(run.layer_cosine()),
        "selection_dashboard": plots.selection_dashboard(run.selection_table()),
    }
