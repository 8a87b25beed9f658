"""A run's settings, typed and checked; presets; TOML config files.

The method's defaults are defined once, by the method modules (:mod:`cosmic_tl.selection.cosmic`,
:mod:`cosmic_tl.selection.refusal_token`, :mod:`cosmic_tl.similarity`, :mod:`cosmic_tl.steering`);
:class:`RunConfig` reads them from there. A :class:`RunConfig` fully describes a pipeline run. Its
:meth:`~RunConfig.fingerprint` covers every field that can change a result, so a run folder is only
ever resumed by the same configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from cosmic_tl.checks import (  # noqa: F401  (DTYPES, MAX_ABS_ALPHA, ... are part of this module's API)
    DEVICE_CHOICES,
    DTYPE_ALIASES,
    DTYPES,
    MAX_ABS_ALPHA,
    ConfigError,
    alpha_value,
    boolean,
    canonical_dtype,
    check_device,
    choice,
    integer,
    non_negative,
    real_in_range,
    text,
)
from cosmic_tl.selection.cosmic import KL_THRESHOLD, PRUNE_FRACTION
from cosmic_tl.selection.refusal_token import REFUSAL_TOKEN_VARIANTS
from cosmic_tl.shipped import DEFAULT_MODEL
from cosmic_tl.similarity import EVAL_LAYER_FRACTION
from cosmic_tl.steering import steering_names
from cosmic_tl.user_files import path_problem


@dataclass(frozen=True)
class Preset:
    """Dataset sizes and generation length.

    Attributes:
        n_train: Prompts per class for the candidate directions and L_low.
        n_val: Prompts per class for selection.
        n_test: Prompts per class for the evaluation completions.
        max_new_tokens: Generated tokens per completion.
        layer_stride: Score candidates at every ``layer_stride``-th layer (1 = all, as the paper).
        n_truthfulqa: TruthfulQA questions of the capability check (790 = all; 0 = skip it).
    """

    n_train: int
    n_val: int
    n_test: int
    max_new_tokens: int
    layer_stride: int = 1
    n_truthfulqa: int = 790


PRESETS = {
    # The paper's sizes (docs/method.md §7).
    "paper": Preset(n_train=180, n_val=100, n_test=512, max_new_tokens=512, n_truthfulqa=790),
    # The main job (`make demo`, with --steering lce --system default; README, "The demo"): 128+128
    # train prompts (32 give a noisier direction whose ablation leaves more refusals), large test
    # sets, 128-token replies (verdicts are read at 16, 32, 64 and 128 tokens and must hold at 128),
    # every 4th layer.
    "demo": Preset(n_train=128, n_val=16, n_test=64, max_new_tokens=128, layer_stride=4, n_truthfulqa=100),
    # The experiments' default: minutes each on the default model on 2 CPU cores.
    "quick": Preset(n_train=32, n_val=16, n_test=24, max_new_tokens=48, layer_stride=2, n_truthfulqa=100),
    # Smoke runs (CI, notebooks in CI, tiny models): minutes.
    "tiny": Preset(n_train=8, n_val=6, n_test=6, max_new_tokens=12, layer_stride=4, n_truthfulqa=8),
}

SELECTION = ("cosmic", "refusal-token")
SYSTEM_CHOICES = "none | default | any other text (used as the system prompt)"


def steering_choices() -> tuple[str, ...]:
    """The registered steering rules (:data:`cosmic_tl.steering.STEERING_RULES`), read when asked,
    so a rule registered after import is a valid ``steering`` value and ``--steering`` choice."""
    return steering_names()


def _steering_choice(name: str, value: Any) -> str:
    return choice(steering_choices())(name, value)


@dataclass(frozen=True)
class RunConfig:
    """One pipeline run.

    Attributes:
        model: Shipped short name, Hugging Face id, local folder or ``.gguf`` file.
        steering: A rule of :data:`cosmic_tl.steering.STEERING_RULES`: ``"ace"`` (affine, the
            default, the table's first) or ``"lce"`` (linear), or any rule registered there.
        selection: ``"cosmic"`` or ``"refusal-token"`` (the baseline of Arditi et al.).
        preset: ``"demo"``, ``"quick"``, ``"paper"`` or ``"tiny"`` (:data:`PRESETS`); the size fields
            ``n_train``, ``n_val``, ``n_test``, ``max_new_tokens``, ``layer_stride`` and
            ``n_truthfulqa`` (0 skips the TruthfulQA check) override it when set.
        system: ``"none"`` (no system turn, the paper's setting), ``"default"`` (the template's
            own, e.g. "You are Qwen…") or a system prompt.
        seed: Seed of the paper's sampling procedure.
        refusal_token_variant: ``"cosmic-repo"`` or ``"arditi"`` (also filters data by refusal
            score), the refusal-token selection's variant.
        alpha: Coefficient of the addition used for evaluation, |alpha| <= :data:`MAX_ABS_ALPHA`.
        kl_threshold: KL filter (>= 0); prune_fraction: share of last layers left out, in [0, 1);
            eval_layer_fraction: share of layers in L_low, in (0, 1] (docs/method.md §2, §4).
        parity_inplace: Reproduce the authors' in-place LCE read-outs (docs/method.md §8).
        batch_size, gen_batch_size: Prompts per forward pass / per generation batch.
        dtype: One of :data:`DTYPES`; aliases such as ``"bf16"`` are stored under the full name.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, which must exist on this machine
            (None = CUDA if available).
        judge_model: Also judge completions with this chat model (None: the concept's judge only).
        concept, positive, negative, positive_suffix, judge, concept_name: What the positive and
            negative prompts contrast (:data:`CONCEPT_FIELDS`, the ``cosmic-tl run`` concept flags,
            see :func:`cosmic_tl.concepts.concept_from_options`); all None: the paper's refusal.
            Existing files among ``concept``, ``positive`` and ``negative`` are stored as absolute
            paths, so a run resumed from another directory reads the same files.

    Every field is checked on construction, before any file or folder is touched: a wrong type
    (a string for a number, a bool for an int, a number for a name) or a value out of range
    raises a one-line :class:`ConfigError` naming the field, the expected type and range.
    """

    model: str = DEFAULT_MODEL
    steering: str = steering_names()[0]
    selection: str = "cosmic"
    preset: str = "quick"
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    max_new_tokens: int | None = None
    layer_stride: int | None = None
    n_truthfulqa: int | None = None
    system: str = "none"
    seed: int = 42
    refusal_token_variant: str = next(iter(REFUSAL_TOKEN_VARIANTS))
    alpha: float = 1.0
    kl_threshold: float = KL_THRESHOLD
    prune_fraction: float = PRUNE_FRACTION
    eval_layer_fraction: float = EVAL_LAYER_FRACTION
    parity_inplace: bool = True
    batch_size: int = 16
    gen_batch_size: int = 16
    dtype: str = "float32"
    device: str | None = None
    judge_model: str | None = None
    concept: str | None = None
    positive: str | None = None
    negative: str | None = None
    positive_suffix: str | None = None
    judge: str | None = None
    concept_name: str | None = None

    def __post_init__(self):
        for name, check in _FIELD_CHECKS.items():
            value = check(name, getattr(self, name))
            if value is not getattr(self, name):  # a normalised spelling, e.g. dtype "bf16"
                object.__setattr__(self, name, value)
        for name in ("concept", "positive", "negative"):
            value = getattr(self, name)
            if value is not None and Path(value).is_file():
                object.__setattr__(self, name, str(Path(value).resolve()))

    @property
    def concept_options(self) -> dict[str, str]:
        """The concept fields that are set (empty: the paper's refusal concept)."""
        return {name: getattr(self, name) for name in CONCEPT_FIELDS if getattr(self, name) is not None}

    def build_concept(self):
        """The :class:`~cosmic_tl.concepts.Concept` of the concept fields (refusal when none is set).

        Raises:
            ConceptError: a bad concept, concept file, prompt file or judge (one line naming it).
        """
        from cosmic_tl.concepts import concept_from_options

        return concept_from_options(**self.concept_options)

    @property
    def sizes(self) -> Preset:
        """The preset with explicit overrides applied."""
        p = PRESETS[self.preset]
        over = {f: getattr(self, f) for f in SIZE_FIELDS}
        return dataclasses.replace(p, **{k: v for k, v in over.items() if v is not None})

    @property
    def system_prompt(self) -> str | None:
        """The ``system=`` argument for :func:`cosmic_tl.load_model`."""
        return None if self.system == "none" else self.system

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["resolved_sizes"] = dataclasses.asdict(self.sizes)
        return d

    def fingerprint(self, concept=None) -> str:
        """A hash of every field that can change a result (``device`` is excluded).

        Args:
            concept: The run's :class:`~cosmic_tl.concepts.Concept` (default: the one the concept
                fields describe). Its :meth:`~cosmic_tl.concepts.Concept.describe` (sources and a
                hash of every split) is hashed instead of the concept fields, so edited prompt files
                give another fingerprint, while the paper's refusal concept, however it was named,
                hashes as no concept (one fingerprint for one refusal run).
        """
        d = self.to_dict()
        d.pop("device")
        if d["n_truthfulqa"] is None:  # unset (the preset's value) hashes as absent
            d.pop("n_truthfulqa")
        for name in CONCEPT_FIELDS:
            d.pop(name)
        if concept is None and self.concept_options:
            concept = self.build_concept()
        if concept is not None:
            from cosmic_tl.concepts import refusal_concept

            description = concept.describe()
            if description != refusal_concept().describe():
                d["concept"] = description
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "RunConfig":
        """Load a TOML file whose keys are RunConfig fields; ``overrides`` win over the file.

        The fields are either all top-level or all under one ``[run]`` table; a file mixing the two
        is refused (the top-level keys would otherwise be dropped silently). Relative file paths in
        ``concept``, ``positive`` and ``negative`` are relative to the config file's folder (as in a
        concept file), not to the working directory; ``overrides`` (command-line flags) are not.

        Raises:
            ConfigError: a missing or invalid file, unknown keys, or an invalid value (named).
        """
        path = Path(path)
        problem = path_problem(path)
        if problem == "does not exist":
            raise ConfigError(f"Config file {path} does not exist.")
        if problem is not None:  # a FIFO would block, a device never ends: never opened
            raise ConfigError(f"Config file {path} is not a readable TOML text file: it {problem}.")
        try:
            # utf-8-sig: a byte-order mark (some editors add one) is not TOML, and not an error either.
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as e:
            raise ConfigError(f"Config file {path} is not a readable TOML text file: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"Config file {path} is not valid TOML: {e}") from None
        except RecursionError:
            raise ConfigError(f"Config file {path} is nested too deeply to read; a run config is a few "
                              "top-level keys (or one [run] table).") from None
        except OSError as e:
            raise ConfigError(f"Config file {path} cannot be read: {e.strerror or e}.") from None
        if "run" in data:
            extra = sorted(set(data) - {"run"})
            if not isinstance(data["run"], dict):
                raise ConfigError(f"Config file {path}: 'run' must be a [run] table of RunConfig fields.")
            if extra:
                raise ConfigError(
                    f"Config file {path} has a [run] table and also top-level keys ({', '.join(extra)}), "
                    "which would be ignored; move them under [run] (or drop the [run] header)."
                )
            data = data["run"]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown keys in {path}: {', '.join(unknown)}. Valid keys: {', '.join(sorted(known))}.")
        for name in ("concept", "positive", "negative"):
            if isinstance(data.get(name), str):
                data[name] = _beside(path, data[name], name)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


def _beside(config_file: Path, value: str, name: str) -> str:
    """A file path in a config file, relative to that file's folder; names (a built-in concept, a
    shipped prompt set) and absolute paths as they are. A value is taken for a path when it has a
    suffix or a folder part, or names a file beside the config file."""
    from cosmic_tl.concepts import BUILTIN_CONCEPTS
    from cosmic_tl.data import BENCHMARK_NAMES, SPLIT_NAMES

    names = BUILTIN_CONCEPTS if name == "concept" else (*SPLIT_NAMES, *BENCHMARK_NAMES)
    given = Path(value).expanduser()
    if value in names or not value.strip():
        return value
    if given.is_absolute():
        return str(given)
    beside = config_file.parent / given
    if given.suffix or len(given.parts) > 1 or beside.exists():
        return str(beside.resolve())
    return value


SIZE_FIELDS = ("n_train", "n_val", "n_test", "max_new_tokens", "layer_stride", "n_truthfulqa")
"""The fields that override the preset's sizes (None: the preset's)."""

CONCEPT_FIELDS = ("concept", "positive", "negative", "positive_suffix", "judge", "concept_name")
"""The concept fields (the ``dest``s of :func:`cosmic_tl.concepts.add_concept_arguments`)."""

_MODEL = "a shipped short name, a Hugging Face id, a local folder or a .gguf file"
_FIELD_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "model": text(_MODEL, f"The model name is empty (model = ''); give {_MODEL}."),
    "steering": _steering_choice,
    "selection": choice(SELECTION),
    "preset": choice(tuple(PRESETS)),
    **{n: integer(1, optional=True) for n in ("n_train", "n_val", "n_test", "max_new_tokens", "layer_stride")},
    "n_truthfulqa": integer(0, optional=True),
    "system": text(SYSTEM_CHOICES, "system is empty; use 'none' for no system turn, 'default' or a system prompt."),
    "seed": integer(0),
    "refusal_token_variant": choice(tuple(REFUSAL_TOKEN_VARIANTS)),
    "alpha": alpha_value,
    "kl_threshold": non_negative("the KL filter on harmless completions"),
    "prune_fraction": real_in_range(0, 1, False, True, "share of the last layers left out"),
    "eval_layer_fraction": real_in_range(0, 1, True, False, "share of layers in L_low"),
    "parity_inplace": boolean,
    "batch_size": integer(1),
    "gen_batch_size": integer(1),
    "dtype": lambda name, value: canonical_dtype(value, name),
    "device": lambda name, value: check_device(value, name),
    "judge_model": text(_MODEL, "The judge_model name is empty; leave it unset for no model judge.", optional=True),
    **{n: text(f"the {n.replace('_', ' ')} option of the concept",
               f"{n} is empty; leave it unset or see `cosmic-tl run --help` (concept options).", optional=True)
       for n in CONCEPT_FIELDS},
}
