"""Chat formatting with the tokenizer's own template, left padding and post-instruction positions.

COSMIC reads activations at the *post-instruction* tokens: the chat-template tokens that follow the
user's instruction (for Qwen ``<|im_end|>``, ``\\n``, ``<|im_start|>``, ``assistant``, ``\\n``).
With left padding these are the last ``n_pos`` tokens of every row, so positions ``-n_pos..-1``
address the same template token in every prompt.

The system turn is explicit. ``system=None`` is the paper's setting (no system turn, even for
templates such as Qwen's that insert a default one); ``system=DEFAULT_SYSTEM`` keeps whatever the
tokenizer's template does; any other string is used as the system prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

DEFAULT_SYSTEM = "default"
"""Sentinel for ``system=``: keep the tokenizer template's own default (e.g. "You are Qwen…")."""

_SENTINEL_USER = "\x00COSMIC_USER\x00"
_SENTINEL_SYSTEM = "\x00COSMIC_SYSTEM\x00"


class ChatTemplateError(ValueError):
    """The tokenizer has no usable chat template for the requested system setting."""


def system_label(system: str | None) -> str:
    """How a system setting is recorded in saved results."""
    if system is None:
        return "none"
    if system == DEFAULT_SYSTEM:
        return "default"
    return f"custom: {system}"


def check_instructions(instructions: Sequence[str]) -> None:
    """Raise TypeError unless ``instructions`` is a sequence of strings (not one string)."""
    if isinstance(instructions, str):
        raise TypeError("instructions must be a list of strings, not a single string; wrap it in a list.")
    for i, x in enumerate(instructions):
        if not isinstance(x, str):
            raise TypeError(f"instruction {i} must be a str, got {type(x).__name__}: {x!r:.80}.")


def _render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass(frozen=True)
class ChatFormat:
    """A chat template reduced to the text around one user instruction.

    Attributes:
        prefix: Everything before the instruction (BOS, system turn, user header).
        suffix: Everything after it (end of turn, assistant header): the post-instruction text.
        system: The system setting this format was built for (None, DEFAULT_SYSTEM or a prompt).
    """

    prefix: str
    suffix: str
    system: str | None

    def format(self, instructions: Sequence[str]) -> list[str]:
        """Chat-formatted prompt strings, ready to tokenize without extra special tokens."""
        check_instructions(instructions)
        return [self.prefix + x + self.suffix for x in instructions]


def chat_format(tokenizer, system: str | None = None) -> ChatFormat:
    """Derive the prefix/suffix around the instruction from the tokenizer's chat template.

    Args:
        tokenizer: A Hugging Face tokenizer with a ``chat_template``.
        system: None for no system turn (the paper's setting), :data:`DEFAULT_SYSTEM` for the
            template's default, or a system prompt.

    Raises:
        ChatTemplateError: if the tokenizer has no chat template, or no system-free form can be
            derived from it.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"The tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
            "COSMIC needs a chat (instruct) model. Base models do not refuse and are not supported."
        )
    user = [{"role": "user", "content": _SENTINEL_USER}]
    if system is None:
        text = _strip_default_system(tokenizer, _render(tokenizer, user))
    elif system == DEFAULT_SYSTEM:
        text = _render(tokenizer, user)
    else:
        text = _render(tokenizer, [{"role": "system", "content": system}] + user)
    prefix, _, suffix = text.partition(_SENTINEL_USER)
    return ChatFormat(prefix=prefix, suffix=suffix, system=system)


def _strip_default_system(tokenizer, text: str) -> str:
    """Remove a system turn that the template inserts when none is given (Qwen, SmolLM2)."""
    with_sys = _render(
        tokenizer,
        [{"role": "system", "content": _SENTINEL_SYSTEM}, {"role": "user", "content": _SENTINEL_USER}],
    )
    if _SENTINEL_SYSTEM not in with_sys:
        return text  # the template ignores system turns, so it cannot have inserted one
    sys_header = with_sys[: with_sys.index(_SENTINEL_SYSTEM)]
    # Leading text shared by every prompt (e.g. BOS) sits before the system header.
    lead = ""
    while sys_header and not text.startswith(sys_header):
        lead, sys_header = lead + sys_header[0], sys_header[1:]
    start = len(lead)
    if not sys_header.strip() or not text.startswith(sys_header, start):
        return text  # no default system turn
    # The system turn ends with the same end-of-turn text that closes a lone system message.
    try:
        sys_only = tokenizer.apply_chat_template(
            [{"role": "system", "content": _SENTINEL_SYSTEM}], tokenize=False, add_generation_prompt=False
        )
    except Exception as e:
        raise ChatTemplateError(
            "Cannot derive a chat format without a system turn from this template; "
            "pass system='default' or a system prompt."
        ) from e
    end_of_turn = sys_only.split(_SENTINEL_SYSTEM, 1)[1]
    user_at = text.index(_SENTINEL_USER)
    end = text.find(end_of_turn, start + len(sys_header), user_at) if end_of_turn else -1
    if end < 0:
        raise ChatTemplateError(
            "Cannot locate the default system turn in this chat template; "
            "pass system='default' or a system prompt."
        )
    return text[:start] + text[end + len(end_of_turn) :]


@dataclass
class TokenizedPrompts:
    """A left-padded batch with its explicit attention mask."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device) -> "TokenizedPrompts":
        return TokenizedPrompts(self.input_ids.to(device), self.attention_mask.to(device))


def tokenize_prompts(tokenizer, texts: Sequence[str], max_length: int | None = None) -> TokenizedPrompts:
    """Tokenize chat-formatted texts with left padding and an explicit attention mask.

    The texts already carry their special tokens, so none are added (no double BOS).

    Raises:
        ValueError: if a prompt is longer than ``max_length`` (the model's context).
    """
    if not texts:
        raise ValueError("No prompts to tokenize (the prompt list is empty).")
    pad_id = pad_token_id(tokenizer)
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    longest = max(len(r) for r in rows)
    if max_length is not None and longest > max_length:
        i = max(range(len(rows)), key=lambda k: len(rows[k]))
        raise ValueError(
            f"Prompt {i} is {longest} tokens long, longer than the model's context ({max_length}): "
            f"{texts[i][:80]!r}…; shorten or drop it."
        )
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, longest - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, longest - len(r) :] = 1
    return TokenizedPrompts(ids, mask)


def pad_token_id(tokenizer) -> int:
    """The pad id: the tokenizer's pad token, else its eos token."""
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise ChatTemplateError("The tokenizer has neither a pad nor an eos token.")
    return pid


def post_instruction_ids(tokenizer, fmt: ChatFormat) -> list[int]:
    """Token ids of the post-instruction template text (the ``eoi`` tokens), ``n_pos`` of them.

    They are read off a tokenized prompt (not the suffix alone) so that BPE merges at the boundary
    are what the model actually sees.
    """
    probe = fmt.format(["Hello there"])[0]
    full = tokenizer(probe, add_special_tokens=False)["input_ids"]
    alone = tokenizer(fmt.suffix, add_special_tokens=False)["input_ids"]
    if full[-len(alone) :] != alone:
        raise ChatTemplateError(
            "The post-instruction template text does not tokenize to the same ids inside a prompt; "
            "positions would be ambiguous for this template."
        )
    return alone
