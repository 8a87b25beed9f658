"""The chosen direction's completions and effects, as the run's own judges counted them.

Nothing is judged again: the effects are the run's (:func:`cosmic_tl.runs.effects.effects`) and
each reply's verdict is the run's stored flag, counted as the run's metrics count it
(:func:`cosmic_tl.runs.report.judged_flags`).
"""

from __future__ import annotations

from cosmic_tl.explore.source import Part
from cosmic_tl.judges import degenerate_reason
from cosmic_tl.runs import Comparison
from cosmic_tl.runs.effects import effects, steered_label
from cosmic_tl.runs.report import judged_flags


def comparison_effects(part: Part, comparison: Comparison, found: list[dict] | None = None) -> list[dict]:
    """The paired effects of one comparison, one per judge, the run's headline judge first.

    Args:
        part: The (sub-)run.
        comparison: One of its comparisons.
        found: The part's effects (:func:`~cosmic_tl.runs.effects.effects`), when already read.
    """
    key = (comparison.dataset, steered_label(part.run, comparison))
    every = [e.to_dict() for e in effects(part.run)] if found is None else found
    return [e for e in every if (e["dataset"], e["condition"]) == key]


def comparison_set(part: Part, comparison: Comparison, judge: str | None) -> dict | None:
    """Every prompt of one comparison: both replies, whether ``judge`` counted each, degenerate ones.

    Returns:
        ``{"dataset", "action", "alpha", "judge", "rows", "n_total"}`` with rows ``{"prompt",
        "baseline", "steered", "baseline_counted", "steered_counted", "baseline_degenerate",
        "steered_degenerate"}``; None when either completion set is missing.
    """
    c = comparison
    base = part.completions(c.dataset, c.baseline, baseline=True)
    steered = part.completions(c.dataset, c.steered)
    if base is None or steered is None or len(base) != len(steered):
        return None
    if judge is not None:
        base_counted = judged_flags(part.whole, c.dataset, c.baseline, judge)
        steered_counted = judged_flags(part.run, c.dataset, c.steered, judge)
    else:
        base_counted = steered_counted = [None] * len(base)
    rows = [{"prompt": b["prompt"], "baseline": b["response"], "steered": s["response"],
             "baseline_counted": bc, "steered_counted": sc,
             "baseline_degenerate": degenerate_reason(b["response"]),
             "steered_degenerate": degenerate_reason(s["response"])}
            for b, s, bc, sc in zip(base, steered, base_counted, steered_counted)]
    return {"dataset": c.dataset, "action": c.action, "alpha": c.alpha, "judge": judge, "rows": rows,
            "n_total": len(rows)}


def baseline_verdicts(part: Part, comparison: Comparison) -> tuple[str | None, list[bool | None]]:
    """(headline judge, its counted verdict of each unsteered reply of ``comparison``); (None, []) if unjudged."""
    found = comparison_effects(part, comparison)
    if not found:
        return None, []
    judge = found[0]["judge"]
    return judge, judged_flags(part.whole, comparison.dataset, comparison.baseline, judge)


def chosen_completions(part: Part) -> tuple[list[dict], list[dict]]:
    """The chosen direction's completion sets and their effects (every judge), from the run's files."""
    every = [e.to_dict() for e in effects(part.run)]
    sets, shown, judges = [], [], []
    for comparison in part.comparisons:
        found = comparison_effects(part, comparison, every)
        entry = comparison_set(part, comparison, found[0]["judge"] if found else None)
        if entry is not None:
            sets.append(entry)
            shown += found
            judges += [e["judge"] for e in found if e["judge"] not in judges]
    # Grouped by judge, the headline judge first, as summary.json lists them.
    return sets, sorted(shown, key=lambda e: judges.index(e["judge"]))
