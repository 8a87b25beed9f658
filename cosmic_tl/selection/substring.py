"""Former home of the refusal-token selection; see :mod:`cosmic_tl.selection.refusal_token`."""

from cosmic_tl.selection.refusal_token import (  # noqa: F401  (re-exported for earlier callers)
    REFUSAL_TOKEN_VARIANTS,
    SUBSTRING_VARIANTS,
    filter_by_refusal_score,
    prompt_refusal_scores,
    refusal_token_filter_reasons,
    refusal_token_pruned,
    select_refusal_token,
    select_substring,
    substring_filter_reasons,
    substring_pruned,
)
