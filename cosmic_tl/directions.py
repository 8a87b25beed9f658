"""Candidate refusal directions and the selected direction, saved safely and validated on load.

``Candidates`` holds the difference-in-means vectors r[pos, layer] = mu_harmful - mu_harmless for
every post-instruction position and block input (spec §3), plus both class means: the harmless
mean is the ACE reference, which the authors never saved (spec §9.2 item 12).

``Direction`` is one selected candidate with its reference and every fact needed to re-apply it:
layer, position, hook point, model shape, method and steering (a headerless vector is "silently
wrong" when the layer or operation differs). Files are safetensors plus a JSON sidecar carrying a
sha256 of the tensor file; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor

FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


class DirectionFileError(ValueError):
    """A direction or candidates file is missing, unreadable, tampered with or invalid."""


class DirectionMismatchError(ValueError):
    """A direction does not fit the model (or the expectations) it is used with."""


def _version() -> str:
    from cosmic_tl import __version__

    return __version__


def _as_float64(name: str, tensor: Tensor, ndim: int) -> Tensor:
    """A detached float64 CPU copy of ``tensor``, checked for rank and finiteness."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(tensor.shape)}.")
    out = tensor.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} contains NaN or Inf values.")
    return out


def _as_int(name: str, value) -> int:
    """``value`` as a Python int (numpy/torch integers accepted), or TypeError."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}.") from None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_safetensors(path: Path) -> tuple[bytes, dict[str, Tensor]]:
    """The file's bytes and tensors; refuses pickles and reports truncated/corrupt files clearly."""
    if not path.is_file():
        raise DirectionFileError(f"Tensor file {path} does not exist.")
    data = path.read_bytes()
    try:
        return data, load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        # A safetensors file opens with an 8-byte header length, then its JSON header ("{"); the
        # length's first byte can be anything, so the pickle magic is only trusted without that shape.
        shaped_like_safetensors = data[8:9] == b"{"
        pickle_magic = data[:2] == b"PK" or (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
        if pickle_magic and not shaped_like_safetensors:  # torch.save zip / raw pickle
            raise DirectionFileError(
                f"{path} looks like a pickle / torch.save file. cosmic_tl never unpickles (it can run "
                "arbitrary code); save directions with Direction.save (safetensors + JSON)."
            ) from e
        raise DirectionFileError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {e}"
        ) from e


