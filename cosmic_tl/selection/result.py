"""The outcome of a selection, and the ranking step both selections share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from cosmic_tl.directions import Direction


class NoCandidateLeftError(RuntimeError):
    """Every candidate was filtered out."""


NO_EFFECT_NOTICE = (
    "No candidate changes the read-outs at L_low: every kept candidate gets the no-op score, so the "
    "chosen direction is only the first row of a tie and means nothing (docs/method.md §4). Use lower "
    "evaluation layers or score lower candidate layers."
)
"""What a report's first lines and the explorer's header say about a no-op tie."""


def no_effective_candidate(summary: dict) -> bool:
    """Whether a selection summary (``selection/summary.json``) records a no-op tie
    (``baselines["no_effective_candidate"]``, set by :func:`~cosmic_tl.selection.select_cosmic`)."""
    baselines = summary.get("baselines") if isinstance(summary, dict) else None
    return bool(isinstance(baselines, dict) and baselines.get("no_effective_candidate"))


@dataclass
class Selection:
    """A chosen direction with the table of every candidate it was chosen from.

    Attributes:
        method: ``"cosmic"``, or the refusal-token baseline's ``"refusal-token-cosmic-repo"`` /
            ``"refusal-token-arditi"``.
        steering: The steering rule whose interventions scored the candidates (``"ace"``, ``"lce"``).
        table: One row per (position, layer): the scores, ``score``, ``kept``, ``reason`` (why it
            was dropped, "" if kept) and ``chosen``.
        direction: The chosen direction (vector, ACE reference, position, layer, metadata).
        eval_layers: L_low (COSMIC only).
        baselines: Unintervened reference values (e.g. cos(b+, b-), mean refusal scores).
    """

    method: str
    steering: str
    table: pd.DataFrame
    direction: Direction
    eval_layers: list[int] | None = None
    baselines: dict = field(default_factory=dict)

    @property
    def position(self) -> int:
        return self.direction.position

    @property
    def layer(self) -> int:
        return self.direction.layer

    def summary(self) -> dict:
        """JSON-able: the pick, its scores and how many candidates each filter dropped."""
        chosen = self.table[self.table.chosen].iloc[0].to_dict()
        return {
            "method": self.method,
            "steering": self.steering,
            "position": self.position,
            "layer": self.layer,
            "scores": {k: v for k, v in chosen.items() if k not in ("position", "layer", "kept", "reason", "chosen")},
            "eval_layers": self.eval_layers,
            "n_candidates": len(self.table),
            "n_kept": int(self.table.kept.sum()),
            "dropped": self.table[~self.table.kept].reason.value_counts().to_dict(),
            "baselines": self.baselines,
        }


def rank_and_pick(table: pd.DataFrame, reasons: Sequence[str]) -> pd.DataFrame:
    """Mark kept candidates and pick the best ``score``.

    Ties go to the first row in table order (positions from -n_pos upward, then layers ascending),
    as with the authors' stable ``sorted(..., reverse=True)`` (docs/method.md §4).

    Raises:
        NoCandidateLeftError: if every candidate was filtered out.
    """
    table = table.copy()
    table["reason"] = list(reasons)
    table["kept"] = table.reason == ""
    kept = [i for i in range(len(table)) if table.kept.iat[i]]
    if not kept:
        counts = table.reason.value_counts().to_dict()
        raise NoCandidateLeftError(f"All scores have been filtered out! Dropped by: {counts}")
    best = sorted(kept, key=lambda i: -table.score.iat[i])[0]
    table["chosen"] = False
    table.loc[table.index[best], "chosen"] = True
    return table


def is_zero_direction(table: pd.DataFrame) -> pd.Series:
    """Candidates whose mean difference vanishes (e.g. template tokens at the embedding layer,
    identical in every prompt). Their unit vector is 0, so steering with them does nothing; the
    authors' code could pick one on a tie with the no-op score, we never do."""
    return table.r_norm <= 1e-6 * table.r_norm.max()


def is_nan(*values: float) -> bool:
    return any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values)
