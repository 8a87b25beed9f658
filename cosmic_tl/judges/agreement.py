"""Agreement between two judges' flags on the same replies (raw agreement and Cohen's kappa)."""

from __future__ import annotations

import math
from typing import Sequence

from cosmic_tl.judges.validation import cohen_kappa


def judge_agreement(judge_a_flags: Sequence[bool], judge_b_flags: Sequence[bool]) -> dict:
    """Agreement between two judges' flags on the same items.

    Returns:
        ``n``, ``agreement`` (fraction equal), ``cohen_kappa`` (None when chance agreement is 1,
        i.e. both judges give one constant label, so that the dict stays JSON), and the confusion counts ``both_true``,
        ``a_only``, ``b_only``, ``both_false``.

    Raises:
        ValueError: if the lists differ in length or are empty.
    """
    if len(judge_a_flags) != len(judge_b_flags):
        raise ValueError(f"Judge flag lists differ in length: {len(judge_a_flags)} vs {len(judge_b_flags)}.")
    n = len(judge_a_flags)
    if n == 0:
        raise ValueError("No flags to compare (both lists are empty).")
    a = [bool(x) for x in judge_a_flags]
    b = [bool(x) for x in judge_b_flags]
    both_true = sum(x and y for x, y in zip(a, b))
    both_false = sum(not x and not y for x, y in zip(a, b))
    observed = (both_true + both_false) / n
    kappa = cohen_kappa(a, b)
    return {
        "n": n,
        "agreement": observed,
        "cohen_kappa": None if math.isnan(kappa) else kappa,
        "both_true": both_true,
        "a_only": sum(x and not y for x, y in zip(a, b)),
        "b_only": sum(y and not x for x, y in zip(a, b)),
        "both_false": both_false,
    }

