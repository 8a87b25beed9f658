"""One class of a concept's prompts: either one pool that sampling splits into train / val / test,
or fixed train / val / test splits (as the paper's data comes).

Prompts come from anything :func:`cosmic_tl.data.load_prompts` reads (a shipped split or
benchmark name, a JSON / JSONL / CSV file) or from a ``.txt`` file with one instruction per line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

from cosmic_tl.data import USER_FILE_SUFFIXES, DatasetError, Prompt, is_blank, load_prompts

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
        return PromptSet({k: v[0] for k, v in loaded.items()}, {k: v[1] for k, v in loaded.items()})
    prompts, where = load_prompt_source(source)
    return PromptSet({POOL: prompts}, {POOL: where})


def load_prompt_source(source: PromptSource) -> tuple[tuple[Prompt, ...], str]:
    """The prompts of one source and a short description of where they came from."""
    if isinstance(source, (str, os.PathLike)):
        if Path(source).suffix.lower() == ".txt" and ".txt" not in USER_FILE_SUFFIXES:
            return tuple(read_txt_prompts(Path(source))), str(source)
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
    return tuple(prompts), f"a list of {len(prompts)} prompts"


def read_txt_prompts(path: Path) -> list[Prompt]:
    """One instruction per line of a UTF-8 text file; blank lines (:func:`~cosmic_tl.data.is_blank`)
    are skipped, lines are stripped.

    Raises:
        DatasetError: the file is missing, not UTF-8, or has no instruction.
    """
    # data.load_prompts does not read .txt yet; this reader can go once it does.
    if not path.is_file():
        raise DatasetError(f"Dataset file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start}).") from None
    prompts = [Prompt(line.strip()) for line in text.splitlines() if not is_blank(line)]
    if not prompts:
        raise DatasetError(f"{path}: the dataset is empty (no non-blank lines).")
    return prompts