def _stem(path: str | os.PathLike) -> Path:
    """``out/dir``, ``out/dir.json`` or ``out/dir.safetensors`` -> ``out/dir``; pickles are refused."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix("")
    if path.suffix in PICKLE_SUFFIXES:
        raise DirectionFileError(
            f"{path}: cosmic_tl never reads or writes pickle-based files ({', '.join(PICKLE_SUFFIXES)}); "
            "unpickling can run arbitrary code. Use Direction.save / Direction.load (safetensors + JSON)."
        )
    return path


@dataclass(eq=False)
class Direction:
    """One steering direction: the unnormalised mean difference r at (position, layer).

    Attributes:
        vector: r = mu_harmful - mu_harmless, float64, unnormalised.
        reference: The ACE reference mu (harmless mean at the same position and layer), or None.
        layer: The block whose input (``blocks.{layer}.hook_resid_pre``) the direction was read at.
        position: The post-instruction position, negative (-1 is the last prompt token).
        hook_point: Where the direction lives; always ``"resid_pre"`` for COSMIC.
        meta: Provenance: model, hf_id, d_model, n_layers, system, method, steering, alpha, dataset
            sizes, cosmic_tl version.
    """

    vector: Float[Tensor, "d_model"]
    reference: Float[Tensor, "d_model"] | None
    layer: int
    position: int
    hook_point: str = "resid_pre"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.vector = _as_float64("Direction vector", self.vector, 1)
        if self.reference is not None:
            self.reference = _as_float64("Direction reference", self.reference, 1)
            if self.reference.shape != self.vector.shape:
                raise ValueError(
                    f"Reference shape {tuple(self.reference.shape)} differs from vector shape "
                    f"{tuple(self.vector.shape)}."
                )
        self.layer, self.position = _as_int("layer", self.layer), _as_int("position", self.position)
        if self.hook_point != "resid_pre":
            raise ValueError(f"hook_point {self.hook_point!r} is unsupported; directions live at resid_pre.")
        if self.layer < 0:
            raise ValueError(f"layer must be non-negative, got {self.layer}.")
        if self.position >= 0:
            raise ValueError(f"position must be negative (e.g. -1 for the last token), got {self.position}.")
        n_layers = self.meta.get("n_layers")
        if n_layers is not None and self.layer >= n_layers:
            raise ValueError(f"layer {self.layer} is outside 0..{n_layers - 1} (n_layers={n_layers}).")
        d_model = self.meta.get("d_model")
        if d_model is not None and d_model != self.d_model:
            raise ValueError(f"meta says d_model={d_model} but the vector has {self.d_model} entries.")

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

        Both are written atomically; the JSON holds every fact plus the tensor file's sha256.
        """
        stem = _stem(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"vector": self.vector.contiguous()}
        if self.reference is not None:
            tensors["reference"] = self.reference.contiguous()
        data = save_safetensors_bytes(tensors)
        tensor_path = stem.with_name(stem.name + ".safetensors")
        json_path = stem.with_name(stem.name + ".json")
        record = {
            "format": "cosmic_tl.direction",
            "format_version": FORMAT_VERSION,
            "tensor_file": tensor_path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "d_model": self.d_model,
            "layer": self.layer,
            "position": self.position,
            "hook_point": self.hook_point,
            "has_reference": self.reference is not None,
            "meta": {"cosmic_tl_version": _version(), **self.meta},
        }
        try:  # serialise before writing anything, so a bad meta value leaves no orphan file
            text = json.dumps(record, indent=2, sort_keys=True)
        except TypeError as e:
            raise TypeError(f"Direction.meta must be JSON-serialisable: {e}") from e
        _write_atomic(tensor_path, data)
        _write_atomic(json_path, text.encode())
        return json_path

    @classmethod
    def load(cls, path: str | os.PathLike, expect: dict | None = None) -> "Direction":
        """Load and validate a direction written by :meth:`save`.

        Args:
            path: The stem, the ``.json`` or the ``.safetensors`` path.
            expect: Facts the caller requires, e.g. ``{"model": ..., "n_layers": 24, "steering": "ace"}``;
                keys are looked up among layer/position/hook_point/d_model and then ``meta``.

        Raises:
            DirectionFileError: missing/unreadable files, a pickle, tampering (sha256 mismatch),
                shapes that disagree with the JSON, or NaN/Inf values.
            DirectionMismatchError: a fact differs from ``expect``.
        """
        stem = _stem(path)
        json_path = stem.with_name(stem.name + ".json")
        if not json_path.is_file():
            raise DirectionFileError(f"Direction metadata {json_path} does not exist.")
        try:
            record = json.loads(json_path.read_text())
            if Path(record["tensor_file"]).name != record["tensor_file"]:
                raise ValueError(f"tensor_file {record['tensor_file']!r} must be a name beside the JSON")
            tensor_path = json_path.with_name(record["tensor_file"])
            sha256, d_model = record["sha256"], record["d_model"]
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise DirectionFileError(f"{json_path} is not a valid direction metadata file: {e!r}") from e
        data, tensors = _read_safetensors(tensor_path)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DirectionFileError(
                f"{tensor_path} does not match the sha256 recorded in {json_path}: the file was modified."
            )
        if "vector" not in tensors or tuple(tensors["vector"].shape) != (d_model,):
            shape = tuple(tensors["vector"].shape) if "vector" in tensors else "missing"
            raise DirectionFileError(f"{tensor_path}: vector shape {shape} does not match d_model={d_model}.")
        if record.get("has_reference") != ("reference" in tensors):
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


