"""Run a model over prompt batches and read the residual stream through TransformerLens hooks.

Two read-outs serve the whole method:

- :func:`mean_resid_pre`: running float64 means of ``blocks.{l}.hook_resid_pre`` at the last
  ``n_pos`` (post-instruction) positions, never holding every prompt's activations in memory.
- :func:`last_token_readouts`: the last token's hidden state at read-out indices ``j`` in the HF
  ``hidden_states[1:]`` convention (output of block ``j``; the last index is the final-norm output),
  under any intervention hooks.

A pass whose interventions all sit at block ``l`` or later can start at block ``l`` from the
unintervened residual stream there (:class:`ResidualStart`) instead of recomputing blocks ``0..l-1``.
TransformerLens' ``start_at_layer`` still executes those blocks, so the HF decoder's layer list is
narrowed to the blocks from ``l`` on for the call: the bridge's blocks ARE the HF decoder layers, so
their hook points fire under their own names, and the HF model builds the rotary embeddings and the
causal mask from the same position ids and attention mask as a full pass. This is enabled only for
architectures where it was checked to reproduce the full pass (:func:`supports_layer_start`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from cosmic_tl.candidates import Candidates
from cosmic_tl.checks import integer
from cosmic_tl.models import ChatModel
from cosmic_tl.prompts import TokenizedPrompts, check_instructions

Hooks = list[tuple[str, Callable]]

# Decoder families whose HF forward was checked to give a layer-started pass exactly the full
# pass's inputs (tests/unit/test_selection_speedups.py): one layer list, one mask for every layer.
LAYER_START_FAMILIES = ("qwen2", "llama")


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
            # Block max(layers) only needs its input read: its hook_in fires, then the pass stops.
            model.bridge(batch.input_ids, attention_mask=batch.attention_mask, stop_at_layer=max(layers))
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
    edit of the block-``j+1`` input also shows in HF's ``hidden_states`` (docs/method.md §8).
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


@dataclass
class ResidualStart:
    """The residual stream entering block ``layer``, for one batch, before that block's input hooks.

    Attributes:
        layer: The block a pass starts at.
        resid: The input of ``blocks.{layer}.hook_resid_pre`` (what its hooks receive), without
            the candidate's hooks.
        position_ids: The position ids the full pass hands every block (left padding shifts them).
    """

    layer: int
    resid: Float[Tensor, "batch pos d_model"]
    position_ids: Int[Tensor, "_ pos"]


def supports_layer_start(model: ChatModel) -> bool:
    """Whether passes can start at a block on this model (checked decoder families only)."""
    hf = model.bridge.original_model
    layers = getattr(getattr(hf, "model", None), "layers", None)
    layer_types = getattr(hf.config, "layer_types", None) or []
    return (
        getattr(hf.config, "model_type", None) in LAYER_START_FAMILIES
        and isinstance(layers, nn.ModuleList)
        and len(layers) == model.n_layers
        and all(layers[i] is model.bridge.blocks[i] for i in range(model.n_layers))
        # HF indexes layer_types by the position in the (narrowed) list: only one type is safe.
        and len(set(layer_types)) <= 1
    )


@contextmanager
def _blocks_from(model: ChatModel, layer: int):
    """Narrow the HF decoder's layer list to blocks ``layer..`` for the duration of a call."""
    decoder = model.bridge.original_model.model
    full = decoder.layers
    decoder.layers = nn.ModuleList(list(full)[layer:])
    try:
        yield
    finally:
        decoder.layers = full


def _forward(model: ChatModel, batch: TokenizedPrompts, start: ResidualStart | None, **kwargs) -> Tensor:
    """``model.bridge`` on the batch, from the embeddings or from ``start``."""
    if start is None:
        return model.bridge(batch.input_ids, attention_mask=batch.attention_mask, **kwargs)
    with _blocks_from(model, start.layer):
        # A copy: a hook editing block ``start.layer``'s input in place must not alter the start.
        return model.bridge(
            start.resid.clone(), attention_mask=batch.attention_mask, position_ids=start.position_ids, **kwargs
        )


