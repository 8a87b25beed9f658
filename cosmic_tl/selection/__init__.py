"""Direction selection: COSMIC (activation cosine scores) and the refusal-token baseline."""

from cosmic_tl.selection.cosmic import select_cosmic
from cosmic_tl.selection.result import NoCandidateLeftError, Selection
from cosmic_tl.selection.scoring import CandidateScorer, ScoringPlan
from cosmic_tl.selection.substring import filter_by_refusal_score, select_substring

__all__ = [
    "CandidateScorer", "NoCandidateLeftError", "ScoringPlan", "Selection",
    "filter_by_refusal_score", "select_cosmic", "select_substring",
]
