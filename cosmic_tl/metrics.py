"""Evaluation metrics: refusal/ASR tables, next-token KL and cross-entropy of completions
(docs/method.md §7).

The pure formulas (:func:`~cosmic_tl.scores.kl_divergence`, :func:`~cosmic_tl.scores.refusal_score`)
live in :mod:`cosmic_tl.scores` and are re-exported here; the rest run a
:class:`~cosmic_tl.models.ChatModel`.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from cosmic_tl.generation import FwdHooks, longest_first
from cosmic_tl.judges import jailbreak_flags
from cosmic_tl.models import ChatModel
from cosmic_tl.prompts import pad_token_id
from cosmic_tl.scores import KL_EPS, REFUSAL_SCORE_EPS, kl_divergence, refusal_score  # noqa: F401  (public here too)

ALL_CATEGORIES = "all"
UNCATEGORIZED = "uncategorized"


def refusal_table(records: Sequence[dict], judge_flags: Sequence[bool], *, dataset: str, condition: str) -> pd.DataFrame:
    """Per-category and overall refusal rate and attack success rate.

    Args:
        records: ``{category, prompt, response}`` dicts (see ``completions_records``).
        judge_flags: A judge's refusal flags for the records, in order.
        dataset: Label for the ``dataset`` column (e.g. "harmful_test").
        condition: Label for the ``condition`` column (e.g. "baseline", "ablation").

    Returns:
        Columns dataset, condition, category, n, refusal_rate, asr. One row per category (sorted;
        a None category is "uncategorized"), omitted when no record has a category, then an
        "all" row. ``asr`` is the mean jailbreak flag (not a refusal and ≥ 2 characters) and
        ``refusal_rate = 1 − asr``, so empty or one-character responses count as refusals: the
        authors' harmless "1 − success rate" (docs/method.md §7).
    """
    if len(records) == 0:
        raise ValueError("No records to tabulate.")
    responses = [r["response"] for r in records]
    jailbroken = jailbreak_flags(judge_flags, responses)
    frame = pd.DataFrame(
        {"category": [r.get("category") or UNCATEGORIZED for r in records], "jailbroken": jailbroken}
    )
    groups = []
    if any(r.get("category") for r in records):
        groups = [(name, g["jailbroken"]) for name, g in frame.groupby("category", sort=True)]
    groups.append((ALL_CATEGORIES, frame["jailbroken"]))
    rows = [
        {
            "dataset": dataset,
            "condition": condition,
            "category": name,
            "n": len(flags),
            "refusal_rate": 1.0 - float(flags.mean()),
            "asr": float(flags.mean()),
        }
        for name, flags in groups
    ]
    return pd.DataFrame(rows)


def summarize(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stack refusal tables and keep only the overall ("all") rows, one per dataset × condition."""
    if len(tables) == 0:
        raise ValueError("No tables to summarize.")
    stacked = pd.concat(list(tables), ignore_index=True)
    return stacked[stacked["category"] == ALL_CATEGORIES].reset_index(drop=True)


def last_position_logits(
    model: ChatModel,
    instructions: Sequence[str],
    *,
    fwd_hooks: FwdHooks = (),
    batch_size: int = 32,
    progress: bool = False,
) -> Float[Tensor, "n vocab"]:
    """Next-token logits after each chat-formatted instruction (float32, on CPU), in input order.

    Prompts are batched by token length (longest first), so a batch pads little: on 100 TruthfulQA
    questions in batches of 16 that is a fifth fewer token positions than batching in input order.
    """
    if len(instructions) == 0:
        raise ValueError("No instructions (the list is empty).")
    instructions = list(instructions)
    order, _ = longest_first(model, instructions)
    chunks = []
    starts = range(0, len(order), batch_size)
    for i in tqdm(starts, desc="last-position logits", disable=not progress):
        tokens = model.tokenize([instructions[k] for k in order[i : i + batch_size]])
        with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(fwd_hooks)):
            # logits_to_keep=1: unembedding every position would cost more than the model body.
            logits = model.bridge(tokens.input_ids, attention_mask=tokens.attention_mask, logits_to_keep=1)
        # Left padding puts every prompt's last real token at position -1.
        chunks.append(logits[:, -1].float().cpu())
    by_length = torch.cat(chunks)
    out = torch.empty_like(by_length)
    out[order] = by_length  # back to input order
    return out


def next_token_kl(
    model: ChatModel,
    instructions: Sequence[str],
    fwd_hooks: FwdHooks,
    batch_size: int = 32,
    *,
    progress: bool = False,
) -> float:
    """Mean over prompts of KL(baseline ‖ hooked) of the next-token distribution (docs/method.md §7).

    Examples:
        >>> next_token_kl(model, data.harmless_test, steering_hooks(d, "ace", "ablation", model=model))  # doctest: +SKIP
        0.031...
    """
    base = last_position_logits(model, instructions, batch_size=batch_size, progress=progress)
    hooked = last_position_logits(model, instructions, fwd_hooks=fwd_hooks, batch_size=batch_size, progress=progress)
    return float(kl_divergence(base, hooked).mean())


