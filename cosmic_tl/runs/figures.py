"""A pipeline run's interactive figures (the ``figures`` step writes them to ``figures/``) and the
template tokens their position ticks are labelled with.

Every figure carries a provenance subtitle (model, sizes, steering, system turn, run
fingerprint: :func:`run_provenance`). The position ticks name the post-instruction template's
tokens (``-2 ⟨\\n⟩``), recorded by the ``template`` step in ``template/post_instruction.json``.
The explorer page is written by the composers above this package
(:func:`cosmic_tl.workflows.explorer_page.write_explorer`).
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from cosmic_tl import atomic, plots
from cosmic_tl.runs.capability import read_capabilities
from cosmic_tl.runs.context import Step, StepContext
from cosmic_tl.runs.files import read_json
from cosmic_tl.runs.layout import run_concept
from cosmic_tl.runs.reader import Run
from cosmic_tl.runs.report import headline_name, run_effects, run_lengths

TEMPLATE = "template/post_instruction.json"


def template_step() -> Step:
    """Step ``template``: the post-instruction template's token ids and their tick labels."""

    def fn(ctx: StepContext) -> None:
        model = ctx.get_model()
        labels = plots.template_position_labels(model.tokenizer, model.eoi_ids)
        atomic.write_json(ctx.path(TEMPLATE), {"eoi_ids": list(model.eoi_ids),
                                               "labels": {str(p): t for p, t in labels.items()}})

    return Step("template", fn)


def position_labels(run: Run) -> dict[int, str] | None:
    """Position → ``"-2 ⟨\\n⟩"``-style tick label, when the run recorded its template."""
    path = run.root / TEMPLATE
    return {int(p): t for p, t in read_json(path)["labels"].items()} if path.is_file() else None


def run_provenance(run: Run) -> str:
    """The subtitle of every figure of ``run`` (a pipeline or experiment folder)."""
    config = run.config
    kind = "" if run.kind == "pipeline" else f"{run.kind} "
    return plots.provenance(model=config.get("model"), sizes=config.get("resolved_sizes"),
                            steering=config.get("steering"), system=config.get("system"),
                            run_id=f"{kind}{run.fingerprint}")


def run_figures(run: Run) -> dict[str, go.Figure]:
    """The run's heatmaps, layer cosine line, selection dashboard, rate bars of the positive and
    negative test prompts (refusal: ``refusal_harmful``, ``refusal_harmless``; another concept:
    ``rate_<key>``), effects, the rate against reply length (``length_curve``) and capability bars,
    by file name. The bars, effects and length curve show the headline judge
    (:func:`~cosmic_tl.runs.report.headline_name`: refusal runs' validated judge, otherwise the
    concept's own judge)."""
    concept = run_concept(run)
    metrics = run.metrics()
    judge = headline_name(run)
    judged = metrics[metrics.judge == judge]
    refusal = concept["metric"] == "refusal"
    prefix, column = ("refusal", "refusal_rate") if refusal else ("rate", "rate")
    eval_layers = run.eval_layers()
    cosmic = run.config.get("selection", "cosmic") == "cosmic"
    common = dict(subtitle=run_provenance(run))
    labelled = dict(position_labels=position_labels(run), n_layers=run.candidates().n_layers, **common)
    table = run.selection_table()
    figures = {
        "cosine_heatmap": plots.cosine_heatmap(run.cosine_pos_layer(), eval_layers, **labelled),
        "layer_cosine": plots.layer_cosine_line(run.layer_cosine(), **common),
        "selection_dashboard": plots.selection_dashboard(table, eval_layers=eval_layers if cosmic else None,
                                                         **labelled),
        "score_heatmap": plots.score_heatmaps(table, "score", eval_layers=eval_layers if cosmic else None,
                                              **labelled),
    }
    for key in (concept["labels"]["positive_key"], concept["labels"]["negative_key"]):
        figures[f"{prefix}_{key}"] = plots.refusal_bars(judged, dataset=key, metric=column, **common)
    figures["effects"] = plots.effects_plot([e for e in run_effects(run) if e.judge == judge], **common)
    lengths = run_lengths(run)
    if lengths is not None and judge in lengths["judges"]:
        entry = lengths["judges"][judge]
        figures["length_curve"] = plots.length_curve(entry["rates"], judge=judge, judged=concept["labels"]["judged"],
                                                     stable_from=entry["stable_from"], **common)
    capabilities = read_capabilities(run)
    if capabilities is not None:
        for benchmark, summary in capabilities.items():
            figures[f"capability_{benchmark}"] = plots.capability_bars(summary, **common)
    return figures


def write_run_figures(run: Run, png: bool = False) -> list[Path]:
    """Write :func:`run_figures` into ``<run>/figures/`` (HTML, and PNG where asked and possible)."""
    written: list[Path] = []
    for name, fig in run_figures(run).items():
        written += plots.save_figure(fig, run.root / "figures" / name, png=png)
    return written

