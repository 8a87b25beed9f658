"""Prompt datasets: the paper's shipped splits and benchmarks, user files, and seeded sampling.

The JSON files under ``cosmic_tl/data/`` are the COSMIC paper's prompt data, shipped verbatim;
``sources_text()`` returns their provenance and licences (``SOURCES.md``). ``sample_paper``
reproduces the paper's ``random.seed(42)`` sampling draw for draw.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import unicodedata
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from cosmic_tl.user_files import path_problem

SPLIT_NAMES: tuple[str, ...] = (
    "harmful_train",
    "harmful_val",
    "harmful_test",
    "harmless_train",
    "harmless_val",
    "harmless_test",
)
BENCHMARK_NAMES: tuple[str, ...] = (
    "advbench",
    "harmbench_val",
    "harmbench_test",
    "jailbreakbench",
    "malicious_instruct",
    "strongreject",
    "tdc2023",
)
USER_FILE_SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".csv", ".txt")
_FIELDS = ("instruction", "category")  # the record fields the loaders read

# The paper's sample fingerprints at full size (n_train=180, n_val=100, n_test=512, seed=42),
# copied from SOURCES.md so notebooks can check provenance without parsing it.
PAPER_FINGERPRINTS: dict[str, str] = {
    "harmful_train": "b0a6ae4477170e56",
    "harmless_train": "87a226a3d036e5c9",
    "harmful_val": "0eac4a7c95630271",
    "harmless_val": "6958ee426792ba05",
    "harmful_test": "4e90e5b7d7ceb8ef",
    "harmless_test": "1085deb30e14977a",
}

LICENCE_NOTICE = (
    "Prompt data shipped with cosmic_tl (see cosmic_tl.data.sources_text() for details): "
    "AdvBench (llm-attacks), HarmBench, JailbreakBench behaviours, StrongREJECT and TDC2023 "
    "red-teaming behaviours are MIT-licensed; MaliciousInstruct (Princeton-SysML "
    "Jailbreak_LLM) was released with its paper for research use; Alpaca (tatsu-lab) is "
    "CC BY-NC 4.0. Splits as used by COSMIC (Siu et al., ACL 2025 Findings, arXiv 2506.00085). "
    "Content warning: the harmful files contain requests for harmful content by design."
)

_DATA_PACKAGE = "cosmic_tl"


# Characters that render as nothing but are not classed as whitespace (Hangul fillers, braille blank).
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: only whitespace, zero-width or other format/control characters.

    ``"\u200b\u200b"`` (zero-width spaces), ``"\ufeff"`` (a BOM) and ``" \t\n"`` are blank;
    any letter, digit, punctuation or emoji makes it non-blank.
    """
    return all(
        ch.isspace() or ch in _INVISIBLE_LETTERS or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")
        for ch in text
    )


class DatasetError(ValueError):
    """A dataset name, file or record is unusable; the message names the problem."""


class DuplicateInstructionWarning(UserWarning):
    """A user dataset repeats an instruction (kept, but probably unintended)."""


@dataclass(frozen=True)
class Prompt:
    """One instruction and its optional category label (e.g. a JailbreakBench category)."""

    instruction: str
    category: str | None = None


@dataclass
class PaperSample:
    """The train/val/test samples the paper's pipeline draws from the six splits.

    Train and val hold bare instruction strings (as the paper's pipeline does); test keeps
    the full prompts so per-category results remain possible. Every function that takes
    instructions (``candidate_directions``, ``generate_completions``, ``ChatModel.tokenize``)
    accepts both, so ``sample.harmful_test`` can be passed as it is.
    """

    harmful_train: list[str]
    harmless_train: list[str]
    harmful_val: list[str]
    harmless_val: list[str]
    harmful_test: list[Prompt]
    harmless_test: list[Prompt]
    seed: int

    def instructions(self) -> dict[str, list[str]]:
        """Instruction strings of every sample, keyed by split name, in draw order."""
        return {
            "harmful_train": self.harmful_train,
            "harmless_train": self.harmless_train,
            "harmful_val": self.harmful_val,
            "harmless_val": self.harmless_val,
            "harmful_test": [p.instruction for p in self.harmful_test],
            "harmless_test": [p.instruction for p in self.harmless_test],
        }

    @property
    def sizes(self) -> dict[str, int]:
        """Number of prompts in each sample, keyed by split name."""
        return {name: len(items) for name, items in self.instructions().items()}

    def fingerprints(self) -> dict[str, str]:
        """sha256 of ``json.dumps(instruction strings)``, first 16 hex digits, per sample.

        At the paper's sizes and seed these equal ``PAPER_FINGERPRINTS`` (SOURCES.md).
        """
        return {name: fingerprint(items) for name, items in self.instructions().items()}


