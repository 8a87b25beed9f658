"""Judges measured against read labels: the shipped reference set, and accuracy, precision, recall
and Cohen's κ of any judge on it, each with a 95% interval (``docs/method.md §7``).

The reference set (``cosmic_tl/data/labels/refusal_labels.jsonl``, rubric and provenance beside
it) holds (prompt, reply) pairs from real runs of the default model, each labelled by a person
reading it against the rubric: ``refusal``, ``inability``, ``compliance`` or ``degenerate``. A
binary judge is scored on one of two :data:`TARGETS`: ``refusal`` (refusal vs the rest) or
``refusal_or_inability`` ((refusal or inability) vs the rest).

Intervals: accuracy, precision and recall are proportions (95% Wilson, :mod:`cosmic_tl.stats`);
κ gets a percentile bootstrap over the labelled items (``scipy.stats.bootstrap``, seeded).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Sequence

import numpy as np
from scipy.stats import bootstrap

from cosmic_tl.judges.base import Judge
from cosmic_tl.stats import wilson_interval

LABELS = ("refusal", "inability", "compliance", "degenerate")
"""The rubric's four labels (``data/labels/RUBRIC.md``)."""

TARGETS = {"refusal": frozenset({"refusal"}), "refusal_or_inability": frozenset({"refusal", "inability"})}
"""What a judge's True flag is scored against: the labels that count as positive."""

CONDITIONS = ("unsteered", "ablation", "addition")
"""The steering conditions of the labelled replies."""

LABEL_FIELDS = ("id", "dataset", "condition", "source", "max_new_tokens", "prompt", "reply", "label", "note")

NEEDS_NOTE = frozenset({"inability", "degenerate"})
"""Labels whose reading note is required (what the reply says it cannot do; why it is degenerate)."""


class LabelSetError(ValueError):
    """The reference label file is malformed (a missing field, an unknown label, a missing note)."""


@dataclass(frozen=True)
class LabelledReply:
    """One read label: the reply a run produced for a prompt, and what a reader judged it to be.

    Attributes:
        id: Unique key, e.g. ``"harmful-ablation-017"``.
        dataset: ``"harmful"`` or ``"harmless"`` (which test prompts).
        condition: One of :data:`CONDITIONS`.
        source: The run (or script) that produced the reply.
        max_new_tokens: The generation length the reply was cut at.
        prompt: The user instruction.
        reply: The model's reply, as judged.
        label: One of :data:`LABELS`.
        note: The reader's note (required for close calls and :data:`NEEDS_NOTE` labels).
        close_call: The reader found two labels defensible.
    """

    id: str
    dataset: str
    condition: str
    source: str
    max_new_tokens: int
    prompt: str
    reply: str
    label: str
    note: str = ""
    close_call: bool = False


def check_label(item: LabelledReply, where: str) -> None:
    """Refuse an item that breaks the rubric's format (one line naming the item and the problem)."""
    if item.label not in LABELS:
        raise LabelSetError(f"{where}: label {item.label!r} is not one of {', '.join(LABELS)}.")
    if item.condition not in CONDITIONS:
        raise LabelSetError(f"{where}: condition {item.condition!r} is not one of {', '.join(CONDITIONS)}.")
    if (item.close_call or item.label in NEEDS_NOTE) and not item.note.strip():
        why = "a close call" if item.close_call else f"labelled {item.label!r}"
        raise LabelSetError(f"{where}: the item is {why} and needs a reading note; add one to 'note'.")


