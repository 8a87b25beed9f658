"""Run a model over prompt batches and read the residual stream through TransformerLens hooks.

Two read-outs serve the whole method:

- :func:`mean_resid_pre`: running float64 means of ``blocks.{l}.hook_resid_pre`` at the last
  ``n_pos`` (post-instruction) positions, never holding every prompt's activations in memory.
- :func:`last_token_readouts`: the last token's hidden state at read-out indices ``j`` in the HF
  ``hidden_states[1:]`` convention (output of block ``j``; the last index is the final-norm output),
  under any intervention hooks.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from cosmic_tl.directions import Candidates
from cosmic_tl.models import ChatModel
from cosmic_tl.prompts import TokenizedPrompts, check_instructions

Hooks = list[tuple[str, Callable]]


def batches(model: ChatModel, instructions: Sequence[str], batch_size: int) -> Iterator[TokenizedPrompts]:
    """Tokenized left-padded batches; prompts are grouped by length to cut padding."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    check_instructions(instructions)
    order = sorted(range(len(instructions)), key=lambda i: len(instructions[i]))
    for start in range(0, len(order), batch_size):
        yield model.tokenize([instructions[i] for i in order[start : start + batch_size]])


def _check_layers(model: ChatModel, layers: Sequence[int]) -> list[int]:
    layers = list(layers)
    if not layers:
        raise ValueError("No layers to read (the layer list is empty).")
    bad = [l for l in layers if not 0 <= l < model.n_layers]
    if bad:
        raise ValueError(
            f"Layer indices {bad} are out of range for a {model.n_layers}-layer model "
            f"(valid: 0..{model.n_layers - 1})."
        )
    return layers