def ce_loss(
    model: ChatModel,
    instructions: Sequence[str],
    completions: Sequence[str],
    fwd_hooks: FwdHooks = (),
    batch_size: int = 8,
    *,
    progress: bool = False,
) -> dict:
    """Cross-entropy of completions given their chat-formatted instructions.

    Each row is the prompt's token ids followed by the completion's (tokenized on its own, no
    special tokens, no eos appended). Only completion tokens are scored, starting with the
    first one, which the last template token predicts; prompt and padding are masked out.

    Returns:
        ``{"ce": total NLL / n_tokens, "ppl": exp(ce), "n_tokens": n_tokens}``.

    Raises:
        ValueError: on mismatched lengths, a row longer than the model's context, or no
            completion tokens at all.
    """
    if len(instructions) != len(completions):
        raise ValueError(f"{len(instructions)} instructions but {len(completions)} completions; they must pair up.")
    if len(instructions) == 0:
        raise ValueError("No instructions (the list is empty).")
    prompts, answers = _prompt_answer_ids(model, instructions, completions)
    total_nll, n_tokens = 0.0, 0
    starts = range(0, len(prompts), batch_size)
    for i in tqdm(starts, desc="ce loss", disable=not progress):
        nll, n = _batch_nll(model, prompts[i : i + batch_size], answers[i : i + batch_size], fwd_hooks)
        total_nll += nll
        n_tokens += n
    if n_tokens == 0:
        raise ValueError("Every completion is empty; there are no tokens to score.")
    ce = total_nll / n_tokens
    return {"ce": ce, "ppl": math.exp(ce), "n_tokens": n_tokens}


def reply_kl(
    model: ChatModel,
    instructions: Sequence[str],
    replies: Sequence[str],
    fwd_hooks: FwdHooks,
    n_tokens: int = 16,
    batch_size: int = 8,
    *,
    progress: bool = False,
) -> dict:
    """Mean KL(unsteered ‖ hooked) over the first ``n_tokens`` tokens of the unsteered replies.

    Teacher-forced: each row is the chat-formatted instruction followed by the first ``n_tokens``
    tokens of ``replies`` (the unsteered model's own greedy replies), and the two models' next-token
    distributions are compared at every position that predicts a reply token: the first is the
    next-token KL, the others show damage that only appears once the reply is under way
    (docs/method.md §7).

    Returns:
        ``{"kl": mean over scored positions, "n_positions": how many, "n_tokens": n_tokens}``.

    Raises:
        ValueError: mismatched lengths, ``n_tokens`` < 1, or every reply empty.
    """
    if len(instructions) != len(replies):
        raise ValueError(f"{len(instructions)} instructions but {len(replies)} replies; they must pair up.")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens must be an int >= 1, got {n_tokens!r}.")
    prompts, answers = _prompt_answer_ids(model, instructions, replies)
    answers = [a[:n_tokens] for a in answers]
    total, count = 0.0, 0
    for i in tqdm(range(0, len(prompts), batch_size), desc="reply kl", disable=not progress):
        rows = (prompts[i : i + batch_size], answers[i : i + batch_size])
        base, _ = _answer_logits(model, *rows, ())
        hooked, _ = _answer_logits(model, *rows, fwd_hooks)
        kl = kl_divergence(base, hooked)
        total, count = total + float(kl.sum()), count + kl.numel()
    if count == 0:
        raise ValueError("Every reply is empty; there are no reply tokens to compare.")
    return {"kl": total / count, "n_positions": count, "n_tokens": n_tokens}


def _prompt_answer_ids(model: ChatModel, instructions: Sequence[str],
                       completions: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of the chat-formatted instructions and of the completions (no special tokens)."""
    tok = model.tokenizer
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in model.format(list(instructions))]
    answers = [tok(c, add_special_tokens=False)["input_ids"] for c in completions]
    return prompts, answers


def _batch_nll(
    model: ChatModel, prompts: list[list[int]], answers: list[list[int]], fwd_hooks: FwdHooks
) -> tuple[float, int]:
    pred, target = _answer_logits(model, prompts, answers, fwd_hooks)
    nll = torch.nn.functional.cross_entropy(pred, target, reduction="sum")
    return float(nll), int(target.numel())


def _answer_logits(
    model: ChatModel, prompts: list[list[int]], answers: list[list[int]], fwd_hooks: FwdHooks
) -> tuple[Float[Tensor, "n_scored vocab"], Tensor]:
    """Teacher-forced logits at every position that predicts an answer token, and those tokens.

    Rows are prompt + answer, left padded; rows are scored in order, answer tokens in order.
    """
    rows = [p + a for p, a in zip(prompts, answers)]
    width = max(len(r) for r in rows)
    if model.max_context is not None and width > model.max_context:
        raise ValueError(f"A prompt plus completion is {width} tokens, longer than the context ({model.max_context}).")
    ids = torch.full((len(rows), width), pad_token_id(model.tokenizer), dtype=torch.long)
    mask = torch.zeros_like(ids)
    scored = torch.zeros_like(ids, dtype=torch.bool)  # True where the *target* token is a completion token
    for k, (row, answer) in enumerate(zip(rows, answers)):
        ids[k, width - len(row) :] = torch.tensor(row)
        mask[k, width - len(row) :] = 1
        if answer:
            scored[k, width - len(answer) :] = True
    ids, mask = ids.to(model.device), mask.to(model.device)
    # Left padding puts every completion at the end of its row, so only the last `keep` positions
    # predict a scored token: unembedding just those (not every prompt position) is most of the saving.
    keep = max(len(a) for a in answers) + 1
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(fwd_hooks)):
        logits = model.bridge(ids, attention_mask=mask, logits_to_keep=keep)
    # Logits at position t predict token t+1; select only the positions whose target is scored.
    first = width - logits.shape[1]  # the row position of the first kept logit
    select = scored[:, first + 1 :].to(logits.device)
    return logits[:, :-1][select].float(), ids[:, first + 1 :][select]