def parse_labels(lines: Iterable[str], source: str = "labels") -> list[LabelledReply]:
    """Label items from JSON lines, each checked (:func:`check_label`) and with unique ids.

    Raises:
        LabelSetError: a line that is not a JSON object with :data:`LABEL_FIELDS`, a bad item, or
            a repeated id.
    """
    items, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise LabelSetError(f"{where} is not valid JSON ({error.msg}).") from None
        missing = [f for f in LABEL_FIELDS if f not in record] if isinstance(record, dict) else list(LABEL_FIELDS)
        if missing:
            raise LabelSetError(f"{where} lacks field(s) {missing}.")
        item = LabelledReply(**{k: record[k] for k in (*LABEL_FIELDS, "close_call") if k in record})
        check_label(item, f"{where} ({item.id})")
        if item.id in seen:
            raise LabelSetError(f"{where}: id {item.id!r} appears twice.")
        seen.add(item.id)
        items.append(item)
    return items


def reference_labels() -> list[LabelledReply]:
    """The shipped reference set (``cosmic_tl/data/labels/refusal_labels.jsonl``)."""
    path = resources.files("cosmic_tl") / "data" / "labels" / "refusal_labels.jsonl"
    return parse_labels(path.read_text(encoding="utf-8").splitlines(), "refusal_labels.jsonl")


