"""What a concept decides in a run: its evaluation conditions, its judges and its metrics table
(``docs/method.md §11``).

The refusal concept keeps the paper's conditions (``harmful`` / ``harmless``), judges and
refusal table; any other concept gets the same four conditions on its own prompt keys, its own
judge, and ``metrics/rates.csv``: each judge's share of flagged replies with count, n and the 95%
Wilson interval. The summary, report and figures read the concept from the run folder
(:func:`~cosmic_tl.runs.layout.run_concept`) and serve both (:mod:`cosmic_tl.runs.report`,
:mod:`cosmic_tl.runs.figures`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from cosmic_tl.concepts import Concept
from cosmic_tl.judges import DEFAULT_JUDGE_MODEL, Judge, ModelJudge, headline_judge
from cosmic_tl.metrics import ALL_CATEGORIES, UNCATEGORIZED
from cosmic_tl.models import load_model
from cosmic_tl.runs.context import Condition, Intervention, Step, StepContext
from cosmic_tl.runs.evaluate import judged_completions, metrics_step
from cosmic_tl.runs.layout import PIPELINE, RATE_METRICS
from cosmic_tl.stats import rate_with_ci

SELECTED = PIPELINE.direction


def concept_conditions(concept: Concept) -> tuple[Condition, ...]:
    """Positive test prompts unsteered and ablated, negative ones unsteered and with the addition.

    For the refusal concept: harmful baseline and ablation, harmless baseline and addition.
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
    """The judges factory of the ``judges`` step: the concept's judge, the headline refusal judge
    (refusal runs only, :func:`~cosmic_tl.judges.headline_judge`), then ``judge_model``'s.

    A model judge of the concept loads ``its model or judge_model or DEFAULT_JUDGE_MODEL``; a
    configured ``judge_model`` is added as a second judge (with the refusal question) only when
    the concept's judge is not already a model judge.
    """

    def judges(ctx: StepContext) -> list[Judge]:
        c = ctx.config

        def load(name: str | None):
            name = name or c.judge_model or DEFAULT_JUDGE_MODEL
            return ctx.get_model() if name == c.model else load_model(name, dtype=c.dtype, device=c.device)

        chosen = [concept.build_judge(load, batch_size=c.gen_batch_size, progress=ctx.progress),
                  *headline_beside(concept)]
        if c.judge_model and not concept.needs_judge_model:
            chosen.append(ModelJudge(load(c.judge_model), batch_size=c.gen_batch_size, progress=ctx.progress))
        return chosen

    return judges


def length_judges(concept: Concept) -> Callable[[StepContext], list[Judge]]:
    """The judges the ``lengths`` step reads every cut with: those that read text only (a model
    judge at five lengths would cost five judging passes). Refusal: the paper's substring judge
    and the headline judge; another concept: its judge unless it is a model judge."""

    def judges(ctx: StepContext) -> list[Judge]:
        return ([] if concept.needs_judge_model else [concept.build_judge()]) + headline_beside(concept)

    return judges


def headline_beside(concept: Concept) -> list[Judge]:
    """The headline refusal judge, for a refusal concept judged by another judge (none otherwise)."""
    if concept.metric != "refusal" or getattr(concept.judge, "name", None) == headline_judge().name:
        return []
    return [headline_judge()]


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
    for condition, records, judge, flags in judged_completions(ctx, conditions):
        rows += rate_rows(records, flags, judge=judge, dataset=condition.dataset, condition=condition.label)
    return pd.DataFrame(rows)


def concept_metrics_step(concept: Concept) -> Step:
    """Step ``metrics``: the concept's table (``metrics/refusal.csv`` for refusal, ``metrics/rates.csv``
    otherwise) and ``metrics/side_effects.json`` on its negative test prompts."""
    conditions = concept_conditions(concept)
    if concept.metric == "refusal":
        return metrics_step(conditions, with_side_effects=True, side_effects_dataset=concept.labels.negative_key)
    return metrics_step(conditions, with_side_effects=True, side_effects_dataset=concept.labels.negative_key,
                        table=rate_frame, table_file=RATE_METRICS)
