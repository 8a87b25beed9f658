"""The method's steps, shared by the pipeline and every experiment: prompts, candidate directions,
evaluation layers and selection. (Completions, judges and metrics: :mod:`cosmic_tl.runs.evaluate`.)

Each ``*_step`` function returns a :class:`~cosmic_tl.runs.context.Step`; the pipeline
(:mod:`cosmic_tl.workflows.pipeline`) and the experiments (:mod:`cosmic_tl.experiments`) are lists of
them. Where a step writes is a :class:`~cosmic_tl.runs.layout.Layout`; which model it runs is a
:class:`~cosmic_tl.runs.context.ModelVariant`. See ``docs/method.md §1-§5``.
"""

from __future__ import annotations

from typing import Callable, Sequence

from cosmic_tl import atomic
from cosmic_tl.activations import candidate_directions
from cosmic_tl.candidates import Candidates
from cosmic_tl.concepts import SAMPLE_SPLITS, Concept, sample_concept
from cosmic_tl.config import RunConfig
from cosmic_tl.data import sample_paper
from cosmic_tl.runs.context import CONFIGURED, ModelVariant, Step, StepContext
from cosmic_tl.runs.files import read_json, write_csv
from cosmic_tl.runs.layout import PIPELINE, PROMPTS, Layout
from cosmic_tl.selection import (
    CandidateScorer, NoCandidateLeftError, Selection, filter_by_refusal_score, select_cosmic, select_refusal_token,
)
from cosmic_tl.similarity import evaluation_layers, position_layer_cosine

# Prompts of a run: split name -> instruction strings (train, val) or prompt dicts (test).
Sampler = Callable[[RunConfig], dict[str, list]]


def paper_prompts(config: RunConfig) -> dict[str, list]:
    """The paper's seeded harmful/harmless sample at the configured sizes."""
    s = config.sizes
    sample = sample_paper(n_train=s.n_train, n_val=s.n_val, n_test=s.n_test, seed=config.seed)
    prompts = {**sample.instructions(), "harmful_test": sample.harmful_test, "harmless_test": sample.harmless_test}
    return {k: [p.__dict__ for p in v] if k.endswith("test") else v for k, v in prompts.items()}


def concept_sampler(concept: Concept) -> Sampler:
    """A sampler of ``concept``'s prompts, keyed ``<positive_key>_<split>`` / ``<negative_key>_<split>``.

    For the refusal concept (keys ``harmful`` / ``harmless``) it gives :func:`paper_prompts`'s
    prompts: ``sample_concept`` draws as ``sample_paper`` does.
    """
    keys = {"pos": concept.labels.positive_key, "neg": concept.labels.negative_key}

    def sampler(config: RunConfig) -> dict[str, list]:
        s = config.sizes
        sample = sample_concept(concept, n_train=s.n_train, n_val=s.n_val, n_test=s.n_test, seed=config.seed)
        out = {}
        for split in SAMPLE_SPLITS:
            side, _, kind = split.partition("_")
            items = sample.prompts(split) if kind == "test" else sample.instructions()[split]
            out[f"{keys[side]}_{kind}"] = [vars(p) for p in items] if kind == "test" else items
        return out

    return sampler


def uses_arditi_filter(config: RunConfig) -> bool:
    """Whether the configuration selects with the refusal-token baseline in Arditi's variant."""
    return config.selection != "cosmic" and config.refusal_token_variant == "arditi"


def sample_step(sampler: Sampler = paper_prompts, *, arditi_filter: bool = False) -> Step:
    """Step ``data``: draw the prompts once (``data/prompts.json``).

    Args:
        sampler: Draws the prompts from the configuration (the paper's sample by default).
        arditi_filter: Also apply Arditi's refusal-score data filter to train and val (it needs
            the model); its outcome is what the file holds, so later steps see the filtered sets.
    """

    def fn(ctx: StepContext) -> None:
        prompts = sampler(ctx.config)
        if arditi_filter:
            positive, negative = ctx.keys
            for split in ("train", "val"):
                kept = filter_by_refusal_score(ctx.get_model(), *ctx.split(prompts, split),
                                               batch_size=ctx.config.batch_size, progress=ctx.progress)
                prompts[f"{positive}_{split}"], prompts[f"{negative}_{split}"] = kept
                ctx.log(f"  Arditi filter kept {len(kept[0])} {positive} / {len(kept[1])} {negative} {split} prompts")
        atomic.write_json(ctx.path(PROMPTS), prompts)

    return Step("data", fn)


def check_arditi_filter_left_prompts(prompts: dict, config: RunConfig,
                                     keys: tuple[str, str] = ("harmful", "harmless")) -> None:
    """After Arditi's data filter (its outcome is saved in data/), a split may be empty.

    Raises:
        ValueError: naming the split, the filter and what to do.
    """
    sizes = config.sizes
    for split, n in (("train", sizes.n_train), ("val", sizes.n_val)):
        for kind in keys:
            if not prompts[f"{kind}_{split}"]:
                raise ValueError(
                    f"The Arditi data filter kept 0 of {n} {kind} {split} prompts (it keeps harmful prompts "
                    "whose refusal score is > 0 and harmless ones whose score is < 0; see data/prompts.json): "
                    "the model refuses too few of them. Use --refusal-token-variant cosmic-repo, larger sizes, "
                    "or --system default."
                )