def fingerprint(instructions: list[str]) -> str:
    """SOURCES.md's fingerprint: sha256 of ``json.dumps`` (default separators), 16 hex digits."""
    return hashlib.sha256(json.dumps(instructions).encode("utf-8")).hexdigest()[:16]


def sources_text() -> str:
    """The provenance, sampling and licence notes of the shipped data (``SOURCES.md``)."""
    return files(_DATA_PACKAGE).joinpath("data", "SOURCES.md").read_text(encoding="utf-8")


def load_split(name: str) -> list[Prompt]:
    """Load one of the paper's experiment splits (see ``SPLIT_NAMES``), verbatim."""
    if name not in SPLIT_NAMES:
        raise DatasetError(f"Unknown split {name!r}; valid splits: {', '.join(SPLIT_NAMES)}.")
    return list(_load_shipped("splits", name))


def load_benchmark(name: str) -> list[Prompt]:
    """Load one of the whole shipped benchmarks (see ``BENCHMARK_NAMES``), verbatim."""
    if name not in BENCHMARK_NAMES:
        raise DatasetError(
            f"Unknown benchmark {name!r}; valid benchmarks: {', '.join(BENCHMARK_NAMES)}."
        )
    return list(_load_shipped("processed", name))


def load_prompts(source: str | os.PathLike[str]) -> list[Prompt]:
    """Load prompts from a split name, a benchmark name, or a user file.

    A user file is JSON (a list of objects), JSONL (one object per line), CSV (with a
    header row) or TXT (one instruction per line; blank lines skipped, lines stripped); every record needs a string ``instruction`` that shows something (not only
    whitespace or zero-width characters, see :func:`is_blank`) and may have a ``category``
    (string or null; an empty CSV cell means none). Other fields are ignored. A record that
    repeats ``instruction`` or ``category`` (two CSV columns, a repeated JSON key) is refused:
    one copy would be dropped silently. Duplicate instructions in a user file are kept, with a
    ``DuplicateInstructionWarning``.

    Raises:
        DatasetError: unknown name, missing or unreadable file, malformed content, an empty
            dataset, or a bad record (the message names the file and the first bad record).
    """
    if isinstance(source, str) and source in SPLIT_NAMES:
        return load_split(source)
    if isinstance(source, str) and source in BENCHMARK_NAMES:
        return load_benchmark(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a dataset name or a path, got {type(source).__name__}."
        )
    path = Path(source)
    looks_like_path = not isinstance(source, str) or path.suffix or os.sep in source
    if not path.exists() and not looks_like_path:
        raise DatasetError(
            f"Unknown dataset {source!r}. Valid names: splits {', '.join(SPLIT_NAMES)}; "
            f"benchmarks {', '.join(BENCHMARK_NAMES)}. A path to a "
            f"{'/'.join(USER_FILE_SUFFIXES)} file is also accepted."
        )
    prompts = _load_user_file(path)
    _warn_on_duplicates(prompts, path)
    return prompts


