"""The end-to-end run as a list of steps: data → directions → evaluation layers → selection →
completions → judges → verdicts per reply length → metrics → TruthfulQA → template tokens → figures, then ``summary.json``,
``report.md`` and ``explorer.html``.

The run folder layout (:mod:`cosmic_tl.runs.layout`)::

    config.json                      the run record: kind, configuration and its fingerprint
    data/prompts.json                the sampled prompts (train, val, test; categories kept)
    directions/candidates.safetensors, directions/cosine_pos_layer.csv
    eval_layers/eval_layers.json, eval_layers/layer_cosine.csv
    selection/table.csv, selection/summary.json, selection/direction.{safetensors,json}
    completions/<dataset>_<condition>.jsonl
    judges/<dataset>_<condition>.json, judges/lengths.json (text judges' verdicts at 16, 32, … tokens)
    metrics/refusal.csv (metric "rate": metrics/rates.csv), metrics/side_effects.json
    capabilities/truthfulqa.json, capabilities/truthfulqa_<condition>.jsonl
    template/post_instruction.json   the post-instruction template's tokens (tick labels)
    figures/*.html, explorer.html
    summary.json, report.md
    steps/<step>.json                markers of finished steps (files written, sizes, sha256)

Adding a step (e.g. a capability benchmark or a statistics summary): one more entry in
:func:`pipeline_steps`, placed after the steps whose files it reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from cosmic_tl import atomic
from cosmic_tl.concepts import Concept
from cosmic_tl.config import RunConfig
from cosmic_tl.models import ChatModel, check_model_source
from cosmic_tl.runs.report import render_report, run_summary
from cosmic_tl.runs.capability import capability_step
from cosmic_tl.runs.figures import run_figures, template_step
from cosmic_tl.runs.context import Step, StepContext, model_before_claiming
from cosmic_tl.runs.evaluate import completions_step, figures_step, judges_step
from cosmic_tl.runs.concept_steps import (
    concept_conditions, concept_judges, concept_metrics_step, concept_record, length_judges,
)
from cosmic_tl.runs.lengths import length_step
from cosmic_tl.runs.sibling import check_sibling, share_steps
from cosmic_tl.runs.folder import RunFolder
from cosmic_tl.runs.layout import REPORT, SUMMARY
from cosmic_tl.runs.steps import (
    candidates_step, concept_sampler, eval_layers_step, sample_step, selection_step, uses_arditi_filter,
)
from cosmic_tl.workflows.explorer_page import write_explorer


def pipeline_steps(config: RunConfig, concept: Concept | None = None, sibling: Path | None = None) -> list[Step]:
    """The pipeline's steps for ``config``, in order.

    Args:
        config: The run configuration.
        concept: What the prompts contrast (default: the configuration's, refusal when it names none).
        sibling: A run checked by :func:`~cosmic_tl.runs.sibling.check_sibling`: the steps that do not
            depend on the selection or steering (:func:`shared_step_names`) are taken from it, and
            those after the selection (:func:`after_selection_step_names`) too when it picked the
            same direction with the same steering.
    """
    concept = concept or config.build_concept()
    arditi = uses_arditi_filter(config)
    conditions = concept_conditions(concept)
    steps = [
        sample_step(concept_sampler(concept), arditi_filter=arditi),
        candidates_step(check_prompts=arditi),
        eval_layers_step(),
        selection_step(),
        *(completions_step(c) for c in conditions),
        judges_step(conditions, judges=concept_judges(concept)),
        length_step(conditions, length_judges(concept)),
        concept_metrics_step(concept),
        capability_step(),
        template_step(),
        figures_step(run_figures),
    ]
    return share_steps(steps, shared_step_names(concept), sibling, after_selection_step_names(concept))


def shared_step_names(concept: Concept) -> set[str]:
    """Steps two runs differing only in :data:`~cosmic_tl.runs.sibling.SELECTION_ONLY_FIELDS` share:
    the prompts, the candidate directions, the evaluation layers and the unsteered completions."""
    unsteered = {completions_step(c).name for c in concept_conditions(concept) if not c.interventions}
    return {"data", "directions", "eval_layers", *unsteered}


def after_selection_step_names(concept: Concept) -> set[str]:
    """Steps two runs differing only in :data:`~cosmic_tl.runs.sibling.PICK_ONLY_FIELDS` share when
    they pick the same direction: the steered completions, the verdicts, the metrics and TruthfulQA
    (the template tokens and figures are cheap and name their own run)."""
    steered = {completions_step(c).name for c in concept_conditions(concept) if c.interventions}
    return {*steered, "judges", "lengths", "metrics", "capabilities"}


def open_pipeline_folder(config: RunConfig, out: str | os.PathLike, concept: Concept | None = None) -> RunFolder:
    """Claim ``out`` for a pipeline run of ``config`` (or refuse it; see :class:`RunFolder`)."""
    concept = concept or config.build_concept()
    return RunFolder(out, "pipeline", config.fingerprint(concept),
                     {"config": config.to_dict(), "concept": concept_record(concept)})


@torch.no_grad()
def run_pipeline(
    config: RunConfig,
    out: str | os.PathLike,
    *,
    model: ChatModel | None = None,
    concept: Concept | None = None,
    sibling: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the whole pipeline and return the run's summary.

    Args:
        config: The run configuration.
        out: The run folder: new, empty, or a run folder of this configuration (resumed).
        model: An already loaded model (must be the configured one); loaded lazily otherwise.
        concept: What the positive and negative prompts contrast, e.g. a
            :class:`~cosmic_tl.concepts.Concept` built in Python with a callable judge; default:
            the configuration's concept fields (the paper's refusal when none is set). Its
            description is part of the run's fingerprint.
        progress: Show progress bars.
        log: Where step messages go.

    Returns:
        The contents of ``summary.json``.

    Raises:
        SiblingError: ``sibling`` is not a run that can share this one's steps.
        ModelNotFoundError, MissingModelPackageError, CorruptGGUFError, DatasetError: a bad model,
            a bad concept (``ConceptError``, a ``DatasetError``) or sizes larger than the data,
            before the run folder is created (so that folder is not tied to a configuration that
            cannot run).

    Example:
        >>> from cosmic_tl.concepts import suffix_concept
        >>> french = suffix_concept("french", "harmless_train", " Answer in French.",
        ...                         judge=lambda prompts, replies: [" le " in r for r in replies])
        >>> run_pipeline(RunConfig(preset="tiny"), "runs/french", concept=french)  # doctest: +SKIP
        RunFolderError: ``out`` cannot be used (see :class:`~cosmic_tl.runs.folder.RunFolder`).
    """
    # Cheap checks first: a typo must not leave a folder tied to a configuration that cannot run.
    if model is None:
        check_model_source(config.model)
    concept = concept or config.build_concept()
    concept_sampler(concept)(config)
    if sibling is not None:
        sibling = check_sibling(sibling, config, concept_record(concept), uses_arditi_filter)
    model = model_before_claiming(config, out, model)  # a new run's layer_stride is checked before its folder exists
    folder = open_pipeline_folder(config, out, concept)
    with folder.locked(log):
        ctx = StepContext(folder, config, model=model, progress=progress, log=log, concept=concept)
        ctx.run_steps(pipeline_steps(config, concept, sibling))
        summary = run_summary(ctx.run)
        atomic.write_json(ctx.path(SUMMARY), summary)
        atomic.write_text(ctx.path(REPORT), render_report(summary))
        # Outside every step's marker: `cosmic-tl explore --top-k` may rewrite it (workflows/explorer_page.py).
        write_explorer(folder.root, log=log)
    return summary
