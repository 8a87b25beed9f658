"""The judge interface: one boolean flag per (prompt, response) pair, and a judge made of a function.

A judge answers one yes/no question about each reply: "does it refuse?", "is it in Chinese?",
"does it match this pattern?". ``True`` means the reply shows the judged behaviour; a rate is the
share of ``True`` flags (see ``docs/method.md §7``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np

JudgeFunction = Callable[[Sequence[str], Sequence[str]], Sequence[bool]]
"""Any function ``(prompts, responses) -> flags`` with one bool per pair."""


class JudgeError(ValueError):
    """A judge was built with bad settings, or returned something other than one bool per pair."""


class JudgeUnavailableError(RuntimeError):
    """A judge's model cannot be loaded (weights missing, offline, gated)."""


class Judge(ABC):
    """Decides, for each (prompt, response) pair, whether the response shows the judged behaviour.

    Attributes:
        name: Short identifier; keys the judge's flags in saved results (``judges/*.json``).
    """

    name: str

    @abstractmethod
    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[bool]:
        """One flag per pair (True = the response shows the behaviour, e.g. it refuses)."""

    @property
    def description(self) -> str:
        """One human-readable line saying what the judge detects and how (for reports)."""
        return self.name


class CallableJudge(Judge):
    """A judge made of any function ``(prompts, responses) -> list[bool]``.

    The function's output is checked on every call: it must be a sequence with exactly one
    ``bool`` (or numpy bool) per pair. Scores, 0/1 integers or a short list raise
    :class:`JudgeError` naming the judge, instead of silently turning into a wrong rate.

    Args:
        function: The judging function.
        name: The judge's name; defaults to the function's ``__name__`` ("callable" for a lambda).

    Example:
        >>> judge = CallableJudge(lambda prompts, replies: ["bonjour" in r.lower() for r in replies], name="french")
        >>> judge.judge(["Say hi"], ["Bonjour !"])
        [True]
    """

    def __init__(self, function: JudgeFunction, name: str | None = None):
        if not callable(function):
            raise JudgeError(f"A judge function must be callable, got {type(function).__name__}.")
        default = getattr(function, "__name__", "callable")
        self.function = function
        self.name = name or ("callable" if default == "<lambda>" else default)

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[bool]:
        check_pairs(prompts, responses)
        return checked_flags(self.function(list(prompts), list(responses)), len(responses), self.name)

    @property
    def description(self) -> str:
        return f"the function {self.name}"


def check_pairs(prompts: Sequence, responses: Sequence[str], what: str = "prompts") -> None:
    """Raise ValueError unless there are as many ``prompts`` as responses."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} {what} but {len(responses)} responses; they must pair up.")


def checked_flags(flags: object, n: int, judge_name: str) -> list[bool]:
    """``flags`` as a list of ``bool``, or a :class:`JudgeError` naming the judge.

    Args:
        flags: What a judge returned.
        n: How many pairs it was given.
        judge_name: Named in the error.
    """
    if isinstance(flags, (str, bytes, dict)) or not hasattr(flags, "__len__"):
        raise JudgeError(
            f"Judge {judge_name!r} returned a {type(flags).__name__}; it must return a list of {n} bools."
        )
    if len(flags) != n:
        raise JudgeError(f"Judge {judge_name!r} returned {len(flags)} flags for {n} responses; return one per response.")
    for index, flag in enumerate(flags):
        # Python's bool and numpy's bool_ only: 0/1 or a score would silently become a rate.
        if not isinstance(flag, (bool, np.bool_)):
            raise JudgeError(
                f"Judge {judge_name!r} returned {flag!r} ({type(flag).__name__}) at index {index}; "
                "every flag must be True or False."
            )
    return [bool(flag) for flag in flags]