def check_sample_sizes(n_train, n_val, n_test, seed) -> dict[str, int]:
    """``{"train": n_train, "val": n_val, "test": n_test}`` after checking the sizes are ints >= 0
    and the seed an int (bools refused), with a one-line error naming the argument."""
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for kind, n in sizes.items():
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"n_{kind} must be an int, got {type(n).__name__}.")
        if n < 0:
            raise ValueError(f"n_{kind} must be >= 0, got {n}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    return sizes


def sample_paper(
    n_train: int = 180, n_val: int = 100, n_test: int = 512, seed: int = 42
) -> PaperSample:
    """Draw the paper's train/val/test samples with its exact seeded procedure.

    Equivalent to ``random.seed(seed)`` followed by ``random.sample`` on, in order,
    harmful_train, harmless_train (n_train each), harmful_val, harmless_val (n_val each),
    harmful_test, harmless_test (n_test each), but on a private ``random.Random`` so the
    global random state is untouched. Smaller sizes run the same procedure ("quick" runs).

    Raises:
        TypeError: a size or the seed is not an int.
        ValueError: a size is negative.
        DatasetError: a size exceeds the split it is drawn from.
    """
    sizes = check_sample_sizes(n_train, n_val, n_test, seed)

    draw_order = [f"{cls}_{kind}" for kind in sizes for cls in ("harmful", "harmless")]
    splits = {name: _load_shipped("splits", name) for name in draw_order}
    # Check every size before drawing, so a bad request fails before any work is done.
    for name in draw_order:
        n, available = sizes[name.rsplit("_", 1)[1]], len(splits[name])
        if n > available:
            raise DatasetError(
                f"Cannot sample {n} prompts from split {name!r}: it has only {available}; "
                f"use n_{name.rsplit('_', 1)[1]} <= {available}."
            )

    rng = random.Random(seed)
    drawn = {name: rng.sample(splits[name], sizes[name.rsplit("_", 1)[1]]) for name in draw_order}
    return PaperSample(
        harmful_train=[p.instruction for p in drawn["harmful_train"]],
        harmless_train=[p.instruction for p in drawn["harmless_train"]],
        harmful_val=[p.instruction for p in drawn["harmful_val"]],
        harmless_val=[p.instruction for p in drawn["harmless_val"]],
        harmful_test=drawn["harmful_test"],
        harmless_test=drawn["harmless_test"],
        seed=seed,
    )


@lru_cache(maxsize=None)
def _load_shipped(folder: str, name: str) -> tuple[Prompt, ...]:
    """Read a shipped JSON file once; a tuple so callers cannot mutate the cache."""
    resource = files(_DATA_PACKAGE).joinpath("data", folder, f"{name}.json")
    records = json.loads(resource.read_text(encoding="utf-8"))
    where = f"shipped {folder}/{name}.json"
    return tuple(_to_prompt(record, index, where) for index, record in enumerate(records))


def _load_user_file(path: Path) -> list[Prompt]:
    """Parse a JSON/JSONL/CSV/TXT user file into prompts, validating every record."""
    problem = path_problem(path)
    if problem == "does not exist":
        raise DatasetError(f"Dataset file not found: {path}")
    if problem is not None:  # a FIFO would block and /dev/zero never ends: never opened
        raise DatasetError(f"Dataset file {path} {problem}; give a {'/'.join(USER_FILE_SUFFIXES)} file.")
    suffix = path.suffix.lower()
    if suffix not in USER_FILE_SUFFIXES:
        raise DatasetError(
            f"{path}: unsupported file type {path.suffix!r}; use one of "
            f"{', '.join(USER_FILE_SUFFIXES)}."
        )
    try:
        # utf-8-sig: tolerate the byte-order mark that spreadsheet exports often add.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start}).")
    readers = {".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv, ".txt": _read_txt}
    located_records = readers[suffix](text, path)
    if not located_records:
        raise DatasetError(f"{path}: the dataset is empty (no records).")
    return [
        _to_prompt(record, index, f"{path}{location}")
        for index, (record, location) in enumerate(located_records)
    ]


def _refuse_repeated(names: list, path: Path, where: str, noun: str) -> None:
    """DatasetError if a field the loader reads appears twice (one copy would be dropped silently)."""
    for field_name in _FIELDS:
        if names.count(field_name) > 1:
            raise DatasetError(
                f"{path}: {where} {names.count(field_name)} {field_name!r} {noun}; keep one "
                "(otherwise one would be used and the other dropped silently)."
            )


def _object_without_repeats(path: Path):
    """A json ``object_pairs_hook`` that refuses an object repeating ``instruction``/``category``."""

    def hook(pairs: list[tuple[str, object]]) -> dict:
        _refuse_repeated([k for k, _ in pairs], path, "a record has", "keys")
        return dict(pairs)

    return hook


def _read_json(text: str, path: Path) -> list[tuple[object, str]]:
    try:
        records = json.loads(text, object_pairs_hook=_object_without_repeats(path))
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}."
        ) from None
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply to read; a prompt file is a list of objects.") from None
    if not isinstance(records, list):
        raise DatasetError(
            f"{path}: expected a JSON list of objects, got a {type(records).__name__}."
        )
    return [(record, "") for record in records]


