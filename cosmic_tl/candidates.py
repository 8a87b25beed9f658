"""Every candidate direction r[pos, layer] of a model, saved as one self-checking safetensors file.

``Candidates`` holds the difference-in-means vectors r[pos, layer] = mu_pos - mu_neg for every
post-instruction position and block input (docs/method.md §1), plus both class means: the mean of
the positive prompts (they show the concept; for refusal, the harmful ones) and of the negative
prompts (for refusal, the harmless ones). The file's header carries the facts (positions, sizes,
provenance) and a hash over them and the tensors, so an edited or mixed-up file is refused on load.

Names: ``n_pos`` is the number of post-instruction positions (``ChatModel.n_pos``, the first axis
of ``r``); ``n_positive`` and ``n_negative`` count the prompts averaged into each mean. The file
format names the two means and counts after refusal (``mu_harmful`` / ``mu_harmless`` tensors,
``n_harmful`` / ``n_harmless`` facts) for every concept; its content hash fixes those names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor

from cosmic_tl import atomic
from cosmic_tl.directions import Direction, short_meta
from cosmic_tl.safe_files import (
    FORMAT_VERSION,
    DirectionFileError,
    as_float64,
    canonical_sha256,
    check_format,
    check_meta,
    edited_error,
    package_version,
    read_safetensors,
    refuse_pickle_path,
    safetensors_header,
    save_error,
    strict_int,
    tensor_bytes,
)

CANDIDATES_FORMAT = "cosmic_tl.candidates"


@dataclass(eq=False)
class Candidates:
    """Every candidate direction r[pos, layer] (docs/method.md §1), float64, with both class means.

    The negative mean is the ACE reference, which the authors never saved (docs/method.md §9).

    Attributes:
        r: mu_pos - mu_neg, shape (n_pos, n_layers, d_model): one row per post-instruction position.
        mu_neg: Negative (for refusal: harmless) train mean, the ACE reference, same shape.
        mu_pos: Positive (for refusal: harmful) train mean, same shape.
        positions: The negative position of each row of the first axis, increasing, e.g. [-5, ..., -1].
        n_positive, n_negative: Number of positive and negative prompts averaged (positive integers).
        meta: Provenance (``model.describe()`` and anything else JSON-able).

    Example:
        >>> import torch
        >>> mu = torch.zeros(1, 2, 4)
        >>> Candidates(torch.ones(1, 2, 4), mu, mu + 1, positions=[-1], n_positive=3, n_negative=3)
        Candidates(r=float64[1, 2, 4], positions=[-1], layers=0..1, n_positive=3, n_negative=3, meta={})
    """

    r: Float[Tensor, "n_pos n_layers d_model"]
    mu_neg: Float[Tensor, "n_pos n_layers d_model"]
    mu_pos: Float[Tensor, "n_pos n_layers d_model"]
    positions: list[int]
    n_positive: int
    n_negative: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.r = as_float64("Candidates.r", self.r, 3)
        self.mu_neg = as_float64("Candidates.mu_neg", self.mu_neg, 3)
        self.mu_pos = as_float64("Candidates.mu_pos", self.mu_pos, 3)
        if not self.r.shape == self.mu_neg.shape == self.mu_pos.shape:
            raise ValueError(
                f"Shapes differ: r {tuple(self.r.shape)}, mu_neg {tuple(self.mu_neg.shape)}, "
                f"mu_pos {tuple(self.mu_pos.shape)}."
            )
        if isinstance(self.positions, (str, bytes)) or not hasattr(self.positions, "__iter__"):
            raise TypeError(f"positions must be a list of negative integers, got {self.positions!r}.")
        self.positions = [strict_int("positions entry", p) for p in self.positions]
        p = self.positions
        if len(p) != self.r.shape[0] or any(x >= 0 for x in p) or any(a >= b for a, b in zip(p, p[1:])):
            raise ValueError(
                f"positions {p} must be {self.r.shape[0]} increasing negative indices (one per row of r)."
            )
        self.n_positive = strict_int("n_positive", self.n_positive)
        self.n_negative = strict_int("n_negative", self.n_negative)
        if self.n_positive < 1 or self.n_negative < 1:
            raise ValueError(f"n_positive and n_negative must be >= 1, got {self.n_positive} and {self.n_negative}.")
        check_meta(self.meta)

    def __repr__(self) -> str:
        # Short, like a tensor library's: shapes and facts, never the values (millions of them).
        shape = ", ".join(str(n) for n in self.r.shape)
        return (f"Candidates(r=float64[{shape}], positions={self.positions}, layers=0..{self.n_layers - 1}, "
                f"n_positive={self.n_positive}, n_negative={self.n_negative}, meta={short_meta(self.meta)})")

    @property
    def n_layers(self) -> int:
        return self.r.shape[1]

    @property
    def d_model(self) -> int:
        return self.r.shape[2]

    def direction(self, position: int, layer: int, **meta) -> "Direction":
        """The candidate at (``position``, ``layer``) as a :class:`Direction` with its ACE reference.

        Args:
            position: A negative position from :attr:`positions`, e.g. -2.
            layer: A block index in ``0..n_layers-1``.
            **meta: Extra provenance (method, steering, alpha, ...) merged over :attr:`meta`.

        Raises:
            TypeError: a non-integer position or layer.
            ValueError: a position or layer outside the candidates, or a zero candidate.
        """
        position, layer = strict_int("position", position), strict_int("layer", layer)
        if position not in self.positions:
            raise ValueError(f"position {position} is not one of {self.positions}.")
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} is outside 0..{self.n_layers - 1}.")
        i = self.positions.index(position)
        # Direction metadata names the counts as the file formats do (see the module docstring).
        info = {**self.meta, "n_layers": self.n_layers, "d_model": self.d_model, "n_harmful": self.n_positive,
                "n_harmless": self.n_negative, "cosmic_tl_version": package_version(), **meta}
        vector, reference = self.r[i, layer].clone(), self.mu_neg[i, layer].clone()
        return Direction(vector, reference, layer, position, meta=info)

    def _header(self) -> dict:
        return {"format": CANDIDATES_FORMAT, "format_version": FORMAT_VERSION, "cosmic_tl_version": package_version(),
                "positions": self.positions, "n_harmful": self.n_positive, "n_harmless": self.n_negative,
                "meta": self.meta}

    def _tensors(self) -> dict[str, Tensor]:
        # The tensor names of the file format (see the module docstring).
        return {"r": self.r.contiguous(), "mu_harmless": self.mu_neg.contiguous(),
                "mu_harmful": self.mu_pos.contiguous()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write one safetensors file atomically; facts and a content hash go in its header metadata.

        The hash covers the facts and the three tensors, so an edited header or tensor is detected.

        Raises:
            OSError: the file could not be written (the previous file, if any, is unchanged).
        """
        check_meta(self.meta)
        path = refuse_pickle_path(path)
        header = self._header()
        tensors = self._tensors()
        header["content_sha256"] = canonical_sha256(header, *(tensor_bytes(t) for t in tensors.values()))
        data = save_safetensors_bytes(tensors, metadata={"cosmic_tl": atomic.json_text(header, what=str(path))})
        try:
            atomic.write_bytes(path, data)
        except OSError as e:
            raise save_error(e, f"the candidates {path}") from e
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Candidates":
        """Load and validate a file written by :meth:`save`.

        Raises:
            DirectionFileError: missing, pickled, unreadable, edited (content hash), newer-version,
                badly typed or inconsistent files (r must equal mu_pos - mu_neg).
        """
        path = refuse_pickle_path(path)
        data, tensors = read_safetensors(path)
        try:
            header = json.loads(safetensors_header(data)["__metadata__"]["cosmic_tl"])
            if not isinstance(header, dict):
                raise TypeError("the cosmic_tl header is not a JSON object")
        except (KeyError, TypeError, ValueError) as e:
            raise DirectionFileError(f"{path} is not a valid cosmic_tl candidates file: {e!r}") from e
        version = check_format(header, path, CANDIDATES_FORMAT, FORMAT_VERSION)
        recorded = header.pop("content_sha256", None)
        try:
            # The file's own names in its errors (see the module docstring).
            sizes = [strict_int(name, header[name]) for name in ("n_harmful", "n_harmless")]
            if min(sizes) < 1:
                raise ValueError(f"n_harmful and n_harmless must be >= 1, got {sizes[0]} and {sizes[1]}.")
            candidates = cls(tensors["r"], tensors["mu_harmless"], tensors["mu_harmful"], header["positions"],
                             *sizes, header["meta"])
        except (KeyError, TypeError, ValueError) as e:
            raise DirectionFileError(f"{path} is not a valid cosmic_tl candidates file: {e!r}") from e
        if version >= 2:
            blobs = (tensor_bytes(t) for t in candidates._tensors().values())
            if recorded != canonical_sha256(header, *blobs):
                raise edited_error(path, "its facts (positions, sizes, meta) or tensors")
        diff = candidates.mu_pos - candidates.mu_neg
        if not torch.allclose(candidates.r, diff, rtol=1e-6, atol=1e-9 * (1 + float(diff.abs().max()))):
            raise DirectionFileError(
                f"{path}: r differs from mu_pos - mu_neg (the file's mu_harmful - mu_harmless); the file is inconsistent."
            )
        return candidates
