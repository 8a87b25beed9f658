"""Where a model's files come from: shipped short names, local folders, GGUF files, Hugging Face ids.

Everything here only looks at files (a shipped model's packages, a GGUF header, a folder's
``config.json``, tokenizer and weights), so a bad ``--model`` is refused before any weights load
or any run folder exists. A damaged model folder is named with the file at fault and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cosmic_tl import shipped


class ModelNotFoundError(ValueError):
    """The name is neither a shipped model, a local model path, nor a loadable Hugging Face id."""


# A local Hugging Face folder needs, besides config.json, one tokenizer file and weights.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def check_model_folder(path: Path) -> None:
    """Raise :class:`ModelNotFoundError` naming what ``path`` lacks to be a loadable model folder."""
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{path} is not a model: expected a Hugging Face folder with config.json "
            "(and weights), or a .gguf file."
        )
    _check_config_json(path / "config.json")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise ModelNotFoundError(
            f"{path} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}); save it beside the "
            "weights with tokenizer.save_pretrained(folder)."
        )
    if not any(next(path.glob(pattern), None) for pattern in _WEIGHT_PATTERNS):
        raise ModelNotFoundError(
            f"{path} has no weights (no {' or '.join(_WEIGHT_PATTERNS)} file); save them with "
            "model.save_pretrained(folder)."
        )


def check_model_source(name_or_path: str) -> None:
    """Raise the error :func:`load_model` would raise for an unusable name, without loading weights.

    Only files are checked (a shipped model's packages, a GGUF header, a folder's contents), so a
    run can refuse a bad ``--model`` before it creates anything.
    """
    resolve_source(name_or_path, check_only=True)


def _check_config_json(config: Path) -> None:
    """A model folder's config.json must decode to an object naming its architecture."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ModelNotFoundError(
            f"{config} is not valid JSON ({e}): the model folder is damaged. Save the model again "
            "with model.save_pretrained(folder), or download it again."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ModelNotFoundError(
            f"{config} has no 'model_type': it is not a Hugging Face model config. Save the model "
            "with model.save_pretrained(folder)."
        )


def resolve_source(name_or_path: str, check_only: bool = False) -> tuple[Path | str, str]:
    """Return (what to load with from_pretrained, the HF id that names the architecture).

    With ``check_only`` nothing is assembled or dequantized: only the checks run.

    Raises:
        TypeError: ``name_or_path`` is not a string or a path.
        ModelNotFoundError: an empty name, an unknown name, or a path that is not a model.
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise TypeError(
            f"name_or_path (the model) must be a string or a path, got {type(name_or_path).__name__}: "
            f"{name_or_path!r:.60}."
        )
    if not name_or_path.strip():
        raise ModelNotFoundError(
            f"The model name is empty. Shipped offline models: {', '.join(shipped.SHIPPED_MODELS)}; "
            "or pass a Hugging Face id, a local Hugging Face folder or a .gguf file."
        )
    if name_or_path in shipped.SHIPPED_MODELS:
        m = shipped.SHIPPED_MODELS[name_or_path]
        if check_only:
            shipped.check_available(name_or_path)
            return name_or_path, m.hf_id
        return shipped.ensure_shipped(name_or_path), m.hf_id
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise ModelNotFoundError(f"GGUF file {path} {problem}.")
        if check_only:
            shipped.check_gguf(path)
            return path, str(path)
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        out = shipped.cache_root() / "hf" / f"{path.stem}-{key}"
        return shipped.dequantize_gguf(path, out), str(path)
    if path.exists():
        check_model_folder(path)
        return path, str(path)
    if name_or_path.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"Model path {path} does not exist.")
    if "/" in name_or_path:
        return name_or_path, name_or_path  # a Hugging Face id
    raise ModelNotFoundError(
        f"Unknown model {name_or_path!r}. Shipped offline models: {', '.join(shipped.SHIPPED_MODELS)}. "
        "Otherwise pass a Hugging Face id (e.g. 'Qwen/Qwen2.5-0.5B-Instruct', needs a network or "
        "a local HF cache), a local Hugging Face folder, or a .gguf file."
    )
