"""One-line checks of user-supplied values: numbers, names, choices, dtypes and devices.

Each checker takes the name of the value and the value, returns the value (possibly in a
normalised spelling, e.g. dtype ``"bf16"`` -> ``"bfloat16"``) and otherwise raises a
:class:`ConfigError` naming the value, the expected type and the valid range. Bools are never
accepted as numbers and strings never as numbers or flags: ``"layer": true`` or
``alpha = "1"`` are errors, not 1.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable


class ConfigError(ValueError):
    """An invalid configuration value or file."""


MAX_ABS_ALPHA = 1e4
"""The largest |alpha| a run accepts. The paper uses 1; far beyond a few tens the added alpha·r
dwarfs every activation, and around 1e19·‖r‖ float32 overflows (NaN logits). The bound keeps runs
inside the range where the numbers stay finite and meaningful; generation still checks logits."""

DTYPE_ALIASES = {
    "float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
    "float64": "float64", "fp64": "float64", "f64": "float64", "double": "float64",
}
"""Accepted dtype spellings and the torch dtype each one names."""
DTYPES = ("float32", "bfloat16", "float16", "float64")
DEVICE_CHOICES = "cpu | cuda | cuda:N | mps (unset: cuda when available, else cpu)"


def canonical_dtype(value: Any, name: str = "dtype") -> str:
    """The torch dtype name ``value`` spells (``"bf16"`` -> ``"bfloat16"``), or ConfigError.

    Accepts the names and aliases of :data:`DTYPE_ALIASES` and ``torch.float32``-style objects.
    """
    spelled = str(value).removeprefix("torch.") if type(value).__name__ == "dtype" else value
    if isinstance(spelled, str) and spelled.strip().lower() in DTYPE_ALIASES:
        return DTYPE_ALIASES[spelled.strip().lower()]
    raise ConfigError(
        f"{name} must be one of {', '.join(DTYPES)} (aliases: fp32, bf16, fp16, half, fp64), got {value!r}."
    )


def check_device(value: Any, name: str = "device") -> str | None:
    """``value`` if it names a device this machine has (None: choose later), else ConfigError."""
    if value is None:
        return None
    spelled = str(value) if type(value).__name__ == "device" else value
    if not isinstance(spelled, str) or not spelled.strip():
        raise ConfigError(f"{name} must be one of {DEVICE_CHOICES}, got {value!r}.")
    import torch

    kind, colon, index = spelled.strip().partition(":")
    if colon and not index.isdigit():
        raise ConfigError(f"{name} {value!r} is malformed; use {DEVICE_CHOICES}.")
    if kind == "cpu" and not colon:
        return spelled
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{name} {value!r} was requested but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use device 'cpu' or leave it unset."
            )
        if colon and int(index) >= torch.cuda.device_count():
            raise ConfigError(
                f"{name} {value!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})."
            )
        return spelled
    if kind == "mps" and not colon:
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{name} 'mps' was requested but MPS is not available on this machine; use 'cpu'.")
        return spelled
    raise ConfigError(f"{name} must be one of {DEVICE_CHOICES}, got {value!r}.")


def _type_name(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def real(name: str, value: Any, what: str) -> float:
    """``value`` if it is a finite real number (not a bool or a string), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number ({what}), got {_type_name(value)}.")
    return value


def alpha_value(name: str, value: Any) -> float:
    """A finite steering coefficient with |alpha| <= :data:`MAX_ABS_ALPHA`."""
    what = f"|alpha| <= {MAX_ABS_ALPHA:g}, the addition coefficient"
    if abs(real(name, value, what)) > MAX_ABS_ALPHA:
        raise ConfigError(
            f"alpha={value:g} is outside [-{MAX_ABS_ALPHA:g}, {MAX_ABS_ALPHA:g}]: the steered activations "
            "would be meaningless or overflow (the paper uses alpha=1)."
        )
    return value


def real_in_range(low: float, high: float, low_open: bool, high_open: bool, what: str) -> Callable:
    """A checker of finite numbers in the interval from ``low`` to ``high`` (open ends as given)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(name: str, value: Any) -> float:
        v = real(name, value, f"in {interval}, {what}")
        if (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
            raise ConfigError(f"{name} must be in {interval} ({what}), got {value!r}.")
        return value

    return check


def non_negative(what: str) -> Callable:
    """A checker of finite numbers >= 0."""
    def check(name: str, value: Any) -> float:
        if real(name, value, f">= 0, {what}") < 0:
            raise ConfigError(f"{name} must be >= 0 ({what}), got {value!r}.")
        return value

    return check


def integer(minimum: int, optional: bool = False) -> Callable:
    """A checker of ints >= ``minimum`` (never bools or floats); None passes when ``optional``."""
    def check(name: str, value: Any) -> int | None:
        if value is None and optional:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ConfigError(f"{name} must be {kind}, got {value!r}.")
        return value

    return check


def text(what: str, empty: str, optional: bool = False) -> Callable:
    """A checker of non-blank strings; ``empty`` is the whole message for a blank one."""
    def check(name: str, value: Any) -> str | None:
        if value is None and optional:
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string ({what}), got {_type_name(value)}.")
        if not value.strip():
            raise ConfigError(empty)
        return value

    return check


def choice(choices: tuple) -> Callable:
    """A checker of strings among ``choices``."""
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")
        return value

    return check


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is a real bool (TOML ``true``/``false``), never a truthy string."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false (a boolean), got {_type_name(value)}.")
    return value

