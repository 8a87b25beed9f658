"""Reading the files cosmic_tl saves without trusting them: no pickles, strict types, edit hashes.

Directions and candidates are safetensors plus JSON facts. The helpers here refuse pickle-based
files (unpickling can run arbitrary code) without ever unpickling them, report truncated files as
such, and compute the content hashes that make an edited file detectable: a hash over the
canonical JSON of the facts that decide behaviour (layer, position, ...) and the tensor bytes.

These hashes detect edits, accidental or careless (a hand-edited ``"layer"``, a file copied from
another save); they are not a signature and do not stop someone who recomputes them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import operator
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from torch import Tensor

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
FORMAT_VERSION = 2
"""Version 2 protects the facts (layer, position, meta, ...) with a hash; version 1 files still load."""
MIN_NORM = 1e-6
"""A direction shorter than this is refused: steering with (almost) nothing does (almost) nothing."""


class DirectionFileError(ValueError):
    """A direction or candidates file is missing, unreadable, edited, from a newer version or invalid."""


def canonical_sha256(record: dict, *blobs: bytes) -> str:
    """sha256 of ``record`` as canonical JSON (sorted keys, no spaces) followed by ``blobs``.

    JSON floats round-trip exactly in Python, so a record read back from its file hashes the same.
    """
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    for blob in blobs:
        digest.update(blob)
    return digest.hexdigest()


def strict_int(name: str, value: Any) -> int:
    """``value`` as a Python int (numpy/torch integers accepted), never a bool, float or string.

    Raises:
        TypeError: naming ``name`` and the value.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got the boolean {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).") from None


def refuse_pickle_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or :class:`DirectionFileError` if its suffix is a pickle format's."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise DirectionFileError(
            f"{path}: cosmic_tl never reads or writes pickle-based files ({', '.join(PICKLE_SUFFIXES)}); "
            "unpickling can run arbitrary code. Use Direction.save / Direction.load (safetensors + JSON)."
        )
    return path


def read_safetensors(path: Path) -> tuple[bytes, dict[str, Tensor]]:
    """The file's bytes and tensors; refuses pickles and reports truncated/corrupt files clearly."""
    from cosmic_tl.user_files import path_problem

    problem = path_problem(path)
    if problem == "is a folder":
        raise DirectionFileError(f"Tensor file {path} is a folder; pass the .safetensors file itself.")
    if problem is not None:  # a FIFO would block, a device never ends: never opened
        raise DirectionFileError(f"Tensor file {path} {problem}.")
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


def safetensors_header(data: bytes) -> dict:
    """The JSON header of safetensors ``data`` (already known to parse)."""
    header_len = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_len])


def check_format(record: dict, where: Path, kind: str, newest: int) -> int:
    """The ``format_version`` of a ``record`` of format ``kind``; refuses other formats and newer versions.

    Raises:
        DirectionFileError: not a ``kind`` file, an invalid version, or one newer than ``newest``
            (the message says to upgrade cosmic_tl).
    """
    if record.get("format") != kind:
        raise DirectionFileError(
            f"{where} is not a {kind} file (format {record.get('format', '<absent>')!r}); "
            "save it with cosmic_tl's own save method."
        )
    version = record.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DirectionFileError(f"{where}: format_version must be a positive integer, got {version!r}.")
    if version > newest:
        raise DirectionFileError(
            f"{where} was saved by a newer cosmic_tl (format_version {version}; this version reads up "
            f"to {newest}). Upgrade cosmic_tl (pip install -U cosmic-tl) to load it."
        )
    return version


def edited_error(where: Path, what: str) -> DirectionFileError:
    """The error for a file whose content no longer matches the hash recorded when it was saved."""
    return DirectionFileError(
        f"{where} was edited since it was saved: {what} no longer match the hash recorded by "
        "cosmic_tl when it was written. Restore the original file, or re-create the object in "
        "Python and save it again (which records a new hash); never edit these files by hand."
    )


# Provenance facts whose type is checked on construction and on load: a wrong type here would
# mislabel a result (a string alpha, a bool n_layers) without any error downstream.
_INT_META = ("n_layers", "d_model", "n_pos", "n_harmful", "n_harmless")
# ``steering`` is checked as a name here; whether a rule of that name is registered is checked where
# the rule is used (cosmic_tl.steering.steering_rule): the table sits above this module, and a
# direction saved under a rule registered at run time must load like any other.
_TEXT_META = ("model", "hf_id", "system", "method", "steering", "dtype", "cosmic_tl_version")


def package_version() -> str:
    from cosmic_tl import __version__

    return __version__


def as_float64(name: str, tensor: Tensor, ndim: int) -> Tensor:
    """A detached float64 CPU copy of ``tensor``, checked for rank and finiteness."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(tensor.shape)}.")
    out = tensor.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} contains NaN or Inf values.")
    return out


def check_meta(meta: dict) -> None:
    """Raise TypeError/ValueError unless ``meta``'s known facts have their proper types.

    Integers (``n_layers``, ``d_model``, ...) must be ints (not bools or strings), ``alpha`` a finite
    number, names strings (``steering`` a non-empty one).
    """
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise TypeError(f"meta must be a dict with string keys, got {type(meta).__name__}.")
    for key in _INT_META:
        if meta.get(key) is not None and strict_int(f"meta[{key!r}]", meta[key]) < 0:
            raise ValueError(f"meta[{key!r}] must be >= 0, got {meta[key]}.")
    for key in _TEXT_META:
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise TypeError(f"meta[{key!r}] must be a string, got {meta[key]!r} ({type(meta[key]).__name__}).")
    alpha = meta.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha)):
        raise TypeError(f"meta['alpha'] must be a finite number, got {alpha!r}.")
    if meta.get("steering") is not None and not meta["steering"].strip():
        raise ValueError("meta['steering'] must name a steering rule, got an empty name.")


def save_error(e: OSError, what: str) -> OSError:
    """An OSError that says what happened to the save, keeping the errno (e.g. ENOSPC).

    "Nothing was replaced" only when it is true: after a failed restore
    (:class:`~cosmic_tl.atomic.PartialWriteError`) the message says what is on disk instead.
    """
    from cosmic_tl.atomic import PartialWriteError

    if isinstance(e, PartialWriteError):
        return PartialWriteError(e.errno or errno.EIO, f"Could not save {what}: {e.strerror or e}", e.state)
    return OSError(e.errno or errno.EIO, f"Could not save {what}: {e.strerror or e}. Nothing was replaced: "
                   "the files previously at that path, if any, are unchanged.")


def tensor_bytes(tensor: Tensor) -> bytes:
    return tensor.contiguous().numpy().tobytes()
