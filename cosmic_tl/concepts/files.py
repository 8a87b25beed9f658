"""Concept files: a concept written as TOML (``cosmic-tl run --concept FILE.toml``).

Example (``french.toml``; paths are relative to the file, shipped split names work too)::

    name = "french"
    positive = "asks_french.jsonl"     # one pool, sampled into train / val / test
    negative = "plain.txt"             # or a [negative] table with train, val and test files

    [judge]
    kind = "model"                     # substring | phrases | regex | model | cjk
    question = "Is the reply in French?"

    [labels]                           # all optional
    positive = "asks for French"
    negative = "plain"
    judged = "French reply"
    positive_key = "french"            # names in run files
    negative_key = "plain"

    [expect]                           # optional; these are the defaults
    ablation = "lower"                 # ablation on positive prompts lowers the judged rate
    addition = "raise"                 # addition on negative prompts raises it

A paired concept gives ``base`` (a file or a [base] table) and ``positive_suffix`` instead of
``positive`` and ``negative``: positive = every base instruction + the suffix, negative = the
base instruction as is. The judge tables are described in :mod:`cosmic_tl.concepts.judge_specs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from cosmic_tl.data import BENCHMARK_NAMES, SPLIT_NAMES, DatasetError
from cosmic_tl.user_files import path_problem
from cosmic_tl.concepts.concept import Concept, ConceptError, ConceptLabels, suffix_concept
from cosmic_tl.concepts.judge_specs import judge_from_table
from cosmic_tl.concepts.prompt_sets import SPLIT_KINDS, PromptSet, prompt_set

TOP_KEYS = ("name", "positive", "negative", "base", "positive_suffix", "judge", "labels", "expect")
LABEL_KEYS = ("positive", "negative", "judged", "positive_key", "negative_key")
EXPECT_KEYS = ("ablation", "addition")


def load_concept(path: str | Path) -> Concept:
    """Read a concept file (module docstring), checking every key before loading any prompts.

    Args:
        path: The ``.toml`` file.

    Returns:
        The concept, its prompts loaded and validated.

    Raises:
        ConceptError: a missing or unparsable file, a missing, unknown or mistyped key, a bad
            judge, a missing or malformed prompt file (the prompt loader's message, prefixed with
            the concept file and the key). Every message is one line naming the file and the key.
    """
    path = Path(path)
    data = _read_toml(path)
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConceptError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(TOP_KEYS)}.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConceptError(f"{path}: key 'name' must be a non-empty string, got {name!r}.")
    if "judge" not in data:
        raise ConceptError(f"{path}: missing key 'judge' (a [judge] table with a 'kind').")
    judge = judge_from_table(data["judge"], f"{path}: [judge]")
    fields = {"labels": _labels(data, path), **_expect(data, path), "origin": str(path)}
    paired = "base" in data or "positive_suffix" in data
    if paired:
        _require(data, path, ("base", "positive_suffix"), forbidden=("positive", "negative"), why="a paired concept")
        suffix = data["positive_suffix"]
        if not isinstance(suffix, str) or not suffix.strip():
            raise ConceptError(f"{path}: key 'positive_suffix' must be a non-empty string, got {suffix!r}.")
        return suffix_concept(name, _prompts(data, "base", path), suffix, judge, **fields)
    _require(data, path, ("positive", "negative"), forbidden=(), why="a concept")
    return Concept(name, _prompts(data, "positive", path), _prompts(data, "negative", path), judge, **fields)


def _read_toml(path: Path) -> dict[str, Any]:
    problem = path_problem(path)
    if problem is not None:  # a FIFO would block, a device never ends: never opened
        hint = "pass the .toml file" if problem == "is a folder" else "pass a .toml file"
        raise ConceptError(f"Concept file {path} {problem}; {hint}.")
    try:
        # utf-8-sig: a byte-order mark (some editors add one) is not TOML, and not an error either.
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ConceptError(f"Concept file {path} is not valid UTF-8 (byte {error.start}).") from None
    except tomllib.TOMLDecodeError as error:
        raise ConceptError(f"Concept file {path} is not valid TOML: {error}.") from None
    except RecursionError:
        raise ConceptError(f"Concept file {path} is nested too deeply to read (arrays or tables inside each "
                           "other thousands of times); a concept file is a few keys and tables.") from None
    except OSError as error:
        raise ConceptError(f"Concept file {path} cannot be read: {error.strerror or error}.") from None


def _require(data: dict, path: Path, keys: tuple[str, ...], forbidden: tuple[str, ...], why: str) -> None:
    for key in keys:
        if key not in data:
            raise ConceptError(f"{path}: missing key {key!r} ({why} needs {' and '.join(repr(k) for k in keys)}).")
    for key in forbidden:
        if key in data:
            raise ConceptError(
                f"{path}: key {key!r} cannot be combined with 'base' / 'positive_suffix' "
                "(a paired concept makes its positive and negative prompts from 'base')."
            )


def _prompts(data: dict, key: str, path: Path) -> PromptSet:
    """The prompt set of ``key``: one source, or a table with train, val and test sources."""
    value = data[key]
    try:
        if isinstance(value, dict):
            extra = sorted(set(value) - set(SPLIT_KINDS))
            missing = [kind for kind in SPLIT_KINDS if kind not in value]
            if extra or missing:
                problem = f"unknown key {extra[0]!r}" if extra else f"missing key {missing[0]!r}"
                raise ConceptError(f"{path}: [{key}] {problem}; a split table has exactly train, val and test.")
            return prompt_set({kind: _source(value[kind], path, f"{key}.{kind}") for kind in SPLIT_KINDS})
        return prompt_set(_source(value, path, key))
    except ConceptError:
        raise
    except DatasetError as error:
        raise ConceptError(f"{path}: key {key!r}: {error}") from None


def _source(value: Any, path: Path, key: str) -> str | Path:
    """A shipped dataset name as is; any other string is a file relative to the concept file."""
    if not isinstance(value, str) or not value.strip():
        raise ConceptError(f"{path}: key {key!r} must be a file path or a shipped dataset name, got {value!r}.")
    if value in SPLIT_NAMES or value in BENCHMARK_NAMES:
        return value
    return path.parent / Path(value).expanduser()


def _labels(data: dict, path: Path) -> ConceptLabels:
    table = _table(data, "labels", LABEL_KEYS, path)
    try:
        return ConceptLabels(**table)
    except ConceptError as error:
        raise ConceptError(f"{path}: [labels] {error}") from None


def _expect(data: dict, path: Path) -> dict[str, str]:
    table = _table(data, "expect", EXPECT_KEYS, path)
    for key, value in table.items():
        if value not in ("lower", "raise"):
            raise ConceptError(f"{path}: [expect] key {key!r} must be \"lower\" or \"raise\", got {value!r}.")
    return {f"{key}_effect": value for key, value in table.items()}


def _table(data: dict, key: str, allowed: tuple[str, ...], path: Path) -> dict:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConceptError(f"{path}: key {key!r} must be a table ([{key}]), got {type(table).__name__}.")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConceptError(f"{path}: [{key}] unknown key {unknown[0]!r}; valid keys: {', '.join(allowed)}.")
    return table
