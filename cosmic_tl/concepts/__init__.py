"""Concepts: COSMIC for any contrast between two prompt sets, not only refusal (``docs/method.md §11``).

A :class:`Concept` holds positive prompts (they show the concept), negative prompts (they do not),
a judge of the replies and labels. Built in: ``refusal`` (the paper's harmful / harmless) and
``chinese`` (harmless instructions asking for a Chinese answer / the same without). Your own:
``Concept(...)`` in Python, a TOML concept file (:func:`load_concept`), or the ``cosmic-tl run``
flags (:func:`add_concept_arguments`). :func:`sample_concept` draws the seeded train / val / test
prompts.

Example:
    >>> import cosmic_tl.concepts as cc
    >>> chinese = cc.builtin_concept("chinese")
    >>> sample = cc.sample_concept(chinese, n_train=4, n_val=2, n_test=2, seed=0)
    >>> sample.pos_test[0] == sample.neg_test[0] + cc.CHINESE_SUFFIX, chinese.labels.judged
    (True, 'Chinese reply')
"""

from cosmic_tl.concepts.builtin import BUILTIN_CONCEPTS, CHINESE_SUFFIX, builtin_concept, chinese_concept, refusal_concept
from cosmic_tl.concepts.cli_args import (
    CONCEPT_OPTIONS,
    add_concept_arguments,
    concept_from_args,
    concept_from_options,
    resolve_concept,
)
from cosmic_tl.concepts.concept import Concept, ConceptError, ConceptLabels, ModelJudgeSpec, suffix_concept
from cosmic_tl.concepts.files import load_concept
from cosmic_tl.concepts.judge_specs import judge_from_spec, judge_from_table
from cosmic_tl.concepts.prompt_sets import PromptSet, prompt_set
from cosmic_tl.concepts.sampling import SAMPLE_SPLITS, ConceptSample, sample_concept

__all__ = [
    "BUILTIN_CONCEPTS",
    "CHINESE_SUFFIX",
    "CONCEPT_OPTIONS",
    "Concept",
    "ConceptError",
    "ConceptLabels",
    "ConceptSample",
    "ModelJudgeSpec",
    "PromptSet",
    "SAMPLE_SPLITS",
    "add_concept_arguments",
    "builtin_concept",
    "chinese_concept",
    "concept_from_args",
    "concept_from_options",
    "judge_from_spec",
    "judge_from_table",
    "load_concept",
    "prompt_set",
    "refusal_concept",
    "resolve_concept",
    "sample_concept",
    "suffix_concept",
]