@dataclass(eq=False)
class Candidates:
    """Every candidate direction r[pos, layer] (spec §3), float64, with both class means.

    Attributes:
        r: mu_harmful - mu_harmless, shape (n_pos, n_layers, d_model).
        mu_harmless: Harmless train mean (the ACE reference), same shape.
        mu_harmful: Harmful train mean, same shape.
        positions: The negative position of each row of the first axis, e.g. [-5, -4, -3, -2, -1].
        n_harmful, n_harmless: Number of prompts averaged.
        meta: Provenance (``model.describe()`` and anything else JSON-able).
    """

    r: Float[Tensor, "n_pos n_layers d_model"]
    mu_harmless: Float[Tensor, "n_pos n_layers d_model"]
    mu_harmful: Float[Tensor, "n_pos n_layers d_model"]
    positions: list[int]
    n_harmful: int
    n_harmless: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.r = _as_float64("Candidates.r", self.r, 3)
        self.mu_harmless = _as_float64("Candidates.mu_harmless", self.mu_harmless, 3)
        self.mu_harmful = _as_float64("Candidates.mu_harmful", self.mu_harmful, 3)
        if not self.r.shape == self.mu_harmless.shape == self.mu_harmful.shape:
            raise ValueError(
                f"Shapes differ: r {tuple(self.r.shape)}, mu_harmless {tuple(self.mu_harmless.shape)}, "
                f"mu_harmful {tuple(self.mu_harmful.shape)}."
            )
        self.positions = [int(p) for p in self.positions]
        if len(self.positions) != self.r.shape[0] or any(p >= 0 for p in self.positions):
            raise ValueError(
                f"positions {self.positions} must be {self.r.shape[0]} negative indices (one per row of r)."
            )

    @property
    def n_layers(self) -> int:
        return self.r.shape[1]

    @property
    def d_model(self) -> int:
        return self.r.shape[2]

    def direction(self, position: int, layer: int, **meta) -> Direction:
        """The candidate at (``position``, ``layer``) as a :class:`Direction` with its ACE reference.

        Args:
            position: A negative position from :attr:`positions`, e.g. -2.
            layer: A block index in ``0..n_layers-1``.
            **meta: Extra provenance (method, steering, alpha, ...) merged over :attr:`meta`.
        """
        if position not in self.positions:
            raise ValueError(f"position {position} is not one of {self.positions}.")
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} is outside 0..{self.n_layers - 1}.")
        i = self.positions.index(position)
        info = {**self.meta, "n_layers": self.n_layers, "d_model": self.d_model, "n_harmful": self.n_harmful,
                "n_harmless": self.n_harmless, "cosmic_tl_version": _version(), **meta}
        vector, reference = self.r[i, layer].clone(), self.mu_harmless[i, layer].clone()
        return Direction(vector, reference, layer, position, meta=info)

    def save(self, path: str | os.PathLike) -> Path:
        """Write one safetensors file (atomically); facts go in its header metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": "cosmic_tl.candidates", "format_version": FORMAT_VERSION,
                  "cosmic_tl_version": _version(), "positions": self.positions,
                  "n_harmful": self.n_harmful, "n_harmless": self.n_harmless, "meta": self.meta}
        tensors = {"r": self.r, "mu_harmless": self.mu_harmless, "mu_harmful": self.mu_harmful}
        _write_atomic(path, save_safetensors_bytes(tensors, metadata={"cosmic_tl": json.dumps(header)}))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Candidates":
        """Load and validate a file written by :meth:`save`.

        Raises:
            DirectionFileError: missing, pickled, unreadable or inconsistent files
                (r must equal mu_harmful - mu_harmless).
        """
        path = Path(path)
        if path.suffix in PICKLE_SUFFIXES:
            _stem(path)  # raises the pickle refusal
        data, tensors = _read_safetensors(path)
        header_len = int.from_bytes(data[:8], "little")
        try:
            header = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"]["cosmic_tl"])
            candidates = cls(tensors["r"], tensors["mu_harmless"], tensors["mu_harmful"], header["positions"],
                             header["n_harmful"], header["n_harmless"], header["meta"])
        except (KeyError, TypeError, ValueError) as e:
            raise DirectionFileError(f"{path} is not a valid cosmic_tl candidates file: {e!r}") from e
        diff = candidates.mu_harmful - candidates.mu_harmless
        if not torch.allclose(candidates.r, diff, rtol=1e-6, atol=1e-9 * (1 + float(diff.abs().max()))):
            raise DirectionFileError(
                f"{path}: r differs from mu_harmful - mu_harmless; the file is inconsistent."
            )
        return candidates
