"""The built-in concepts: the paper's refusal, and "reply in Chinese" (offline, no new data)."""

from __future__ import annotations

from typing import Callable

from cosmic_tl.judges import CJKJudge, SubstringJudge
from cosmic_tl.concepts.concept import Concept, ConceptError, ConceptLabels, suffix_concept

CHINESE_SUFFIX = " 请用中文回答。"
"""Appended to a harmless instruction to make the "asks for Chinese" prompt ("please answer in Chinese")."""


def refusal_concept() -> Concept:
    """The paper's concept: harmful vs harmless instructions, judged by the refusal substrings.

    The shipped splits (``harmful_train`` ... ``harmless_test``) are its fixed splits, so
    :func:`~cosmic_tl.concepts.sample_concept` draws what ``sample_paper`` draws.
    """
    splits = {kind: {"train": f"{kind}_train", "val": f"{kind}_val", "test": f"{kind}_test"}
              for kind in ("harmful", "harmless")}
    return Concept(
        "refusal",
        positive=splits["harmful"],
        negative=splits["harmless"],
        judge=SubstringJudge(),
        labels=ConceptLabels("harmful", "harmless", "refusal", "harmful", "harmless"),
        metric="refusal",
    )


def chinese_concept() -> Concept:
    """Reply in Chinese: harmless instructions with :data:`CHINESE_SUFFIX` appended vs the same without.

    Both sides use the same base instructions, drawn from the shipped harmless splits (train /
    val / test are disjoint there, so no test instruction is seen in training or selection).
    The judge is :class:`~cosmic_tl.judges.CJKJudge` at its default threshold. Ablation on the
    positive prompts should lower the share of Chinese replies, addition on plain prompts raise it.
    """
    return suffix_concept(
        "chinese",
        {"train": "harmless_train", "val": "harmless_val", "test": "harmless_test"},
        CHINESE_SUFFIX,
        judge=CJKJudge(),
        labels=ConceptLabels("asks for Chinese", "plain", "Chinese reply", "chinese", "plain"),
    )


BUILTIN_CONCEPTS: dict[str, Callable[[], Concept]] = {"refusal": refusal_concept, "chinese": chinese_concept}
"""Built-in concept names and their constructors."""


def builtin_concept(name: str) -> Concept:
    """A built-in concept by name (see :data:`BUILTIN_CONCEPTS`).

    Raises:
        ConceptError: an unknown name (the message lists the valid ones).
    """
    if name not in BUILTIN_CONCEPTS:
        raise ConceptError(
            f"Unknown concept {name!r}; built-in concepts: {', '.join(BUILTIN_CONCEPTS)} "
            "(or pass a concept file, FILE.toml)."
        )
    return BUILTIN_CONCEPTS[name]()
