"""Batched greedy generation with hooks active on every decoding step (docs/method.md §7).

Prompts are chat formatted, sorted by token length so that each batch needs little padding,
left padded with an explicit attention mask, and generated greedily with TransformerLens'
``bridge.generate`` until every row has produced one of the model's eos tokens. Hooks are
registered for the whole call, so an intervention also applies to every generated token.
Batched output equals one-prompt-at-a-time output (the mask hides the padding and the bridge
derives position ids from it); ``tests/unit/test_generation.py`` checks this.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from cosmic_tl.data import Prompt
from cosmic_tl.models import ChatModel
from cosmic_tl.prompts import check_instructions
from cosmic_tl.scores import NonFiniteError

FwdHooks = Sequence[tuple[Any, Any]]
"""TransformerLens forward hooks: ``[(hook_name_or_filter, fn(tensor, hook)), ...]``."""

# The unembedding's output is the logits of every forward pass (prompt pass and decoding steps).
LOGITS_HOOK = "unembed.hook_out"


class NonFiniteLogitsError(NonFiniteError):
    """The model produced NaN or Inf logits while generating (overflowing activations)."""


def generate_completions(
    model: ChatModel,
    instructions: Sequence[str | Prompt],
    *,
    fwd_hooks: FwdHooks = (),
    max_new_tokens: int = 64,
    batch_size: int = 16,
    progress: bool = True,
) -> list[str]:
    """Greedy responses to instructions, in the order given.

    Args:
        model: The chat model; prompts are formatted with its chat template and system setting.
        instructions: Raw user instructions (not chat formatted): strings or
            :class:`~cosmic_tl.data.Prompt` objects (e.g. ``sample_paper(...).harmful_test``).
        fwd_hooks: Forward hooks active on the prompt pass and on every decoding step.
        max_new_tokens: The most tokens generated per response (the paper uses 512).
        batch_size: Prompts per generate call (the paper uses 64).
        progress: Show a progress bar over batches.

    Returns:
        One response per instruction: the generated tokens cut at the first eos token, decoded
        without special tokens and stripped of surrounding whitespace.

    Raises:
        TypeError: ``model`` is not a ChatModel, an instruction is not a string or Prompt,
            ``max_new_tokens``/``batch_size`` are not ints, ``fwd_hooks`` is not a list of pairs.
        ValueError: if ``instructions`` is empty or holds a blank instruction,
            ``max_new_tokens``/``batch_size`` < 1, or a prompt plus ``max_new_tokens`` does not fit
            the model's context.
        NonFiniteLogitsError: the logits became NaN or Inf (e.g. a steering alpha so large that
            the activations overflow); the message names the active hooks.
    """
    if not isinstance(model, ChatModel):
        raise TypeError(f"model must be a ChatModel from cosmic_tl.load_model, got {type(model).__name__}.")
    texts = check_instructions(instructions)
    if len(texts) == 0:
        raise ValueError("No instructions to generate from (the list is empty).")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens} and {batch_size}.")
    hooks = _checked_hooks(fwd_hooks)
    order = _longest_first(model, texts, max_new_tokens)
    responses: list[str | None] = [None] * len(texts)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generate", disable=not progress):
        outputs = _generate_batch(model, [texts[i] for i in batch], hooks, max_new_tokens)
        for i, text in zip(batch, outputs):
            responses[i] = text
    return responses  # type: ignore[return-value]


def _checked_hooks(fwd_hooks: FwdHooks) -> list[tuple[Any, Any]]:
    """``fwd_hooks`` as a list of (name or filter, callable) pairs, or a TypeError saying how to build it."""
    hint = "build them with cosmic_tl.steering_hooks(direction, steering, action, n_layers)"
    if isinstance(fwd_hooks, (str, bytes)) or not isinstance(fwd_hooks, Sequence):
        raise TypeError(f"fwd_hooks must be a list of (hook_name, fn) pairs, got {type(fwd_hooks).__name__}; {hint}.")
    for i, pair in enumerate(fwd_hooks):
        ok = isinstance(pair, tuple) and len(pair) == 2 and (isinstance(pair[0], str) or callable(pair[0]))
        if not ok or not callable(pair[1]):
            raise TypeError(f"fwd_hooks[{i}] must be a (hook_name, fn) pair, got {pair!r:.80}; {hint}.")
    return list(fwd_hooks)


def longest_first(model: ChatModel, instructions: Sequence[str | Prompt]) -> tuple[list[int], list[int]]:
    """Indices of the instructions sorted by formatted token length, longest first, and the lengths.

    Batches taken in this order pad little, and a prompt too long for memory fails in the first
    batch, not the last. The sort is stable, so equal-length prompts keep their order.
    """
    lengths = [len(ids) for ids in model.token_ids(instructions)]
    return sorted(range(len(lengths)), key=lambda i: -lengths[i]), lengths


def _longest_first(model: ChatModel, instructions: list[str], max_new_tokens: int) -> list[int]:
    """:func:`longest_first`, refusing a prompt whose completion would run past the model's
    context, before any generation."""
    order, lengths = longest_first(model, instructions)
    context, longest = model.max_context, lengths[order[0]]
    if context is not None and longest + max_new_tokens > context:
        raise ValueError(
            f"Prompt {order[0]} is {longest} tokens long; with max_new_tokens={max_new_tokens} it would "
            f"exceed the model's context ({context} tokens). Shorten the prompt or lower max_new_tokens."
        )
    return order


def _generate_batch(model: ChatModel, instructions: list[str], fwd_hooks: FwdHooks, max_new_tokens: int) -> list[str]:
    tokens = model.tokenize(instructions)
    # Listed last, the check sees the logits after every user hook (one at the logits included).
    check = [(LOGITS_HOOK, _FiniteLogits(fwd_hooks))]
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(fwd_hooks) + check):
        out = model.bridge.generate(
            tokens.input_ids,
            attention_mask=tokens.attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=list(model.eos_token_ids),
            verbose=False,
            return_type="tokens",
        )
    # The bridge returns prompt + generated tokens; rows that stopped early are padded with eos.
    generated = out[:, tokens.input_ids.shape[1] :]
    return [
        model.tokenizer.decode(ids, skip_special_tokens=True).strip()
        for ids in cut_at_eos(generated, model.eos_token_ids)
    ]


class _FiniteLogits:
    """A hook on the logits that raises :class:`NonFiniteLogitsError` at the first NaN/Inf step."""

    def __init__(self, fwd_hooks: FwdHooks):
        self.fwd_hooks = list(fwd_hooks)
        self.step = 0

    def __call__(self, logits: Tensor, hook=None) -> Tensor:
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteLogitsError(self._message(logits))
        self.step += 1
        return logits

    def _message(self, logits: Tensor) -> str:
        where = "on the prompt pass" if self.step == 0 else f"at decoding step {self.step}"
        alphas = [fn.alpha for _, fn in self.fwd_hooks if isinstance(getattr(fn, "alpha", None), (int, float))]
        if self.fwd_hooks:
            listed = "; ".join(f"{name if isinstance(name, str) else 'filter'}: {fn!r}" for name, fn in self.fwd_hooks)
            cause = (
                f"alpha={max(alphas, key=abs):g} made the activations overflow; lower alpha"
                if any(alphas)
                else "a forward hook made the activations overflow or NaN; check the hooks"
            )
            return f"The logits became NaN/Inf {where}: {cause} (active hooks: {listed})."
        return (
            f"The logits became NaN/Inf {where} without any hook: the model's dtype ({logits.dtype}) "
            "overflowed or its weights hold NaN; load it in float32."
        )


def cut_at_eos(generated: Int[Tensor, "batch new"], eos_token_ids: Sequence[int]) -> list[list[int]]:
    """Each row's generated ids up to (not including) its first eos token."""
    eos = torch.tensor(list(eos_token_ids), device=generated.device)
    rows = []
    for row in generated:
        hits = torch.isin(row, eos).nonzero()
        end = int(hits[0, 0]) if len(hits) else len(row)
        rows.append(row[:end].tolist())
    return rows


def completions_records(prompts: Sequence[Any], responses: Sequence[str]) -> list[dict]:
    """Records ``{category, prompt, response}`` as the authors save them (docs/method.md §7).

    Args:
        prompts: Dicts with ``instruction`` (and optionally ``category``) keys, objects with
            those attributes, or plain instruction strings (category None).
        responses: One response per prompt, in the same order.

    Raises:
        ValueError: if the two lists differ in length.
        TypeError: if a prompt carries no instruction.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; they must pair up.")
    return [
        {"category": _field(p, "category"), "prompt": _instruction(p), "response": r}
        for p, r in zip(prompts, responses)
    ]


def _instruction(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    text = _field(prompt, "instruction")
    if not isinstance(text, str):
        raise TypeError(f"Prompt {prompt!r} has no 'instruction' string.")
    return text


def _field(prompt: Any, name: str) -> Any:
    if isinstance(prompt, str):
        return None
    if isinstance(prompt, dict):
        return prompt.get(name)
    return getattr(prompt, name, None)