def candidates_step(where: Layout = PIPELINE, *, name: str = "directions", variant: ModelVariant = CONFIGURED,
                    meta: dict | None = None, check_prompts: bool = False) -> Step:
    """Step: the candidate directions μ+ − μ− of every (position, layer) (``docs/method.md §1``).

    Args:
        where: Writes ``where.candidates`` (and ``where.position_cosine`` when it has one).
        name: The step's name.
        variant: The model the activations are read from (system turn, interventions).
        meta: Added to the candidates' metadata (e.g. the stage or extraction).
        check_prompts: Refuse train sets that Arditi's data filter emptied, naming the split.
    """

    def fn(ctx: StepContext) -> None:
        prompts = ctx.run.prompts()
        if check_prompts:
            check_arditi_filter_left_prompts(prompts, ctx.config, ctx.keys)
        model, hooks = ctx.model_for(variant)
        cands = candidate_directions(model, *ctx.split(prompts, "train"),
                                     batch_size=ctx.config.batch_size, fwd_hooks=hooks, progress=ctx.progress)
        cands.meta.update(meta or {})
        cands.save(ctx.path(where.candidates))
        if where.position_cosine is not None:
            write_csv(ctx.path(where.position_cosine),
                      position_layer_cosine(cands.mu_pos, cands.mu_neg, cands.positions))

    return Step(name, fn)


def eval_layers_step(where: Layout = PIPELINE, *, name: str = "eval_layers", variant: ModelVariant = CONFIGURED,
                     second_half: bool = False) -> Step:
    """Step: the evaluation layers L_low and the layer cosine they come from (``docs/method.md §2``)."""

    def fn(ctx: StepContext) -> None:
        prompts = ctx.run.prompts()
        model, hooks = ctx.model_for(variant)
        sim = evaluation_layers(model, *ctx.split(prompts, "train"), second_half=second_half,
                                fraction=ctx.config.eval_layer_fraction, batch_size=ctx.config.batch_size,
                                fwd_hooks=hooks, progress=ctx.progress)
        write_csv(ctx.path(where.layer_cosine), sim.to_frame())
        atomic.write_json(ctx.path(where.eval_layers),
                          {"eval_layers": sim.eval_layers, "ranked_layers": sim.ranked_layers})

    return Step(name, fn)


def select(ctx: StepContext, method: str, candidates: Candidates, *, eval_layers: Sequence[int] = (),
           variant: ModelVariant = CONFIGURED, prompts: dict | None = None,
           scorer: CandidateScorer | None = None) -> Selection:
    """One selection with the configured settings (``docs/method.md §3-§5``).

    Args:
        ctx: The run.
        method: ``"cosmic"``, or the refusal-token baseline (any other value).
        candidates: The candidates to choose from.
        eval_layers: L_low (COSMIC only).
        variant: The model scored (system turn, interventions active as ``fwd_hooks``).
        prompts: The validation prompts (default: the run's).
        scorer: A COSMIC scorer shared between selections on the same model and prompts.
    """
    c = ctx.config
    prompts = prompts or ctx.run.prompts()
    model, hooks = ctx.model_for(variant)
    kw = dict(steering=c.steering, batch_size=c.batch_size, kl_threshold=c.kl_threshold, progress=ctx.progress,
              layers=range(0, model.n_layers, ctx.sizes.layer_stride))
    if method == "cosmic":
        extra = dict(scorer=scorer) if scorer is not None else dict(parity_inplace=c.parity_inplace)
        if hooks:
            extra["fwd_hooks"] = hooks
        return select_cosmic(model, candidates, *ctx.split(prompts, "val"), eval_layers,
                             prune_fraction=c.prune_fraction, **extra, **kw)
    return select_refusal_token(model, candidates, *ctx.split(prompts, "val"),
                                variant=c.refusal_token_variant, **kw)


def save_selection(ctx: StepContext, where: Layout, choose: Callable[[], Selection], *,
                   record_empty: bool = False) -> None:
    """Run ``choose`` and save its table, summary and direction where ``where`` says.

    Args:
        record_empty: When the filters leave nothing, write ``{"error": ...}`` as the summary
            (experiments report it as a result) instead of raising.
    """
    try:
        sel = choose()
    except NoCandidateLeftError as e:
        if not record_empty:
            raise
        atomic.write_json(ctx.path(where.selection_summary), {"error": str(e)})
        ctx.log(f"  {where.selection_summary}: filters leave nothing ({e})")
        return
    sizes = ctx.sizes
    sel.direction.meta.update(alpha=ctx.config.alpha, n_train=sizes.n_train, n_val=sizes.n_val)
    write_csv(ctx.path(where.selection_table), sel.table)
    atomic.write_json(ctx.path(where.selection_summary), sel.summary())
    sel.direction.save(ctx.path(where.direction))
    ctx.log(f"  {where.direction}: position {sel.position}, layer {sel.layer}")


def selection_step(where: Layout = PIPELINE, *, name: str = "selection", method: str | None = None,
                   variant: ModelVariant = CONFIGURED, record_empty: bool = False) -> Step:
    """Step: choose one direction among ``where``'s candidates, scored on ``variant``.

    Args:
        method: ``"cosmic"`` or the baseline; None takes the configuration's ``selection``.
        record_empty: See :func:`save_selection`.
    """

    def fn(ctx: StepContext) -> None:
        chosen = method or ctx.config.selection
        cands = Candidates.load(ctx.path(where.candidates))
        layers = read_json(ctx.path(where.eval_layers))["eval_layers"] if chosen == "cosmic" else ()
        save_selection(ctx, where, lambda: select(ctx, chosen, cands, eval_layers=layers, variant=variant),
                       record_empty=record_empty)

    return Step(name, fn)
