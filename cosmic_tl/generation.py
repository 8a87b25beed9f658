"""Batched greedy generation with hooks active on every decoding step (spec §7.1).

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

from cosmic_tl.models import ChatModel

FwdHooks = Sequence[tuple[Any, Any]]
"""TransformerLens forward hooks: ``[(hook_name_or_filter, fn(tensor, hook)), ...]``."""


def generate_completions(
    model: ChatModel,
    instructions: Sequence[str],
    *,
    fwd_hooks: FwdHooks = (),
    max_new_tokens: int = 64,
    batch_size: int = 16,
    progress: bool = True,
) -> list[str]:
    """Greedy responses to instructions, in the order given.

    Args:
        model: The chat model; prompts are formatted with its chat template and system setting.
        instructions: Raw user instructions (not chat formatted).
        fwd_hooks: Forward hooks active on the prompt pass and on every decoding step.
        max_new_tokens: The most tokens generated per response (the paper uses 512).
        batch_size: Prompts per generate call (the paper uses 64).
        progress: Show a progress bar over batches.

    Returns:
        One response per instruction: the generated tokens cut at the first eos token, decoded
        without special tokens and stripped of surrounding whitespace.

    Raises:
        ValueError: if ``instructions`` is empty, ``max_new_tokens``/``batch_size`` < 1, or a prompt
            plus ``max_new_tokens`` does not fit the model's context.
    """
    if isinstance(instructions, str):
        raise TypeError("instructions must be a sequence of strings, not a single string.")
    if len(instructions) == 0:
        raise ValueError("No instructions to generate from (the list is empty).")
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens} and {batch_size}.")
    order = _longest_first(model, instructions, max_new_tokens)
    responses: list[str | None] = [None] * len(instructions)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generate", disable=not progress):
        texts = _generate_batch(model, [instructions[i] for i in batch], fwd_hooks, max_new_tokens)
        for i, text in zip(batch, texts):
            responses[i] = text
    return responses  # type: ignore[return-value]


def _longest_first(model: ChatModel, instructions: Sequence[str], max_new_tokens: int) -> list[int]:
    """Indices of the instructions sorted by formatted token length, longest first.

    Longest first means a prompt too long for memory fails in the first batch, not the last.
    The sort is stable, so equal-length prompts keep their order. A prompt whose completion would
    run past the model's context is refused here, before any generation.
    """
    lengths = [len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in model.format(instructions)]
    order = sorted(range(len(instructions)), key=lambda i: -lengths[i])
    context, longest = model.max_context, lengths[order[0]]
    if context is not None and longest + max_new_tokens > context:
        raise ValueError(
            f"Prompt {order[0]} is {longest} tokens long; with max_new_tokens={max_new_tokens} it would "
            f"exceed the model's context ({context} tokens). Shorten the prompt or lower max_new_tokens."
        )
    return order


def _generate_batch(model: ChatModel, instructions: list[str], fwd_hooks: FwdHooks, max_new_tokens: int) -> list[str]:
    tokens = model.tokenize(instructions)
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(fwd_hooks)):
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
    """Records ``{category, prompt, response}`` as the authors save them (spec §7.1).

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
