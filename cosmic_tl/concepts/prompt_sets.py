"""One class of a concept's prompts: either one pool that sampling splits into train / val / test,
or fixed train / val / test splits (as the paper's data comes).

Prompts come from anything :func:`cosmic_tl.data.load_prompts` reads (a shipped split or
benchmark name, a JSON / JSONL / CSV / TXT file) or a list. Repeats are warned about wherever they
come from (a :class:`~cosmic_tl.data.DuplicateInstructionWarning`); a pool keeps one copy of each
instruction, since sampling splits it into train / val / test and a repeat could otherwise put a
train prompt into the test split.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

from cosmic_tl.data import DatasetError, DuplicateInstructionWarning, Prompt, _warn_on_duplicates, is_blank, load_prompts

SPLIT_KINDS: tuple[str, ...] = ("train", "val", "test")
POOL = "all"

PromptSource = Union[str, os.PathLike, Sequence[str], Sequence[Prompt]]
"""What a prompt set is made of: a dataset name, a file, or a list of strings or prompts."""


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one class of a concept.

    Attributes:
        splits: ``{"all": prompts}`` for a pool, or ``{"train": ..., "val": ..., "test": ...}``.
        sources: Where each split came from (a file, a shipped name, "a list of 40 prompts"),
            for error messages and reports.
    """

    splits: Mapping[str, tuple[Prompt, ...]]
    sources: Mapping[str, str]

    @property
    def fixed(self) -> bool:
        """True for fixed train / val / test splits, False for one pool."""
        return POOL not in self.splits

    def with_suffix(self, suffix: str) -> "PromptSet":
        """The same prompts with ``suffix`` appended to every instruction (categories kept)."""
        return PromptSet(
            splits={
                kind: tuple(Prompt(p.instruction + suffix, p.category) for p in prompts)
                for kind, prompts in self.splits.items()
            },
            sources={kind: f"{source} + {suffix!r}" for kind, source in self.sources.items()},
        )


def prompt_set(source: PromptSource | Mapping[str, PromptSource]) -> PromptSet:
    """Build a :class:`PromptSet` from a source (a pool) or ``{"train", "val", "test"}`` sources.

    Args:
        source: A shipped split or benchmark name, a path to a ``.json`` / ``.jsonl`` / ``.csv`` /
            ``.txt`` file, a list of instruction strings or :class:`~cosmic_tl.data.Prompt`, or a
            mapping with exactly the keys ``train``, ``val`` and ``test``, each such a source.

    Raises:
        DatasetError: a missing or malformed file, an empty list, a bad record, a mapping
            with other keys (the message names the file or the key).

    Example:
        >>> prompt_set(["Name a colour.", "Name a fruit."]).splits["all"][0]
        Prompt(instruction='Name a colour.', category=None)
        >>> prompt_set({"train": "harmless_train", "val": "harmless_val", "test": "harmless_test"}).fixed
        True
    """
    if isinstance(source, PromptSet):
        return source
    if isinstance(source, Mapping):
        if set(source) != set(SPLIT_KINDS):
            raise DatasetError(
                f"Fixed splits need exactly the keys train, val and test; got {', '.join(map(str, source))}."
            )
        loaded = {kind: load_prompt_source(source[kind]) for kind in SPLIT_KINDS}
        _warn_on_shared_test_prompts({k: v[0] for k, v in loaded.items()}, loaded["test"][1])
        return PromptSet({k: v[0] for k, v in loaded.items()}, {k: v[1] for k, v in loaded.items()})
    with warnings.catch_warnings():  # one warning for the pool's repeats, below, not the loader's too
        warnings.simplefilter("ignore", DuplicateInstructionWarning)
        prompts, where = load_prompt_source(source)
    return PromptSet({POOL: _distinct(prompts, where)}, {POOL: where})


def _distinct(prompts: tuple[Prompt, ...], where: str) -> tuple[Prompt, ...]:
    """The pool with each instruction once (first copy kept), warning when repeats were dropped."""
    seen: set[str] = set()
    kept, repeats = [], []
    for p in prompts:
        (repeats if p.instruction in seen else kept).append(p)
        seen.add(p.instruction)
    if repeats:
        repeated = repeats[0].instruction
        warnings.warn(
            f"{where}: {len(repeats)} repeated instruction(s) dropped from the pool (first: "
            f"{repeated!r:.60}); a pool is split into train, val and test, and a repeat could put a train "
            "prompt into the test split.", DuplicateInstructionWarning, stacklevel=4)
    return tuple(kept)


def _warn_on_shared_test_prompts(splits: dict[str, tuple[Prompt, ...]], where: str) -> None:
    """Warn when fixed test prompts repeat train or val prompts (the evaluation would see them)."""
    seen = {p.instruction for kind in ("train", "val") for p in splits[kind]}
    shared = [p.instruction for p in splits["test"] if p.instruction in seen]
    if shared:
        warnings.warn(
            f"{where}: {len(shared)} test instruction(s) also appear in the train or val split (first: "
            f"{shared[0]!r:.60}); the evaluation would be on prompts the direction was made or chosen from.",
            DuplicateInstructionWarning, stacklevel=4)


def load_prompt_source(source: PromptSource) -> tuple[tuple[Prompt, ...], str]:
    """The prompts of one source and a short description of where they came from."""
    if isinstance(source, (str, os.PathLike)):
        return tuple(load_prompts(source)), str(source)
    if not isinstance(source, Sequence):
        raise DatasetError(
            f"A prompt source must be a dataset name, a file path or a list of prompts, got {type(source).__name__}."
        )
    if len(source) == 0:
        raise DatasetError("The list of prompts is empty.")
    prompts = []
    for index, item in enumerate(source):
        if isinstance(item, str) and not is_blank(item):
            prompts.append(Prompt(item))
        elif isinstance(item, Prompt):
            prompts.append(item)
        else:
            raise DatasetError(
                f"Prompt {index} of the list must be a non-empty string or a Prompt, got {item!r:.60}."
            )
    where = f"a list of {len(prompts)} prompts"
    _warn_on_duplicates(prompts, where)  # as the file loaders do
    return tuple(prompts), where
