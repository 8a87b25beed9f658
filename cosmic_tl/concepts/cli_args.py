"""The concept flags of ``cosmic-tl run``: ``--concept``, ``--positive``, ``--negative``,
``--positive-suffix``, ``--judge``, ``--concept-name``.

- ``--concept NAME`` (a built-in: refusal, chinese) or ``--concept FILE.toml`` (a concept file).
- ``--positive FILE --negative FILE --judge SPEC``: your own contrast sets (JSON / JSONL / CSV /
  TXT files or shipped names, each one pool sampled into train / val / test).
- ``--negative FILE --positive-suffix TEXT --judge SPEC``: a paired concept (positive = every
  negative instruction + TEXT).
- ``--judge SPEC`` alone replaces the judge of the chosen (or the default refusal) concept.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from cosmic_tl.concepts.builtin import BUILTIN_CONCEPTS, builtin_concept
from cosmic_tl.concepts.concept import Concept, ConceptError, suffix_concept
from cosmic_tl.concepts.files import load_concept
from cosmic_tl.concepts.judge_specs import judge_from_spec, judge_usage

DEFAULT_CONCEPT = "refusal"
CUSTOM_CONCEPT_NAME = "custom"
CONCEPT_OPTIONS: tuple[str, ...] = ("concept", "positive", "negative", "positive_suffix", "judge", "concept_name")
"""The option names (argparse ``dest``s): what a run configuration stores to rebuild its concept."""


def add_concept_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the concept flags (module docstring) to ``parser``, in their own argument group.

    Their ``dest``s are :data:`CONCEPT_OPTIONS`; every default is None (the refusal concept).
    """
    group = parser.add_argument_group("concept (what the positive and negative prompts contrast)")
    group.add_argument(
        "--concept",
        help=f"a built-in concept ({', '.join(BUILTIN_CONCEPTS)}; default {DEFAULT_CONCEPT}) or a concept file FILE.toml",
    )
    group.add_argument("--positive", help="prompts that show the concept (.json/.jsonl/.csv/.txt or a shipped name)")
    group.add_argument("--negative", help="prompts that do not (same formats)")
    group.add_argument("--positive-suffix", help="positive = every --negative instruction + this text (paired)")
    group.add_argument(
        "--judge",
        help=f"judge of the replies: {judge_usage()}",
    )
    group.add_argument("--concept-name", help=f"name of a --positive/--negative concept (default {CUSTOM_CONCEPT_NAME})")


def concept_from_args(args: argparse.Namespace) -> Concept:
    """The concept the parsed flags describe (see :func:`concept_from_options`)."""
    return concept_from_options(**{key: getattr(args, key, None) for key in CONCEPT_OPTIONS})


def concept_from_options(
    concept: str | None = None,
    positive: str | None = None,
    negative: str | None = None,
    positive_suffix: str | None = None,
    judge: str | None = None,
    concept_name: str | None = None,
) -> Concept:
    """The concept of the :data:`CONCEPT_OPTIONS` (the built-in refusal concept when none is given).

    Args:
        concept: A built-in name or a concept file.
        positive, negative: Prompt files or shipped dataset names.
        positive_suffix: Makes the positive prompts from ``negative`` (a paired concept).
        judge: A judge spec (:func:`~cosmic_tl.concepts.judge_from_spec`).
        concept_name: The name of a ``positive`` / ``negative`` concept.

    Raises:
        ConceptError: conflicting or incomplete options, or any error of the concept file, the
            prompt files or the judge (one line naming the flag or file).
    """
    parsed_judge = judge_from_spec(judge) if judge is not None else None
    own_sets = positive is not None or negative is not None or positive_suffix is not None
    if concept is not None and own_sets:
        raise ConceptError("--concept cannot be combined with --positive/--negative/--positive-suffix; use one or the other.")
    if concept_name is not None and not own_sets:
        raise ConceptError("--concept-name names a --positive/--negative concept; give those flags too.")
    if not own_sets:
        chosen = resolve_concept(concept or DEFAULT_CONCEPT)
        return chosen if parsed_judge is None else replace(chosen, judge=parsed_judge)
    if parsed_judge is None:
        raise ConceptError("Your own prompt sets need a judge: add --judge (e.g. --judge 'regex:PATTERN' or --judge cjk).")
    if negative is None:
        raise ConceptError("--negative FILE is missing (the prompts that do not show the concept).")
    name = concept_name or CUSTOM_CONCEPT_NAME
    if positive_suffix is not None:
        if positive is not None:
            raise ConceptError("--positive-suffix makes the positive prompts from --negative; drop --positive.")
        return suffix_concept(name, negative, positive_suffix, parsed_judge)
    if positive is None:
        raise ConceptError("--positive FILE is missing (or use --positive-suffix TEXT to make it from --negative).")
    return Concept(name, positive=positive, negative=negative, judge=parsed_judge)


def resolve_concept(name_or_file: str) -> Concept:
    """A built-in concept by name, or the concept file at that path.

    Raises:
        ConceptError: neither a built-in name nor an existing file (the message lists the
            built-in names), or any error of the concept file.
    """
    if name_or_file in BUILTIN_CONCEPTS:
        return builtin_concept(name_or_file)
    if name_or_file.endswith(".toml") or Path(name_or_file).exists():
        return load_concept(name_or_file)
    return builtin_concept(name_or_file)  # raises, listing the built-in names