@torch.no_grad()
def mean_resid_pre(
    model: ChatModel,
    instructions: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    fwd_hooks: Hooks = (),
    progress: bool = True,
    desc: str = "activations",
) -> Float[Tensor, "n_pos n_layers d_model"]:
    """Mean residual stream entering each block, at the last ``n_pos`` positions, in float64.

    Args:
        model: The chat model.
        instructions: Raw instructions (chat formatting is applied here).
        layers: Blocks to read (default: all). The result's layer axis follows this order.
        batch_size: Prompts per forward pass.
        fwd_hooks: Interventions active during the pass (e.g. a weakened model).
        progress: Show a tqdm bar.

    Returns:
        ``mu[i, k]``: the mean over prompts of ``blocks.{layers[k]}.hook_resid_pre`` at position
        ``-n_pos + i``.
    """
    if not instructions:
        raise ValueError("Cannot take means over an empty prompt set.")
    layers = _check_layers(model, range(model.n_layers) if layers is None else layers)
    n_pos = model.n_pos
    total = torch.zeros(n_pos, len(layers), model.d_model, dtype=torch.float64, device=model.device)

    def make_reader(k: int):
        def read(x: Tensor, hook) -> None:
            total[:, k] += x[:, -n_pos:, :].to(torch.float64).sum(0)

        return read

    readers = [(f"blocks.{l}.hook_resid_pre", make_reader(k)) for k, l in enumerate(layers)]
    n_batches = -(-len(instructions) // batch_size)
    with model.bridge.hooks(fwd_hooks=list(fwd_hooks) + readers):
        for batch in tqdm(batches(model, instructions, batch_size), total=n_batches, desc=desc, disable=not progress):
            # Nothing after the deepest read block is needed.
            model.bridge(batch.input_ids, attention_mask=batch.attention_mask, stop_at_layer=max(layers) + 1)
    means = total / len(instructions)
    if not torch.isfinite(means).all():
        raise FloatingPointError(
            "Non-finite values (NaN/Inf) in the mean activations; try float32 instead of float16."
        )
    return means


def readout_hook_names(model: ChatModel, readout_layers: Sequence[int], after_intervention: bool) -> list[str]:
    """Hook points holding HF ``hidden_states[1 + j]`` for each read-out index ``j``.

    Index ``n_layers - 1`` is the final-norm output (HF appends ``model.norm``'s output last).
    With ``after_intervention`` the output of block ``j`` is read where it enters block ``j + 1``,
    after any intervention hooked there: this reproduces the authors' in-place LCE hooks, whose
    edit of the block-``j+1`` input also shows in HF's ``hidden_states`` (COSMIC_SPEC §4.3, §10).
    """
    names = []
    for j in readout_layers:
        if j == model.n_layers - 1:
            names.append("ln_final.hook_out")
        elif after_intervention:
            names.append(f"blocks.{j + 1}.hook_resid_pre")
        else:
            names.append(f"blocks.{j}.hook_resid_post")
    return names


@torch.no_grad()
def last_token_readouts(
    model: ChatModel,
    batch: TokenizedPrompts,
    readout_layers: Sequence[int],
    *,
    fwd_hooks: Hooks = (),
    after_intervention: bool = False,
    return_logits: bool = False,
) -> tuple[Float[Tensor, "batch n_readouts d_model"], Float[Tensor, "batch d_vocab"] | None]:
    """Last-token hidden states at the read-out indices (HF ``hidden_states[1:]`` convention).

    Args:
        model: The chat model.
        batch: One tokenized batch.
        readout_layers: Read-out indices ``j`` (output of block ``j``; ``n_layers-1`` = final norm).
        fwd_hooks: Interventions, registered before the readers so readers see their effect.
        after_intervention: See :func:`readout_hook_names`.
        return_logits: Also return the last position's logits (runs the whole model).

    Returns:
        (read-outs in float32, last-position logits in float32 or None).
    """
    names = readout_hook_names(model, _check_layers(model, readout_layers), after_intervention)
    out: list[Tensor | None] = [None] * len(names)

    def make_reader(k: int):
        def read(x: Tensor, hook) -> None:
            out[k] = x[:, -1, :].to(torch.float32)

        return read

    readers = [(name, make_reader(k)) for k, name in enumerate(names)]
    needs_final = return_logits or "ln_final.hook_out" in names
    # Stop after the deepest block whose hook we read, unless logits or the final norm are needed.
    deepest = None if needs_final else max(int(n.split(".")[1]) for n in names) + 1
    with model.bridge.hooks(fwd_hooks=list(fwd_hooks) + readers):
        # logits_to_keep=1: the unembedding of every position would cost more than the body.
        extra = {"logits_to_keep": 1} if deepest is None else {}
        logits = model.bridge(batch.input_ids, attention_mask=batch.attention_mask, stop_at_layer=deepest, **extra)
    last_logits = logits[:, -1, :].to(torch.float32) if return_logits else None
    return torch.stack(out, dim=1), last_logits


def candidate_directions(
    model: ChatModel,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    batch_size: int = 32,
    fwd_hooks: Hooks = (),
    progress: bool = True,
) -> Candidates:
    """Difference-in-means candidate directions at every (post-instruction position, layer).

    ``r[i, l] = mean_harmful - mean_harmless`` of ``blocks.{l}.hook_resid_pre`` at position
    ``-n_pos + i`` (float64, not normalised); the harmless means are kept as the ACE reference.

    Args:
        model: The chat model (its current system setting formats the prompts).
        harmful, harmless: Training instructions.
        batch_size: Prompts per forward pass.
        fwd_hooks: Interventions active while reading (e.g. inside a weakened model).
        progress: Show progress bars.
    """
    kw = dict(batch_size=batch_size, fwd_hooks=fwd_hooks, progress=progress)
    mu_pos = mean_resid_pre(model, harmful, desc="activations (harmful)", **kw)
    mu_neg = mean_resid_pre(model, harmless, desc="activations (harmless)", **kw)
    return Candidates(
        r=mu_pos - mu_neg,
        mu_harmless=mu_neg,
        mu_harmful=mu_pos,
        positions=list(range(-model.n_pos, 0)),
        n_harmful=len(harmful),
        n_harmless=len(harmless),
        meta=model.describe(),
    )
