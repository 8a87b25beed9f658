"""Judges written as text: a ``[judge]`` table of a concept file, or a ``--judge KIND:ARGUMENT`` flag.

=========== ======================================== ==========================================
kind        table keys (besides ``kind``)            flag
=========== ======================================== ==========================================
substring   (none: the paper's refusal phrases)      ``--judge substring``
phrases     ``phrases`` (list), ``name``             ``--judge "phrases:I can't,Je ne"``
regex       ``pattern``, ``ignore_case``, ``name``   ``--judge "regex:\\b(le|la)\\b"``
model       ``question``, ``model``                  ``--judge "model:Is the reply in French?"``
cjk         ``threshold`` (in (0, 1]), ``name``      ``--judge cjk`` or ``--judge cjk:0.3``
=========== ======================================== ==========================================

In the flag, phrases are separated by commas and stripped of surrounding spaces; a phrase that
holds a comma needs a concept file. The model judge's model is the run's ``--judge-model`` unless
the table names one.
"""

from __future__ import annotations

from typing import Any, Mapping

from cosmic_tl.judges import DEFAULT_CJK_THRESHOLD, CJKJudge, Judge, JudgeError, PhraseJudge, RegexJudge, SubstringJudge
from cosmic_tl.concepts.concept import ConceptError, ModelJudgeSpec

JUDGE_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "substring": {},
    "phrases": {"phrases": list, "name": str},
    "regex": {"pattern": str, "ignore_case": bool, "name": str},
    "model": {"question": str, "model": str},
    "cjk": {"threshold": (int, float), "name": str},
}
"""Each judge kind and the keys (with their types) its table may have."""

REQUIRED_KEYS = {"phrases": ("phrases",), "regex": ("pattern",), "model": ("question",)}


def judge_from_table(table: Any, where: str) -> Judge | ModelJudgeSpec:
    """The judge a ``[judge]`` table describes.

    Args:
        table: The parsed table (``{"kind": "regex", "pattern": "..."}``).
        where: Names the table in errors ("french.toml: [judge]").

    Raises:
        ConceptError: not a table, a missing or unknown ``kind``, a missing, unknown or mistyped
            key, or settings the judge rejects (a bad regex, an empty phrase list, a threshold
            outside (0, 1]).
    """
    if not isinstance(table, Mapping):
        raise ConceptError(f"{where} must be a table with a 'kind' key, got {type(table).__name__}.")
    kind = table.get("kind")
    if kind not in JUDGE_KEYS:
        problem = "has no 'kind' key" if kind is None else f"has unknown kind {kind!r}"
        raise ConceptError(f"{where} {problem}; use one of {', '.join(JUDGE_KEYS)}.")
    allowed = JUDGE_KEYS[kind]
    settings = {k: v for k, v in table.items() if k != "kind"}
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) or "none"
        raise ConceptError(f"{where}: unknown key {unknown[0]!r} for kind {kind!r}; valid keys: {valid}.")
    for key in REQUIRED_KEYS.get(kind, ()):
        if key not in settings:
            raise ConceptError(f"{where}: kind {kind!r} needs the key {key!r}.")
    for key, value in settings.items():
        if not isinstance(value, allowed[key]) or (isinstance(value, bool) and allowed[key] is not bool):
            raise ConceptError(f"{where}: key {key!r} has the wrong type ({type(value).__name__}: {value!r}).")
    try:
        return _build(kind, settings)
    except JudgeError as error:
        raise ConceptError(f"{where}: {error}") from None


def judge_from_spec(spec: str) -> Judge | ModelJudgeSpec:
    """The judge a ``--judge KIND[:ARGUMENT]`` flag describes (module docstring).

    Raises:
        ConceptError: an unknown kind, a missing or bad argument (the message quotes the flag).

    Example:
        >>> judge_from_spec("phrases:Je ne, désolé").phrases
        ('Je ne', 'désolé')
        >>> judge_from_spec("cjk:0.5").threshold
        0.5
    """
    where = f"--judge {spec!r}"
    kind, has_argument, argument = spec.partition(":")
    kind = kind.strip()
    if kind not in JUDGE_KEYS:
        raise ConceptError(f"{where}: unknown judge kind {kind!r}; use one of {', '.join(JUDGE_KEYS)}.")
    if kind in REQUIRED_KEYS and not argument.strip():
        example = {"phrases": "phrases:I can't,Je ne", "regex": "regex:PATTERN", "model": "model:Is the reply in French?"}
        raise ConceptError(f"{where}: kind {kind!r} needs an argument, e.g. --judge {example[kind]!r}.")
    if kind == "substring" and has_argument:
        raise ConceptError(f"{where}: the substring judge takes no argument (it uses the refusal phrases).")
    settings: dict[str, Any] = {}
    if kind == "phrases":
        settings["phrases"] = [p.strip() for p in argument.split(",")]
    elif kind == "regex":
        settings["pattern"] = argument
    elif kind == "model":
        settings["question"] = argument.strip()
    elif kind == "cjk" and has_argument:
        try:
            settings["threshold"] = float(argument)
        except ValueError:
            raise ConceptError(f"{where}: the CJK threshold must be a number in (0, 1], got {argument!r}.") from None
    try:
        return _build(kind, settings)
    except JudgeError as error:
        raise ConceptError(f"{where}: {error}") from None


def _build(kind: str, settings: dict[str, Any]) -> Judge | ModelJudgeSpec:
    if kind == "substring":
        return SubstringJudge()
    if kind == "phrases":
        return PhraseJudge(settings["phrases"], name=settings.get("name"))
    if kind == "regex":
        return RegexJudge(settings["pattern"], ignore_case=settings.get("ignore_case", False), name=settings.get("name"))
    if kind == "model":
        return ModelJudgeSpec(settings["question"], settings.get("model"))
    return CJKJudge(settings.get("threshold", DEFAULT_CJK_THRESHOLD), name=settings.get("name"))
