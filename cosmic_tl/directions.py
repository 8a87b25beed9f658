"""The selected steering direction, saved as a self-checking pair of files and validated on load.

``Direction`` is one selected candidate (see :mod:`cosmic_tl.candidates`) with
its ACE reference and every fact needed to re-apply it: layer, position, hook point, model shape,
method and steering (a headerless vector is silently wrong when the layer or operation differs).

Files are ``<stem>.safetensors`` plus a JSON sidecar; nothing is ever unpickled. The JSON carries
the tensor file's sha256 and ``metadata_sha256``: a hash over every other field, so a hand-edited
``layer`` or ``position`` is refused on load instead of steering silently at another layer. Both
files are replaced together or not at all. Field types are strict: ``"layer": true`` or ``"layer":
"6"`` are errors, not layer 1 or 6. Format_version 1 files carry no metadata hash; they load with
an :class:`UnprotectedDirectionWarning`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from jaxtyping import Float
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor

from cosmic_tl import atomic
from cosmic_tl.user_files import path_problem
from cosmic_tl.safe_files import (
    FORMAT_VERSION,
    MIN_NORM,
    DirectionFileError,
    as_float64,
    canonical_sha256,
    check_format,
    check_meta,
    edited_error,
    package_version,
    read_safetensors,
    refuse_pickle_path,
    save_error,
    strict_int,
)

DIRECTION_FORMAT = "cosmic_tl.direction"
# The provenance a reader wants first in a printed Direction or Candidates; other keys are counted.
_KEY_META = ("model", "concept", "method", "steering", "alpha", "system")


class DirectionMismatchError(ValueError):
    """A direction does not fit the model (or the expectations) it is used with."""


class UnprotectedDirectionWarning(UserWarning):
    """A format_version 1 direction file: its facts carry no edit hash."""


def _stem(path: str | os.PathLike) -> Path:
    """``out/dir``, ``out/dir.json`` or ``out/dir.safetensors`` -> ``out/dir``; pickles are refused."""
    path = refuse_pickle_path(path)
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix("")
    return path


@dataclass(eq=False)
class Direction:
    """One steering direction: the unnormalised mean difference r at (position, layer).

    Attributes:
        vector: r = mu_pos - mu_neg (positive minus negative mean; for refusal harmful minus
            harmless), float64, unnormalised, never (almost) zero.
        reference: The ACE reference mu (the negative mean at the same position and layer), or None.
        layer: The block whose input (``blocks.{layer}.hook_resid_pre``) the direction was read at.
        position: The post-instruction position, negative (-1 is the last prompt token).
        hook_point: Where the direction lives; always ``"resid_pre"`` for COSMIC.
        meta: Provenance: model, hf_id, d_model, n_layers, system, method, steering, alpha, dataset
            sizes, cosmic_tl version (known keys are type-checked, see :func:`check_meta`).

    Raises (on construction):
        TypeError: a non-integer (or bool) layer/position, a non-tensor vector, a badly typed meta.
        ValueError: wrong shapes, NaN/Inf values, a zero vector, an unsupported hook point, a
            layer outside the recorded ``n_layers``.
    """

    vector: Float[Tensor, "d_model"]
    reference: Float[Tensor, "d_model"] | None
    layer: int
    position: int
    hook_point: str = "resid_pre"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.vector = as_float64("Direction vector", self.vector, 1)
        if self.reference is not None:
            self.reference = as_float64("Direction reference", self.reference, 1)
            if self.reference.shape != self.vector.shape:
                raise ValueError(
                    f"Reference shape {tuple(self.reference.shape)} differs from vector shape "
                    f"{tuple(self.vector.shape)}."
                )
        norm = float(self.vector.norm())
        if norm < MIN_NORM:
            raise ValueError(
                f"Direction vector has norm {norm:.3g} (all zeros or nearly): steering with it would do "
                "nothing. Pick another candidate (e.g. not layer 0, where every prompt's template token "
                "has the same activation)."
            )
        self.layer, self.position = strict_int("layer", self.layer), strict_int("position", self.position)
        self._check_facts()

    def _check_facts(self) -> None:
        """The checks that must also hold after ``meta`` was updated in place (run again by save)."""
        if self.hook_point != "resid_pre":
            raise ValueError(f"hook_point {self.hook_point!r} is unsupported; directions live at resid_pre.")
        if self.layer < 0:
            raise ValueError(f"layer must be non-negative, got {self.layer}.")
        if self.position >= 0:
            raise ValueError(f"position must be negative (e.g. -1 for the last token), got {self.position}.")
        check_meta(self.meta)
        n_layers = self.meta.get("n_layers")
        if n_layers is not None and self.layer >= n_layers:
            raise ValueError(f"layer {self.layer} is outside 0..{n_layers - 1} (n_layers={n_layers}).")
        d_model = self.meta.get("d_model")
        if d_model is not None and d_model != self.d_model:
            raise ValueError(f"meta says d_model={d_model} but the vector has {self.d_model} entries.")

    def __repr__(self) -> str:
        # Short, like a tensor library's: the facts and the norm, never the d_model values.
        reference = f"float64[{self.d_model}]" if self.reference is not None else "None"
        return (f"Direction(layer={self.layer}, position={self.position}, hook_point={self.hook_point!r}, "
                f"vector=float64[{self.d_model}] (norm {float(self.vector.norm()):.4g}), reference={reference}, "
                f"meta={short_meta(self.meta)})")

    @property
    def d_model(self) -> int:
        return self.vector.shape[0]

    @property
    def unit(self) -> Float[Tensor, "d_model"]:
        """r̂ = r / (‖r‖ + 1e-8), float64."""
        return self.vector / (self.vector.norm() + 1e-8)

    def check_compatible(self, model) -> None:
        """Raise :class:`DirectionMismatchError` unless ``model`` (``.d_model``, ``.n_layers``) fits.

        A direction for another model is an error, never a silent broadcast.
        """
        n_layers = self.meta.get("n_layers")
        problems = []
        if model.d_model != self.d_model:
            problems.append(f"d_model {self.d_model} (direction) vs {model.d_model} (model)")
        if n_layers is not None and n_layers != model.n_layers:
            problems.append(f"n_layers {n_layers} (direction) vs {model.n_layers} (model)")
        if self.layer >= model.n_layers:
            problems.append(f"layer {self.layer} does not exist in a {model.n_layers}-layer model")
        if problems:
            source = self.meta.get("model", "another model")
            raise DirectionMismatchError(
                f"Direction from {source!r} does not fit model {getattr(model, 'name', '?')!r}: "
                + "; ".join(problems)
                + "."
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<stem>.safetensors`` (vector, reference) and ``<stem>.json``; returns the JSON path.

        The pair is replaced all-or-nothing (:func:`cosmic_tl.atomic.write_files`): after a failure
        (a full disk, a rename that fails) the previous pair at ``path`` is unchanged and loads.
        The JSON holds every fact, the tensor file's sha256 and ``metadata_sha256``, a hash of every
        other field, so that an edited ``layer`` or ``position`` is detected on load.

        Raises:
            TypeError, ValueError: ``meta`` (possibly edited since construction) is invalid or not
                JSON-serialisable; nothing is written.
            OSError: the files could not be written (the message says nothing was replaced).
        """
        self._check_facts()
        stem = _stem(path)
        tensors = {"vector": self.vector.contiguous()}
        if self.reference is not None:
            tensors["reference"] = self.reference.contiguous()
        data = save_safetensors_bytes(tensors)
        tensor_path = stem.with_name(stem.name + ".safetensors")
        json_path = stem.with_name(stem.name + ".json")
        record = {
            "format": DIRECTION_FORMAT,
            "format_version": FORMAT_VERSION,
            "tensor_file": tensor_path.name,
            "sha256": _sha256(data),
            "d_model": self.d_model,
            "layer": self.layer,
            "position": self.position,
            "hook_point": self.hook_point,
            "has_reference": self.reference is not None,
            "meta": {"cosmic_tl_version": package_version(), **self.meta},
        }
        try:  # serialise before writing anything, so a bad meta value leaves no orphan file
            record["metadata_sha256"] = canonical_sha256(record)
            text = atomic.json_text(record, what=f"Direction metadata {json_path}")
        except TypeError as e:
            raise TypeError(f"Direction.meta must be JSON-serialisable: {e}") from e
        try:
            atomic.write_files({tensor_path: data, json_path: text.encode()})
        except OSError as e:
            raise save_error(e, f"the direction {stem}(.safetensors, .json)") from e
        return json_path

    @classmethod
    def load(cls, path: str | os.PathLike, expect: dict | None = None) -> "Direction":
        """Load and validate a direction written by :meth:`save`.

        Args:
            path: The stem, the ``.json`` or the ``.safetensors`` path.
            expect: Facts the caller requires, e.g. ``{"model": ..., "n_layers": 24, "steering": "ace"}``;
                keys are looked up among layer/position/hook_point/d_model and then ``meta``.

        Raises:
            DirectionFileError: missing/unreadable files, a pickle, an edited JSON (metadata hash)
                or tensor file (sha256), a newer format version, badly typed fields (``"layer":
                true``), shapes that disagree with the JSON, NaN/Inf or zero values.
            DirectionMismatchError: a fact differs from ``expect``.

        Files of format_version 1 (no metadata hash) load with an
        :class:`UnprotectedDirectionWarning`; saving them again protects them.
        """
        if Path(path).is_dir():
            saved = sorted(p.stem for p in Path(path).glob("*.json") if p.with_suffix(".safetensors").is_file())
            hint = f" (it holds {', '.join(saved[:3])}: e.g. {Path(path, saved[0])})" if saved else ""
            raise DirectionFileError(
                f"{path} is a folder, not a saved direction; pass the direction's stem, its .json or its "
                f".safetensors{hint}.")
        stem = _stem(path)
        json_path = stem.with_name(stem.name + ".json")
        record = _read_record(json_path)
        tensor_path = json_path.with_name(record["tensor_file"])
        data, tensors = read_safetensors(tensor_path)
        if _sha256(data) != record["sha256"]:
            raise DirectionFileError(
                f"{tensor_path} does not match the sha256 recorded in {json_path}: the file was modified "
                "after it was saved, or the two files come from different saves. Save the direction again."
            )
        d_model = record["d_model"]
        if "vector" not in tensors or tuple(tensors["vector"].shape) != (d_model,):
            shape = tuple(tensors["vector"].shape) if "vector" in tensors else "missing"
            raise DirectionFileError(f"{tensor_path}: vector shape {shape} does not match d_model={d_model}.")
        if record["has_reference"] != ("reference" in tensors):
            raise DirectionFileError(f"{tensor_path}: reference presence disagrees with {json_path}.")
        try:
            direction = cls(
                vector=tensors["vector"],
                reference=tensors.get("reference"),
                layer=record["layer"],
                position=record["position"],
                hook_point=record["hook_point"],
                meta=record["meta"],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DirectionFileError(f"Invalid direction in {json_path}: {e}") from e
        direction._check_expected(expect or {})
        return direction

    def _check_expected(self, expect: dict) -> None:
        facts = {**self.meta, "d_model": self.d_model, "layer": self.layer, "position": self.position,
                 "hook_point": self.hook_point}
        wrong = [f"{k}: expected {v!r}, file has {facts.get(k, '<absent>')!r}" for k, v in expect.items()
                 if facts.get(k) != v]
        if wrong:
            raise DirectionMismatchError("Direction does not match expectations: " + "; ".join(wrong) + ".")


def short_meta(meta: dict) -> str:
    """``{model: 'qwen…', method: 'cosmic', … 9 more}``: the key provenance of a repr, one line."""
    shown = [f"{key}: {_clip(repr(meta[key]))}" for key in _KEY_META if key in meta]
    rest = len(meta) - len(shown)
    return "{" + ", ".join(shown + ([f"… {rest} more"] if rest else [])) + "}"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The fields of a direction's JSON, with the type each must have (bools are never ints here).
_RECORD_TYPES = {"tensor_file": str, "sha256": str, "d_model": int, "layer": int, "position": int,
                 "hook_point": str, "has_reference": bool, "meta": dict}


def _read_record(json_path: Path) -> dict:
    """A direction's JSON facts, checked: format, version, edit hash, field types."""
    problem = path_problem(json_path)
    if problem is not None:  # a FIFO would block, a device never ends: never opened
        raise DirectionFileError(f"Direction metadata {json_path} {problem}.")
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise DirectionFileError(f"{json_path} is not a valid direction metadata file (not JSON: {e}).") from e
    except RecursionError:
        raise DirectionFileError(f"{json_path} is not a valid direction metadata file (nested too deeply).") from None
    if not isinstance(record, dict):
        raise DirectionFileError(f"{json_path} is not a valid direction metadata file (not a JSON object).")
    version = check_format(record, json_path, DIRECTION_FORMAT, FORMAT_VERSION)
    if version >= 2:
        recorded = record.pop("metadata_sha256", None)
        if recorded != canonical_sha256(record):
            raise edited_error(json_path, "its fields (layer, position, meta, ...)")
    else:
        warnings.warn(
            f"{json_path} has format_version 1: its layer, position and "
            "meta are not protected against edits. Load and save it again to protect it.",
            UnprotectedDirectionWarning,
            stacklevel=3,
        )
    for key, kind in _RECORD_TYPES.items():
        value = record.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DirectionFileError(
                f"{json_path} is not a valid direction metadata file: {key!r} must be a {kind.__name__}, "
                f"got {value!r}."
            )
    if Path(record["tensor_file"]).name != record["tensor_file"] or not record["tensor_file"]:
        raise DirectionFileError(
            f"{json_path}: tensor_file {record['tensor_file']!r} must be a file name beside the JSON."
        )
    return record

