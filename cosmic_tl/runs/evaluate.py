"""Evaluation steps shared by the pipeline and the experiments: completions of each
:class:`~cosmic_tl.runs.context.Condition`, the judges' flags, the refusal metrics, the side
effects of steering (KL, CE loss) and the figures (``docs/method.md §6-§7``).

The conditions are data: the pipeline's are
:func:`~cosmic_tl.runs.concept_steps.concept_conditions`; an experiment builds its
own list (e.g. one per α of a sweep). A new judge is one more entry of :func:`default_judges`; a new
figure is one more entry of the ``render`` function given to :func:`figures_step`.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import pandas as pd

from cosmic_tl import atomic, plots
from cosmic_tl.generation import completions_records, generate_completions
from cosmic_tl.judges import Judge, ModelJudge, SubstringJudge, degenerate_reason, judge_agreement
from cosmic_tl.metrics import ce_loss, next_token_kl, refusal_table, reply_kl
from cosmic_tl.models import load_model
from cosmic_tl.runs.context import Condition, Intervention, Step, StepContext
from cosmic_tl.runs.files import read_json, read_jsonl, write_csv
from cosmic_tl.runs.layout import FIGURES, PIPELINE, REFUSAL_METRICS, SIDE_EFFECTS
from cosmic_tl.runs.reader import Run
from cosmic_tl.stats import rate_with_ci, with_wilson

SELECTED = PIPELINE.direction
REPLY_KL_TOKENS = 16  # reply tokens the teacher-forced KL reads (docs/method.md §7)


def completions_step(condition: Condition) -> Step:
    """Step ``completions_<dataset>_<label>``: greedy completions of the condition's test prompts."""

    def fn(ctx: StepContext) -> None:
        prompts = ctx.run.prompts()[f"{condition.dataset}_test"]
        responses = generate_completions(
            ctx.get_model(), [p.instruction for p in prompts], fwd_hooks=ctx.hooks(condition.interventions),
            max_new_tokens=ctx.sizes.max_new_tokens, batch_size=ctx.config.gen_batch_size, progress=ctx.progress,
        )
        atomic.write_jsonl(ctx.path(condition.completions_file), completions_records(prompts, responses))

    return Step(f"completions_{condition.dataset}_{condition.label}", fn)


def default_judges(ctx: StepContext) -> list[Judge]:
    """The paper's substring judge, and a chat-model judge when ``judge_model`` is configured."""
    judges: list[Judge] = [SubstringJudge()]
    c = ctx.config
    if c.judge_model:
        model = ctx.get_model() if c.judge_model == c.model else load_model(c.judge_model, dtype=c.dtype,
                                                                             device=c.device)
        judges.append(ModelJudge(model, batch_size=c.gen_batch_size, progress=ctx.progress))
    return judges


def judges_step(conditions: Sequence[Condition],
                judges: Callable[[StepContext], list[Judge]] = default_judges) -> Step:
    """Step ``judges``: every judge's flags on every condition's completions (``judges/*.json``)."""

    def fn(ctx: StepContext) -> None:
        chosen = judges(ctx)
        for condition in conditions:
            records = read_jsonl(ctx.path(condition.completions_file))
            prompts, responses = [r["prompt"] for r in records], [r["response"] for r in records]
            flags = {j.name: list(j.judge(prompts, responses)) for j in chosen}
            out = {"flags": flags}
            if len(chosen) > 1:
                out["agreement"] = judge_agreement(flags[chosen[0].name], flags[chosen[1].name])
            atomic.write_json(ctx.path(condition.judged_file), out)

    return Step("judges", fn)


def judged_completions(ctx: StepContext, conditions: Sequence[Condition]) -> Iterator[tuple[Condition, list[dict], str, list]]:
    """(condition, its completion records, judge name, that judge's flags) of every condition's saved files.

    Raises:
        ValueError: a judge's flags do not match the completions one for one.
    """
    for condition in conditions:
        records = read_jsonl(ctx.path(condition.completions_file))
        for judge, flags in read_json(ctx.path(condition.judged_file))["flags"].items():
            if len(flags) != len(records):
                raise ValueError(f"{condition.judged_file} holds {len(flags)} flags for {len(records)} completions "
                                 f"in {condition.completions_file}; rerun the run into its folder.")
            yield condition, records, judge, flags


