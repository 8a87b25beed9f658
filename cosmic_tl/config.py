"""Every default of a run, typed, in one place; presets; TOML config files.

A :class:`RunConfig` fully describes a pipeline run. Its :meth:`~RunConfig.fingerprint` covers every
field that can change a result, so a run folder is only ever resumed by the same configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from cosmic_tl.shipped import DEFAULT_MODEL


class ConfigError(ValueError):
    """An invalid configuration value or file."""


@dataclass(frozen=True)
class Preset:
    """Dataset sizes and generation length.

    Attributes:
        n_train: Prompts per class for the candidate directions and L_low.
        n_val: Prompts per class for selection.
        n_test: Prompts per class for the evaluation completions.
        max_new_tokens: Generated tokens per completion.
        layer_stride: Score candidates at every ``layer_stride``-th layer (1 = all, as the paper).
    """

    n_train: int
    n_val: int
    n_test: int
    max_new_tokens: int
    layer_stride: int = 1


PRESETS = {
    # The paper's sizes (COSMIC_SPEC §2.2, §7.1).
    "paper": Preset(n_train=180, n_val=100, n_test=512, max_new_tokens=512),
    # About 12 minutes for the whole run on the default model on 2 CPU cores (measured idle).
    "quick": Preset(n_train=32, n_val=16, n_test=24, max_new_tokens=48, layer_stride=2),
    # Smoke runs (CI, notebooks in CI, tiny models): minutes.
    "tiny": Preset(n_train=8, n_val=6, n_test=6, max_new_tokens=12, layer_stride=4),
}

STEERING = ("ace", "lce")
SELECTION = ("cosmic", "substring")
SUBSTRING_VARIANTS = ("cosmic-repo", "arditi")
SYSTEM_CHOICES = "none | default | any other text (used as the system prompt)"


@dataclass(frozen=True)
class RunConfig:
    """One pipeline run.

    Attributes:
        model: Shipped short name, Hugging Face id, local folder or ``.gguf`` file.
        steering: ``"ace"`` (affine, the default) or ``"lce"`` (linear).
        selection: ``"cosmic"`` or ``"substring"`` (the refusal-token baseline).
        preset: ``"quick"``, ``"paper"`` or ``"tiny"``; explicit sizes below override it.
        system: ``"none"`` (no system turn, the paper's setting), ``"default"`` (the template's
            own, e.g. "You are Qwen…") or a system prompt.
        seed: Seed of the paper's sampling procedure.
        substring_variant: ``"cosmic-repo"`` or ``"arditi"`` (also filters data by refusal score).
        alpha: Coefficient of the addition used for evaluation.
        kl_threshold, prune_fraction, eval_layer_fraction: Selection filters (COSMIC_SPEC §4).
        parity_inplace: Reproduce the authors' in-place LCE read-outs (COSMIC_SPEC §10).
        batch_size, gen_batch_size: Prompts per forward pass / per generation batch.
        dtype, device: Numerics and placement (device None = CUDA if available).
        judge_model: Also judge completions with this chat model (None: the substring judge only).
    """

    model: str = DEFAULT_MODEL
    steering: str = "ace"
    selection: str = "cosmic"
    preset: str = "quick"
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    max_new_tokens: int | None = None
    layer_stride: int | None = None
    system: str = "none"
    seed: int = 42
    substring_variant: str = "cosmic-repo"
    alpha: float = 1.0
    kl_threshold: float = 0.1
    prune_fraction: float = 0.2
    eval_layer_fraction: float = 0.1
    parity_inplace: bool = True
    batch_size: int = 16
    gen_batch_size: int = 16
    dtype: str = "float32"
    device: str | None = None
    judge_model: str | None = None

    def __post_init__(self):
        self._check_choice("steering", STEERING)
        self._check_choice("selection", SELECTION)
        self._check_choice("preset", tuple(PRESETS))
        self._check_choice("substring_variant", SUBSTRING_VARIANTS)
        for name in ("n_train", "n_val", "n_test", "max_new_tokens", "layer_stride", "batch_size", "gen_batch_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}.")
        if not (self.alpha == self.alpha) or abs(self.alpha) == float("inf"):
            raise ConfigError(f"alpha must be a finite number, got {self.alpha!r}.")

    def _check_choice(self, name: str, choices: tuple) -> None:
        if getattr(self, name) not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}.")

    @property
    def sizes(self) -> Preset:
        """The preset with explicit overrides applied."""
        p = PRESETS[self.preset]
        over = {f: getattr(self, f) for f in ("n_train", "n_val", "n_test", "max_new_tokens", "layer_stride")}
        return dataclasses.replace(p, **{k: v for k, v in over.items() if v is not None})

    @property
    def system_prompt(self) -> str | None:
        """The ``system=`` argument for :func:`cosmic_tl.load_model`."""
        return None if self.system == "none" else self.system

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["resolved_sizes"] = dataclasses.asdict(self.sizes)
        return d

    def fingerprint(self) -> str:
        """A hash of every field that can change a result (``device`` is excluded)."""
        d = self.to_dict()
        d.pop("device")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "RunConfig":
        """Load a TOML file whose keys are RunConfig fields; ``overrides`` win over the file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist.") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"Config file {path} is not valid TOML: {e}") from None
        data = data.get("run", data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown keys in {path}: {', '.join(unknown)}. Valid keys: {', '.join(sorted(known))}.")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)