def _read_jsonl(text: str, path: Path) -> list[tuple[object, str]]:
    located = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing newline) are not records
        try:
            located.append((json.loads(line, object_pairs_hook=_object_without_repeats(path)),
                            f" (line {line_number})"))
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{path}: malformed JSON on line {line_number}, column {error.colno}: {error.msg}."
            ) from None
        except RecursionError:
            raise DatasetError(
                f"{path}: line {line_number} is JSON nested too deeply to read; each line is one object."
            ) from None
    return located


def _read_txt(text: str, path: Path) -> list[tuple[object, str]]:
    """One instruction per non-blank line (:func:`is_blank`), stripped."""
    return [({"instruction": line.strip()}, f" (line {number})")
            for number, line in enumerate(text.splitlines(), start=1) if not is_blank(line)]


def _read_csv(text: str, path: Path) -> list[tuple[object, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    located = []
    try:
        _refuse_repeated(reader.fieldnames or [], path, "the CSV header has", "columns")
        for row in reader:
            if None in row:  # DictReader files surplus cells under the key None
                raise DatasetError(
                    f"{path}: malformed CSV on line {reader.line_num}: "
                    f"more cells than the {len(reader.fieldnames or [])} header columns."
                )
            # An empty CSV cell is how a spreadsheet says "no category".
            if row.get("category") == "":
                row["category"] = None
            located.append((row, f" (line {reader.line_num})"))
    except csv.Error as error:
        raise DatasetError(f"{path}: malformed CSV on line {reader.line_num}: {error}.") from None
    if located and "instruction" not in (reader.fieldnames or []):
        raise DatasetError(
            f"{path}: record 0{located[0][1]} has no 'instruction' field; the CSV header has "
            f"columns {reader.fieldnames}."
        )
    return located


def _to_prompt(record: object, index: int, where: str) -> Prompt:
    """Validate one record; ``where`` names the file (and line) for the error message."""
    prefix = f"{where}: record {index}"
    if not isinstance(record, dict):
        raise DatasetError(f"{prefix} is not an object (got {type(record).__name__}).")
    if "instruction" not in record:
        raise DatasetError(f"{prefix} has no 'instruction' field (fields: {sorted(record)}).")
    instruction = record["instruction"]
    if not isinstance(instruction, str):
        raise DatasetError(
            f"{prefix}: 'instruction' must be a string, got {type(instruction).__name__}."
        )
    if is_blank(instruction):
        raise DatasetError(
            f"{prefix}: 'instruction' is empty or invisible (only whitespace or zero-width characters: "
            f"{instruction!r:.60}); remove that record."
        )
    category = record.get("category")
    if category is not None and not isinstance(category, str):
        raise DatasetError(
            f"{prefix}: 'category' must be a string or null, got {type(category).__name__}."
        )
    return Prompt(instruction=instruction, category=category)


def _warn_on_duplicates(prompts: list[Prompt], path: Path) -> None:
    first_index: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for index, prompt in enumerate(prompts):
        if prompt.instruction in first_index:
            repeats.append((index, first_index[prompt.instruction]))
        else:
            first_index[prompt.instruction] = index
    if repeats:
        index, original = repeats[0]
        warnings.warn(
            f"{path}: {len(repeats)} duplicate instruction(s) kept; first: record {index} "
            f"repeats record {original}.",
            DuplicateInstructionWarning,
            stacklevel=3,
        )
