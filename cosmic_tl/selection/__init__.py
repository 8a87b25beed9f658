"""Direction selection: COSMIC (activation cosine scores) and the refusal-token baseline."""

from cosmic_tl.selection.cosmic import NoEffectiveCandidateWarning, select_cosmic
from cosmic_tl.selection.refusal_token import filter_by_refusal_score, select_refusal_token
from cosmic_tl.selection.result import NoCandidateLeftError, Selection
from cosmic_tl.selection.scoring import CandidateScorer, ScoringPlan

__all__ = [
    "CandidateScorer", "NoCandidateLeftError", "NoEffectiveCandidateWarning", "ScoringPlan", "Selection",
    "filter_by_refusal_score", "select_cosmic", "select_refusal_token",
]