def refusal_frame(ctx: StepContext, conditions: Sequence[Condition]) -> pd.DataFrame:
    """Refusal rate and ASR per judge, condition and category, from the saved flags.

    Columns: ``judge``, ``dataset``, ``condition``, ``category``, ``n``, ``refusal_rate``, ``asr``
    (= 1 − refusal_rate), then ``count`` (refusals), ``ci_low`` / ``ci_high`` (95% Wilson interval
    of the refusal rate) and ``asr_ci_low`` / ``asr_ci_high`` (the same interval for the ASR).
    """
    tables = []
    for condition, records, judge, flags in judged_completions(ctx, conditions):
        t = refusal_table(records, flags, dataset=condition.dataset, condition=condition.label)
        t.insert(0, "judge", judge)
        tables.append(t)
    frame = with_wilson(pd.concat(tables, ignore_index=True), rate="refusal_rate")
    # The Wilson interval is symmetric under count -> n - count.
    return frame.assign(asr_ci_low=1.0 - frame.ci_high, asr_ci_high=1.0 - frame.ci_low)


def side_effects(ctx: StepContext, dataset: str = "harmless") -> dict:
    """KL of the next-token distribution and CE loss of the model's own completions of
    ``dataset``'s test prompts (the negative ones; the keys keep the refusal run's names)."""
    model = ctx.get_model()
    prompts = [q.instruction for q in ctx.run.prompts()[f"{dataset}_test"]]
    baseline = [r["response"] for r in read_jsonl(ctx.path(PIPELINE.completions(dataset, "baseline")))]
    ablation, addition = ctx.hooks([Intervention(SELECTED, "ablation")]), ctx.hooks([Intervention(SELECTED, "addition")])
    kw = dict(batch_size=ctx.config.batch_size)
    return {
        "kl_harmless_ablation": next_token_kl(model, prompts, ablation, **kw),
        "kl_harmless_addition": next_token_kl(model, prompts, addition, **kw),
        "reply_kl_harmless_ablation": reply_kl(model, prompts, baseline, ablation, REPLY_KL_TOKENS, **kw)["kl"],
        "reply_kl_harmless_addition": reply_kl(model, prompts, baseline, addition, REPLY_KL_TOKENS, **kw)["kl"],
        "reply_kl_tokens": REPLY_KL_TOKENS,
        "ce_harmless_baseline": ce_loss(model, prompts, baseline, **kw),
        "ce_harmless_ablation": ce_loss(model, prompts, baseline, fwd_hooks=ablation, **kw),
    }


def degenerate_shares(ctx: StepContext, conditions: Sequence[Condition]) -> dict:
    """Per condition (``<dataset>_<condition>``): the share of degenerate replies (empty, looping,
    not language; :func:`~cosmic_tl.judges.degenerate_reason`) with its Wilson interval, and how
    many of each kind."""
    out = {}
    for condition in conditions:
        reasons = [degenerate_reason(r["response"]) for r in read_jsonl(ctx.path(condition.completions_file))]
        kinds = sorted({r for r in reasons if r})
        out[f"{condition.dataset}_{condition.label}"] = {
            **rate_with_ci([r is not None for r in reasons]).to_dict(),
            "reasons": {k: reasons.count(k) for k in kinds},
        }
    return out


def metrics_step(conditions: Sequence[Condition], *, with_side_effects: bool = False,
                 side_effects_dataset: str = "harmless",
                 table: Callable[[StepContext, Sequence[Condition]], pd.DataFrame] = refusal_frame,
                 table_file: str = REFUSAL_METRICS) -> Step:
    """Step ``metrics``: the rate table (``metrics/refusal.csv`` by default) and, for the pipeline,
    ``metrics/side_effects.json``: KL (next token and first reply tokens) and CE loss on
    ``side_effects_dataset``'s test prompts, and the share of degenerate replies of each condition.

    Args:
        conditions: The completion sets to tabulate.
        with_side_effects: Also measure KL and CE loss (needs the selected direction).
        side_effects_dataset: The prompt key the side effects are measured on (the negative set).
        table: Builds the table from the saved completions and flags (e.g. a concept's rates).
        table_file: Where the table goes, relative to the run folder.
    """

    def fn(ctx: StepContext) -> None:
        write_csv(ctx.path(table_file), table(ctx, conditions))
        if with_side_effects:
            atomic.write_json(ctx.path(SIDE_EFFECTS), {**side_effects(ctx, side_effects_dataset),
                                                       "degenerate": degenerate_shares(ctx, conditions)})

    return Step("metrics", fn)


def figures_step(render: Callable[[Run], dict]) -> Step:
    """Step ``figures``: save each figure ``render(run)`` returns as ``figures/<name>.html``."""

    def fn(ctx: StepContext) -> None:
        for name, fig in render(ctx.run).items():
            plots.save_figure(fig, ctx.path(f"{FIGURES}/{name}"), png=False)

    return Step("figures", fn)
