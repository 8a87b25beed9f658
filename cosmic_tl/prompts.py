"""Chat formatting with the tokenizer's own template, left padding and post-instruction positions.

COSMIC reads activations at the *post-instruction* tokens: the chat-template tokens that follow the
user's instruction (for Qwen ``<|im_end|>``, ``\\n``, ``<|im_start|>``, ``assistant``, ``\\n``).
With left padding these are the last ``n_pos`` tokens of every row, so positions ``-n_pos..-1``
address the same template token in every prompt.

User text is tokenized as text. An instruction that contains the template's own special-token
text (e.g. ``"<|im_end|>\n<|im_start|>assistant\n"``) would otherwise become real special tokens
and forge turns; such an instruction is tokenized in three pieces, template prefix, the
instruction with every added token taken as plain text, template suffix, so its ids hold no
special token and the post-instruction positions stay the template's. Instructions without such
text (all ordinary ones) are tokenized as one string, exactly as a chat client would.

The system turn is explicit. ``system=None`` is the paper's setting (no system turn, even for
templates such as Qwen's that insert a default one); ``system=DEFAULT_SYSTEM`` keeps whatever the
tokenizer's template does; any other string is used as the system prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from cosmic_tl.data import Prompt, is_blank

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


def check_instructions(instructions: Sequence[str | Prompt]) -> list[str]:
    """The instruction strings of ``instructions`` (strings or :class:`~cosmic_tl.data.Prompt` objects).

    Every function that takes instructions calls this, so what :func:`cosmic_tl.sample_paper` and
    :func:`cosmic_tl.load_prompts` return (``Prompt`` objects) can be passed as it is.

    Raises:
        TypeError: ``instructions`` is one string (not a list of them), not a sequence, or holds
            something else than a string or a Prompt.
        ValueError: an instruction is empty or invisible (only whitespace or zero-width characters).
    """
    if isinstance(instructions, (str, bytes)):
        raise TypeError("instructions must be a list of strings, not a single string; wrap it in a list.")
    if not isinstance(instructions, Sequence):
        raise TypeError(
            f"instructions must be a list of strings or Prompt objects, got {type(instructions).__name__}."
        )
    texts = []
    for i, x in enumerate(instructions):
        text = x.instruction if isinstance(x, Prompt) else x
        if not isinstance(text, str):
            raise TypeError(f"instruction {i} must be a str or a Prompt, got {type(x).__name__}: {x!r:.80}.")
        if is_blank(text):
            raise ValueError(
                f"instruction {i} is empty or invisible (only whitespace or zero-width characters: "
                f"{text!r:.40}); remove it."
            )
        texts.append(text)
    return texts


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

    def format(self, instructions: Sequence[str | Prompt]) -> list[str]:
        """Chat-formatted prompt strings, for display; tokenize with :meth:`token_ids`, which keeps
        special-token text in an instruction as text."""
        return [self.prefix + x + self.suffix for x in check_instructions(instructions)]

    def token_ids(self, tokenizer, instruction: str) -> list[int]:
        """The ids of one chat-formatted instruction; the instruction's text never yields special tokens.

        An ordinary instruction is tokenized with the template as one string (the ids a chat client
        produces). One that contains an added token's text (``<|im_end|>``, ``<|im_start|>``, ...) is
        tokenized in pieces: the prefix and suffix as the template, the instruction as plain text.
        """
        if not any(token in instruction for token in added_token_texts(tokenizer)):
            return tokenizer(self.prefix + instruction + self.suffix, add_special_tokens=False)["input_ids"]
        return (
            tokenizer(self.prefix, add_special_tokens=False)["input_ids"]
            + plain_text_ids(tokenizer, instruction)
            + tokenizer(self.suffix, add_special_tokens=False)["input_ids"]
        )


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


def added_token_texts(tokenizer) -> list[str]:
    """The text of every added token (special or not) that the tokenizer would match whole."""
    return [t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.content]


def plain_text_ids(tokenizer, text: str) -> list[int]:
    """``text`` tokenized as text: no added token is matched, so ``"<|im_end|>"`` becomes ``<``, ``|``, ....

    Fast tokenizers run their normalizer, pre-tokenizer and model directly (which never match
    added tokens, special or not); others fall back to ``split_special_tokens=True``.
    """
    backend: Any = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    pieces = backend.pre_tokenizer.pre_tokenize_str(text) if backend.pre_tokenizer is not None else [(text, None)]
    return [token.id for piece, _ in pieces for token in backend.model.tokenize(piece)]


@dataclass
class TokenizedPrompts:
    """A left-padded batch with its explicit attention mask."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device) -> "TokenizedPrompts":
        return TokenizedPrompts(self.input_ids.to(device), self.attention_mask.to(device))


def tokenize_instructions(
    tokenizer, fmt: ChatFormat, instructions: Sequence[str | Prompt], max_length: int | None = None
) -> TokenizedPrompts:
    """Chat-format and tokenize user instructions (left padding, explicit mask), text kept as text.

    See :meth:`ChatFormat.token_ids`: an instruction containing special-token text cannot forge
    turns, and the last ``n_pos`` ids of every row are the template's post-instruction tokens.

    Raises:
        TypeError, ValueError: bad instructions (see :func:`check_instructions`), an empty list, or
            a prompt longer than ``max_length`` (the model's context).
    """
    texts = check_instructions(instructions)
    return _left_padded(tokenizer, [fmt.token_ids(tokenizer, t) for t in texts], texts, max_length)


def tokenize_prompts(tokenizer, texts: Sequence[str], max_length: int | None = None) -> TokenizedPrompts:
    """Tokenize already chat-formatted texts with left padding and an explicit attention mask.

    The texts are trusted: special-token text anywhere in them becomes special tokens, and none
    are added (no double BOS). For user instructions use :func:`tokenize_instructions`.

    Raises:
        ValueError: if a prompt is longer than ``max_length`` (the model's context).
    """
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return _left_padded(tokenizer, rows, list(texts), max_length)


def _left_padded(tokenizer, rows: list[list[int]], texts: list[str], max_length: int | None) -> TokenizedPrompts:
    if not rows:
        raise ValueError("No prompts to tokenize (the prompt list is empty).")
    pad_id = pad_token_id(tokenizer)
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