def target_flags(items: Sequence[LabelledReply], target: str) -> list[bool]:
    """The reference verdicts: True where the item's label counts as positive under ``target``."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}.")
    return [item.label in TARGETS[target] for item in items]


def cohen_kappa(reference: Sequence[bool], predicted: Sequence[bool]) -> float:
    """Cohen's κ of two binary label lists (NaN when both are one constant label).

    Example:
        >>> round(cohen_kappa([True, True, False, False], [True, False, False, False]), 3)
        0.5
    """
    return float(_kappa(np.asarray(reference, dtype=bool), np.asarray(predicted, dtype=bool)))


def _kappa(ref: np.ndarray, pred: np.ndarray, axis: int = -1) -> np.ndarray:
    """κ along ``axis`` (the bootstrap passes a batch of resamples at once); NaN where undefined."""
    observed = np.mean(ref == pred, axis=axis)
    p_ref, p_pred = ref.mean(axis=axis), pred.mean(axis=axis)
    chance = p_ref * p_pred + (1 - p_ref) * (1 - p_pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance == 1, np.nan, (observed - chance) / (1 - chance))


def _proportion(count: int, n: int) -> dict:
    if n == 0:
        return {"value": None, "count": 0, "n": 0, "ci_low": None, "ci_high": None}
    low, high = wilson_interval(count, n)
    return {"value": count / n, "count": count, "n": n, "ci_low": low, "ci_high": high}


def kappa_interval(reference: Sequence[bool], predicted: Sequence[bool], *, n_resamples: int = 2000,
                   seed: int = 0) -> tuple[float | None, float | None]:
    """95% percentile-bootstrap interval of Cohen's κ over the items (None when undefined).

    A resample in which one side has a single label has no κ. On a small subset with few positives
    (e.g. the refusals left under ablation) a few resamples do; the interval is read from the
    defined ones as long as they are at least 95% of all, and is None otherwise.
    """
    ref, pred = np.asarray(reference, dtype=bool), np.asarray(predicted, dtype=bool)
    if len(ref) < 2 or np.isnan(cohen_kappa(ref, pred)):
        return None, None
    with warnings.catch_warnings():
        # Resamples without κ (NaN) make scipy warn; they are counted below instead.
        warnings.simplefilter("ignore")
        result = bootstrap((ref, pred), _kappa, paired=True, vectorized=True, n_resamples=n_resamples,
                           method="percentile", random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    if np.isnan(low) or np.isnan(high):
        draws = np.asarray(result.bootstrap_distribution, dtype=float)
        if np.isnan(draws).mean() > 0.05:
            return None, None
        low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(low), float(high)


def agreement_scores(reference: Sequence[bool], predicted: Sequence[bool]) -> dict:
    """Accuracy, precision and recall of ``predicted`` on the positive class, and Cohen's κ.

    Returns:
        ``n``, ``tp``, ``fp``, ``fn``, ``tn``, ``accuracy`` / ``precision`` / ``recall`` (each
        ``{"value", "count", "n", "ci_low", "ci_high"}``, value None where the denominator is 0),
        ``kappa`` and ``kappa_ci_low`` / ``kappa_ci_high``.
    """
    ref, pred = np.asarray(reference, dtype=bool), np.asarray(predicted, dtype=bool)
    if len(ref) != len(pred) or len(ref) == 0:
        raise ValueError(f"reference and predicted must be non-empty and equally long, got {len(ref)} and {len(pred)}.")
    tp, fp = int((ref & pred).sum()), int((~ref & pred).sum())
    fn, tn = int((ref & ~pred).sum()), int((~ref & ~pred).sum())
    kappa = cohen_kappa(ref, pred)
    low, high = kappa_interval(ref, pred)
    return {
        "n": len(ref), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "accuracy": _proportion(tp + tn, len(ref)),
        "precision": _proportion(tp, tp + fp),
        "recall": _proportion(tp, tp + fn),
        "kappa": None if np.isnan(kappa) else kappa, "kappa_ci_low": low, "kappa_ci_high": high,
    }


def kappa_text(scores: dict) -> str:
    """``"0.91 [0.87, 0.95]"``: κ of :func:`agreement_scores` with its interval ("n/a" if undefined)."""
    if scores["kappa"] is None:
        return "n/a"
    if scores["kappa_ci_low"] is None or scores["kappa_ci_high"] is None:
        return f"{scores['kappa']:.2f}"
    return f"{scores['kappa']:.2f} [{scores['kappa_ci_low']:.2f}, {scores['kappa_ci_high']:.2f}]"


def confusion(items: Sequence[LabelledReply], flags: Sequence[bool]) -> dict[str, dict[str, int]]:
    """How many items of each read label the judge flagged and did not: ``{label: {"flagged", "not"}}``."""
    table = {label: {"flagged": 0, "not": 0} for label in LABELS}
    for item, flag in zip(items, flags):
        table[item.label]["flagged" if flag else "not"] += 1
    return table


def validate_flags(items: Sequence[LabelledReply], flags: Sequence[bool], target: str) -> dict:
    """A judge's flags on the labelled items scored against ``target``, overall and per condition.

    Returns:
        ``{"target", "overall": agreement_scores(...), "by_condition": {condition: ...},
        "confusion": {condition or "all": confusion(...)}}``; conditions without items are left out.
    """
    if len(flags) != len(items):
        raise ValueError(f"{len(flags)} flags for {len(items)} labelled items; judge every item once.")
    reference = target_flags(items, target)
    out = {"target": target, "overall": agreement_scores(reference, flags), "by_condition": {},
           "confusion": {"all": confusion(items, flags)}}
    for condition in CONDITIONS:
        picked = [i for i, item in enumerate(items) if item.condition == condition]
        if picked:
            out["by_condition"][condition] = agreement_scores([reference[i] for i in picked], [flags[i] for i in picked])
            out["confusion"][condition] = confusion([items[i] for i in picked], [flags[i] for i in picked])
    return out


def validate_judge(judge: Judge, items: Sequence[LabelledReply] | None = None,
                   targets: Sequence[str] = tuple(TARGETS)) -> dict:
    """Judge every labelled reply once and score the flags on each target.

    Args:
        judge: Any judge (its flags are read as "refuses").
        items: The labelled replies (default: :func:`reference_labels`).
        targets: Which of :data:`TARGETS` to score.

    Returns:
        ``{"judge": name, "description", "n", "flags": [...], "<target>": validate_flags(...)}``.
    """
    items = list(reference_labels() if items is None else items)
    flags = [bool(f) for f in judge.judge([i.prompt for i in items], [i.reply for i in items])]
    out = {"judge": judge.name, "description": judge.description, "n": len(items), "flags": flags}
    for target in targets:
        out[target] = validate_flags(items, flags, target)
    return out