@torch.no_grad()
def residual_start(
    model: ChatModel, batch: TokenizedPrompts, layer: int, *, after: ResidualStart | None = None
) -> ResidualStart:
    """The residual entering block ``layer``, before that block's input hooks, to start later passes.

    Hooks active on the model (e.g. an edit kept on for a whole selection) act on the way, except
    those of block ``layer``'s input: a pass started here runs them, so each acts exactly once.

    Args:
        model: A model for which :func:`supports_layer_start` holds.
        batch: One tokenized batch.
        layer: The block to start at (``0..n_layers-1``).
        after: An earlier start of the same batch at a block ``<= layer``; only the blocks between
            the two run (one pass from the embeddings otherwise).

    Examples:
        >>> start = residual_start(model, model.tokenize(["Hi"]), 6)  # doctest: +SKIP
        >>> h, _ = last_token_readouts(model, batch, [9], start=start)  # doctest: +SKIP
    """
    _check_layers(model, [layer])
    if not supports_layer_start(model):
        raise NotImplementedError(f"Starting a pass at a block is not verified for {model.name}.")
    if after is not None and after.layer > layer:
        raise ValueError(f"Cannot go back from block {after.layer} to block {layer}.")
    seen = {}

    def keep_position_ids(module, args, kwargs) -> None:
        seen["position_ids"] = kwargs["position_ids"]

    def keep_raw_input(module, args) -> None:
        # TransformerLens' stop_at_layer returns block ``layer``'s input after its hook_in (and any
        # edit there); the pass started from it would apply that edit a second time. A copy: an
        # edit in place must not reach the start either.
        seen["resid"] = args[0].clone()

    handles = [model.bridge.blocks[layer].hook_in.register_forward_pre_hook(keep_raw_input)]
    if after is None:
        first = model.bridge.original_model.model.layers[0]
        handles.append(first.register_forward_pre_hook(keep_position_ids, with_kwargs=True))
    try:
        _forward(model, batch, after, stop_at_layer=layer)
    finally:
        for handle in handles:
            handle.remove()
    return ResidualStart(layer, seen["resid"], after.position_ids if after is not None else seen["position_ids"])


