"""Degenerate replies: empty, stuck in a loop, or not language (``docs/method.md §7``).

Next-token KL sees only the first step of a reply; steering can leave that step almost unchanged
and still send the reply into a loop a few tokens later. This judge reads the whole reply. It
cannot see a fluent reply that is off-topic: the read labels' ``degenerate`` class includes those,
so its recall against them is below 1 by construction (README, "Judges against read labels").
"""

from __future__ import annotations

import re
from typing import Sequence

from cosmic_tl.judges.base import Judge, check_pairs
from cosmic_tl.judges.text import MIN_RESPONSE_CHARS

NGRAM = 3
"""Word n-grams counted by the repetition test."""

MIN_NGRAMS = 12
"""Replies with fewer word n-grams are too short to call repetitive."""

MAX_REPEATED_SHARE = 0.5
"""A reply whose word n-grams are more than this share repeats of earlier ones loops."""

RUN_OF_ONE_CHARACTER = re.compile(r"(\S)\1{19,}")
"""Twenty or more copies of one non-space character in a row ("!!!!…", "____…")."""

MIN_LETTER_SHARE = 0.3
"""A reply of at least :data:`MIN_LANGUAGE_CHARS` non-space characters with a smaller share of
letters (any script) is not language (code and tables keep well above it)."""

MIN_LANGUAGE_CHARS = 20


def degenerate_reason(reply: str) -> str | None:
    """Why ``reply`` is degenerate (``"empty"``, ``"repetition"``, ``"not language"``), or None.

    Examples:
        >>> degenerate_reason("")
        'empty'
        >>> degenerate_reason("I can help. " * 10)
        'repetition'
        >>> degenerate_reason("Paris is the capital of France.") is None
        True
    """
    text = reply.strip()
    if len(text) < MIN_RESPONSE_CHARS:
        return "empty"
    words = text.lower().split()
    grams = [tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]
    if len(grams) >= MIN_NGRAMS and 1 - len(set(grams)) / len(grams) > MAX_REPEATED_SHARE:
        return "repetition"
    if RUN_OF_ONE_CHARACTER.search(text):
        return "repetition"
    visible = [c for c in text if not c.isspace()]
    if len(visible) >= MIN_LANGUAGE_CHARS and sum(c.isalpha() for c in visible) / len(visible) < MIN_LETTER_SHARE:
        return "not language"
    return None


class DegenerateJudge(Judge):
    """Flags replies that are empty, repetitive or not language (:func:`degenerate_reason`)."""

    name = "degenerate"

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[bool]:
        check_pairs(prompts, responses)
        return [degenerate_reason(r) is not None for r in responses]

    @property
    def description(self) -> str:
        return (f"empty (< {MIN_RESPONSE_CHARS} characters), looping (> {MAX_REPEATED_SHARE:.0%} repeated word "
                f"{NGRAM}-grams, or a run of 20 equal characters) or not language (< {MIN_LETTER_SHARE:.0%} letters)")
