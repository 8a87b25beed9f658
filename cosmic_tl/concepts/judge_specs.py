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

Adding a judge kind is one :class:`JudgeKind` entry in :data:`JUDGE_KINDS`: the concept files, the
``--judge`` flag (and its help), ``RunConfig.judge`` and TOML run configs all read that table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from cosmic_tl.judges import DEFAULT_CJK_THRESHOLD, CJKJudge, Judge, JudgeError, PhraseJudge, RegexJudge, SubstringJudge
from cosmic_tl.concepts.concept import ConceptError, ModelJudgeSpec

Settings = dict[str, Any]


@dataclass(frozen=True)
class JudgeKind:
    """One judge kind of concept files and ``--judge`` flags.

    Attributes:
        build: The judge (or :class:`ModelJudgeSpec`) from checked settings.
        keys: The table keys besides ``kind``, with their types.
        required: The keys a table must have; a flag must then give an argument.
        argument: The settings a flag's argument gives (raises ValueError with the reason for a bad
            one); None: the kind takes no argument.
        usage: The flag as ``--judge`` help shows it (``"phrases:A,B"``).
    """

    build: Callable[[Settings], Judge | ModelJudgeSpec]
    keys: dict[str, type | tuple[type, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    argument: Callable[[str], Settings] | None = None
    usage: str = ""


def _threshold(argument: str) -> Settings:
    try:
        return {"threshold": float(argument)}
    except ValueError:
        raise ValueError(f"the CJK threshold must be a number in (0, 1], got {argument!r}.") from None


JUDGE_KINDS: dict[str, JudgeKind] = {
    "substring": JudgeKind(lambda s: SubstringJudge(), usage="substring"),
    "phrases": JudgeKind(
        lambda s: PhraseJudge(s["phrases"], name=s.get("name")), {"phrases": list, "name": str}, ("phrases",),
        lambda a: {"phrases": [p.strip() for p in a.split(",")]}, "phrases:A,B"),
    "regex": JudgeKind(
        lambda s: RegexJudge(s["pattern"], ignore_case=s.get("ignore_case", False), name=s.get("name")),
        {"pattern": str, "ignore_case": bool, "name": str}, ("pattern",), lambda a: {"pattern": a}, "regex:PATTERN"),
    "model": JudgeKind(
        lambda s: ModelJudgeSpec(s["question"], s.get("model")), {"question": str, "model": str}, ("question",),
        lambda a: {"question": a.strip()}, "model:QUESTION"),
    "cjk": JudgeKind(
        lambda s: CJKJudge(s.get("threshold", DEFAULT_CJK_THRESHOLD), name=s.get("name")),
        {"threshold": (int, float), "name": str}, (), _threshold, "cjk[:THRESHOLD]"),
}
"""Every judge kind by name (module docstring)."""


def judge_usage() -> str:
    """The ``--judge`` forms, for help texts: ``"substring | phrases:A,B | ..."``."""
    return " | ".join(kind.usage or name for name, kind in JUDGE_KINDS.items())


def _kind(name: Any, where: str, problem: str) -> JudgeKind:
    if name not in JUDGE_KINDS:
        raise ConceptError(f"{where} {problem}; use one of {', '.join(JUDGE_KINDS)}.")
    return JUDGE_KINDS[name]


def _build(kind: JudgeKind, settings: Settings, where: str) -> Judge | ModelJudgeSpec:
    try:
        return kind.build(settings)
    except JudgeError as error:
        raise ConceptError(f"{where}: {error}") from None


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
    name = table.get("kind")
    kind = _kind(name, where, "has no 'kind' key" if name is None else f"has unknown kind {name!r}")
    settings = {k: v for k, v in table.items() if k != "kind"}
    unknown = sorted(set(settings) - set(kind.keys))
    if unknown:
        valid = ", ".join(kind.keys) or "none"
        raise ConceptError(f"{where}: unknown key {unknown[0]!r} for kind {name!r}; valid keys: {valid}.")
    for key in kind.required:
        if key not in settings:
            raise ConceptError(f"{where}: kind {name!r} needs the key {key!r}.")
    for key, value in settings.items():
        expected = kind.keys[key]
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise ConceptError(f"{where}: key {key!r} has the wrong type ({type(value).__name__}: {value!r}).")
    return _build(kind, settings, where)


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
    name, has_argument, argument = spec.partition(":")
    name = name.strip()
    kind = _kind(name, f"{where}:", f"unknown judge kind {name!r}")
    if kind.required and not argument.strip():
        raise ConceptError(f"{where}: kind {name!r} needs an argument, e.g. --judge {kind.usage!r}.")
    if not has_argument:
        return _build(kind, {}, where)
    if kind.argument is None:
        raise ConceptError(f"{where}: the {name} judge takes no argument.")
    try:
        settings = kind.argument(argument)
    except ValueError as error:
        raise ConceptError(f"{where}: {error}") from None
    return _build(kind, settings, where)