def hook_block(name: str) -> int | None:
    """The block index in a ``blocks.{l}.…`` hook name (None for hooks outside the blocks)."""
    match = re.match(r"blocks\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def _stop_layer(name: str) -> int:
    """The block a pass reading hook ``name`` may stop at: a block's input hook fires before the
    stop (TransformerLens runs ``hook_in`` on the stop block's input), any other hook needs the
    block to run."""
    block = hook_block(name)
    return block if re.fullmatch(r"blocks\.\d+\.hook_(resid_pre|in)", name) else block + 1


def _check_hooks_from(fwd_hooks: Hooks, layer: int) -> None:
    """A pass started at ``layer`` runs only the hooks of blocks ``layer..`` and the final norm."""
    for name, _ in fwd_hooks:
        if not isinstance(name, str):
            raise TypeError("A pass started at a block needs hooks named by string, not by a filter function.")
        block = hook_block(name)
        if (block is None and not name.startswith(("ln_final.", "unembed."))) or (block is not None and block < layer):
            raise ValueError(f"Hook {name!r} would not run in a pass that starts at block {layer}.")


@torch.no_grad()
def last_token_readouts(
    model: ChatModel,
    batch: TokenizedPrompts,
    readout_layers: Sequence[int],
    *,
    fwd_hooks: Hooks = (),
    after_intervention: bool = False,
    return_logits: bool = False,
    start: ResidualStart | None = None,
    unintervened: Float[Tensor, "batch n_readouts d_model"] | None = None,
) -> tuple[Float[Tensor, "batch n_readouts d_model"], Float[Tensor, "batch d_vocab"] | None]:
    """Last-token hidden states at the read-out indices (HF ``hidden_states[1:]`` convention).

    Args:
        model: The chat model.
        batch: One tokenized batch.
        readout_layers: Read-out indices ``j`` (output of block ``j``; ``n_layers-1`` = final norm).
        fwd_hooks: Interventions, registered before the readers so readers see their effect.
        after_intervention: See :func:`readout_hook_names`.
        return_logits: Also return the last position's logits (runs the whole model).
        start: Start the pass at ``start.layer`` (every hook in ``fwd_hooks`` must be at or after
            that block); read-outs of earlier blocks then come from ``unintervened``.
        unintervened: This function's read-outs of the batch without hooks (needed with ``start``
            when a read-out lies below ``start.layer``; no intervention there can change them).

    Returns:
        (read-outs in float32, last-position logits in float32 or None).
    """
    names = readout_hook_names(model, _check_layers(model, readout_layers), after_intervention)
    out: list[Tensor | None] = [None] * len(names)
    if start is not None:
        _check_hooks_from(fwd_hooks, start.layer)
        for k, name in enumerate(names):
            block = hook_block(name)
            if block is not None and block < start.layer:
                if unintervened is None:
                    raise ValueError(f"Read-out {name} lies below block {start.layer}: pass `unintervened`.")
                out[k] = unintervened[:, k]  # no intervention at or after the start block reaches it

    def make_reader(k: int):
        def read(x: Tensor, hook) -> None:
            out[k] = x[:, -1, :].to(torch.float32)

        return read

    readers = [(name, make_reader(k)) for k, name in enumerate(names) if out[k] is None]
    needs_final = return_logits or "ln_final.hook_out" in names
    if readers or return_logits:
        # Stop as soon as every read hook has fired, unless logits or the final norm are needed.
        deepest = None if needs_final else max(_stop_layer(n) for n in names)
        with model.bridge.hooks(fwd_hooks=list(fwd_hooks) + readers):
            # logits_to_keep=1: the unembedding of every position would cost more than the body.
            extra = {"logits_to_keep": 1} if deepest is None else {}
            logits = _forward(model, batch, start, stop_at_layer=deepest, **extra)
    last_logits = logits[:, -1, :].to(torch.float32) if return_logits else None
    return torch.stack(out, dim=1), last_logits


def candidate_directions(
    model: ChatModel,
    pos: Sequence[str],
    neg: Sequence[str],
    *,
    batch_size: int = 32,
    fwd_hooks: Hooks = (),
    progress: bool = True,
) -> Candidates:
    """Difference-in-means candidate directions at every (post-instruction position, layer).

    ``r[i, l] = mu_pos - mu_neg`` of ``blocks.{l}.hook_resid_pre`` at position ``-n_pos + i``
    (float64, not normalised), where ``mu_pos`` averages the positive prompts (they show the
    concept; for refusal, the harmful ones) and ``mu_neg`` the negative ones (for refusal, the
    harmless ones); the negative means are kept as the ACE reference (docs/method.md §1).

    Args:
        model: The chat model (its current system setting formats the prompts).
        pos, neg: Positive and negative training instructions (for refusal:
            ``candidate_directions(model, harmful, harmless)``).
        batch_size: Prompts per forward pass.
        fwd_hooks: Interventions active while reading (e.g. inside a weakened model).
        progress: Show progress bars.
    """
    integer(1)("batch_size", batch_size)  # as RunConfig checks it, before any pass
    kw = dict(batch_size=batch_size, fwd_hooks=fwd_hooks, progress=progress)
    mu_pos = mean_resid_pre(model, pos, desc="activations (positive)", **kw)
    mu_neg = mean_resid_pre(model, neg, desc="activations (negative)", **kw)
    return Candidates(
        r=mu_pos - mu_neg,
        mu_neg=mu_neg,
        mu_pos=mu_pos,
        positions=list(range(-model.n_pos, 0)),
        n_positive=len(pos),
        n_negative=len(neg),
        meta=model.describe(),
    )
