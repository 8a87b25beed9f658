"""Where a run's artifacts lie: the pipeline's layout, and each experiment's sub-runs.

A *sub-run* is one selection inside an experiment folder (a stage of the weak experiment, one
(method, extraction) of the adversarial one, one method of the agreement one). It offers the
reader the same artifacts as a pipeline run, read from the files listed in its :class:`Layout`.
The writers (:mod:`cosmic_tl.runs.steps`, the experiments) and the reader
(:mod:`cosmic_tl.runs.reader`) take their paths from here, so the two cannot disagree. Which
sub-runs a folder of each kind has, and what the reader knows of each, is
:mod:`cosmic_tl.runs.kinds`.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPTS = "data/prompts.json"
COMPLETIONS = "completions"
JUDGES = "judges"
REFUSAL_METRICS = "metrics/refusal.csv"
RATE_METRICS = "metrics/rates.csv"  # concepts judged by a plain rate (metric "rate")
SIDE_EFFECTS = "metrics/side_effects.json"
LENGTHS = "judges/lengths.json"  # every text judge's verdicts at each reply length (runs/lengths.py)
FIGURES = "figures"
SUMMARY = "summary.json"
REPORT = "report.md"


@dataclass(frozen=True)
class Layout:
    """The files of one (sub-)run, relative to the run folder; None where it has no such file.

    Attributes:
        candidates: The candidate directions (``Candidates.save``).
        position_cosine: cos(μ+, μ−) per (position, layer) (CSV).
        eval_layers: ``eval_layers.json`` (L_low and the ranked layers).
        layer_cosine: The layer cosine L_low was chosen from (CSV).
        selection_table: Every candidate's scores, filters and pick (CSV).
        selection_summary: The pick's summary, or ``{"error": ...}`` when nothing survived (JSON).
        direction: The chosen direction's stem (``Direction.save``).
        condition_prefix: Prefix of this sub-run's completion conditions (``"<key>_"`` in the
            adversarial experiment, where every sub-run steers the same test prompts).
    """

    candidates: str | None = "directions/candidates.safetensors"
    position_cosine: str | None = "directions/cosine_pos_layer.csv"
    eval_layers: str | None = "eval_layers/eval_layers.json"
    layer_cosine: str | None = "eval_layers/layer_cosine.csv"
    selection_table: str | None = "selection/table.csv"
    selection_summary: str | None = "selection/summary.json"
    direction: str | None = "selection/direction"
    condition_prefix: str = ""

    def completions(self, dataset: str, condition: str) -> str:
        return f"{COMPLETIONS}/{dataset}_{self.condition_prefix}{condition}.jsonl"

    def judged(self, dataset: str, condition: str) -> str:
        return f"{JUDGES}/{dataset}_{self.condition_prefix}{condition}.json"


PIPELINE = Layout()


def selection_layout(key: str, **files) -> Layout:
    """A selection saved under ``selection/<key>/`` (table, summary, direction)."""
    return Layout(selection_table=f"selection/{key}/table.csv", selection_summary=f"selection/{key}/summary.json",
                  direction=f"selection/{key}/direction", **files)


def weak_stage(stage: str) -> Layout:
    """A stage of the weak experiment: its candidates and L_low in ``<stage>/``."""
    return selection_layout(stage, candidates=f"{stage}/candidates.safetensors", position_cosine=None,
                            eval_layers=f"{stage}/eval_layers.json", layer_cosine=f"{stage}/layer_cosine.csv")


# (method, extraction) of each adversarial sub-run; "normal" extraction is the paper's "gennorm".
ADVERSARIAL_ROWS = (("cosmic", "adversarial"), ("refusal_token", "adversarial"), ("cosmic", "normal"))


def adversarial_subrun(method: str, extraction: str) -> Layout:
    key = f"{method}_{extraction}"
    return selection_layout(key, candidates=f"directions/{extraction}.safetensors", position_cosine=None,
                            condition_prefix=f"{key}_")


def agreement_subrun(method: str) -> Layout:
    """One method's ranking of the shared score table (no direction is saved)."""
    return Layout(position_cosine=None, selection_table=f"agreement/{method}_table.csv", selection_summary=None,
                  direction=None)


# The concept of a folder whose config.json has no "concept" record (experiments, and pipeline folders
# written without one): the paper's refusal.
REFUSAL_CONCEPT_RECORD = {
    "name": "refusal",
    "labels": {"positive": "harmful", "negative": "harmless", "judged": "refusal",
               "positive_key": "harmful", "negative_key": "harmless"},
    "ablation_effect": "lower",
    "addition_effect": "raise",
    "metric": "refusal",
    "judge": {"name": "substring_matching", "description": "the paper's refusal substrings"},
    "conditions": [["harmful", "baseline"], ["harmful", "ablation"], ["harmless", "baseline"],
                   ["harmless", "addition"]],
}


def run_concept(run_or_record) -> dict:
    """The concept a run is about: its ``config.json`` record's ``"concept"`` entry.

    Args:
        run_or_record: A :class:`~cosmic_tl.runs.reader.Run` or its ``config.json`` record.

    Returns:
        ``Concept.describe()`` plus ``"conditions"`` (``[dataset key, condition]`` pairs); the
        keys most readers need are ``labels`` (``positive``, ``negative``, ``judged``,
        ``positive_key``, ``negative_key``), ``ablation_effect`` / ``addition_effect``
        (``"lower"`` / ``"raise"``), ``metric`` (``"refusal"``: ``metrics/refusal.csv``;
        ``"rate"``: :data:`RATE_METRICS`) and ``judge`` (``name``, the key of its flags in
        ``judges/*.json``, and ``description``). Folders without the entry (experiments, and
        pipeline folders written without one) get :data:`REFUSAL_CONCEPT_RECORD`.
    """
    record = getattr(run_or_record, "record", run_or_record)
    return record.get("concept") or REFUSAL_CONCEPT_RECORD
