"""Each (sub-)run's paired effects: its comparisons' rates against the unsteered ones, per judge.

Nothing is judged again: each reply's verdict is the run's stored flag (``judges/*.json``),
counted as the run's metrics count it (:func:`cosmic_tl.runs.report.judged_flags`: for the
refusal metric a reply too short to be an answer counts as a refusal). A pipeline run's effects
are its ``summary.json`` entries, so every reader shows the report's counts; an experiment's
sub-runs, which have no summary of their own, get the same paired test from the same flags.
Each effect is a :class:`~cosmic_tl.stats.Effect` (``str(effect)`` is its sentence).
"""

from __future__ import annotations

from cosmic_tl.runs.files import read_json
from cosmic_tl.runs.kinds import Comparison
from cosmic_tl.runs.layout import SUMMARY
from cosmic_tl.runs.reader import Run
from cosmic_tl.runs.report import judged_flags
from cosmic_tl.stats import Effect, paired_effect


def steered_label(run: Run, comparison: Comparison) -> str:
    """The steered condition as the run's files and metrics name it (the sub-run's prefix included)."""
    return f"{run.layout.condition_prefix}{comparison.steered}"


def comparison_effects(run: Run, comparison: Comparison) -> list[Effect]:
    """:func:`~cosmic_tl.stats.paired_effect` of one comparison of ``run``, one per judge whose flags
    the run stored for its steered replies (none where they are not judged yet)."""
    c = comparison
    stored = run.judged(c.dataset, c.steered) if (run.root / run.layout.judged(c.dataset, c.steered)).is_file() else {}
    judges = stored.get("flags") if isinstance(stored, dict) else None
    return [Effect.from_dict({"judge": judge, **paired_effect(
                c.dataset, steered_label(run, c), judged_flags(run.whole, c.dataset, c.baseline, judge),
                judged_flags(run, c.dataset, c.steered, judge), expected=c.expected)})
            for judge in (judges if isinstance(judges, dict) else {})]


def effects(run: Run) -> list[Effect]:
    """Every paired effect of a (sub-)run, grouped by judge in the order the run lists them.

    A run with a ``summary.json`` (the pipeline) gives its ``effects``; otherwise each of
    :meth:`Run.comparisons <cosmic_tl.runs.reader.Run.comparisons>`' effects is computed from the
    stored flags (:func:`comparison_effects`).
    """
    summary = run.root / SUMMARY
    if run.key is None and summary.is_file():
        found = read_json(summary)
        if isinstance(found, dict) and isinstance(found.get("effects"), list):
            return [Effect.from_dict(e) for e in found["effects"]]
    found = [e for comparison in run.comparisons() for e in comparison_effects(run, comparison)]
    judges = list(dict.fromkeys(e.judge for e in found))
    return sorted(found, key=lambda e: judges.index(e.judge))
