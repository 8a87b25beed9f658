"""Token-level views of the refusal direction: how strongly each token's residual stream points
along r̂, shown with circuitsvis ``colored_tokens``, baseline and steered side by side.

``token_projections`` runs one forward pass of one sequence (a prompt plus its completion); the
other functions only render.
"""

from __future__ import annotations

import html
import re
from typing import Callable, Mapping, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from cosmic_tl.models import ChatModel

HOOK_KINDS = ("resid_pre", "resid_post")
# circuitsvis writes its mount point as "<div .../>", which HTML parses as an *open* div; closing it
# explicitly keeps the next panel from nesting inside this one.
_SELF_CLOSED_DIV = re.compile(r'^(\s*<div id="circuits-vis-[^"]*"[^>]*?)\s*/>')


class TokenVizInputError(ValueError):
    """Bad token ids, direction, layer or values for a token view."""


def _as_token_ids(token_ids) -> Int[Tensor, "pos"]:
    ids = torch.as_tensor(token_ids)
    if ids.ndim == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.ndim != 1 or ids.numel() == 0 or ids.is_floating_point():
        raise TokenVizInputError(
            f"token ids must be a non-empty 1-D integer sequence (or shape [1, pos]), got shape "
            f"{tuple(ids.shape)} dtype {ids.dtype}."
        )
    return ids.long()


def token_projections(
    model: ChatModel,
    token_ids: Sequence[int] | Int[Tensor, "pos"],
    direction: Float[Tensor, "d_model"],
    layer: int,
    fwd_hooks: Sequence[tuple[str | Callable, Callable]] = (),
    hook: str = "resid_pre",
) -> tuple[list[str], list[float]]:
    """Per-token projection of the residual stream at one layer onto the unit direction.

    Args:
        model: The chat model.
        token_ids: One sequence of token ids (prompt + completion, e.g. from generation).
        direction: The refusal direction; normalised here, so a raw r works as well as r̂.
        layer: Which block's residual stream to read.
        fwd_hooks: Interventions active during the pass (e.g. steering hooks). The read-out is
            taken after them, so a hook on the same point is reflected in the values.
        hook: ``"resid_pre"`` (block input, where COSMIC reads directions) or ``"resid_post"``.

    Returns:
        (tokens, values): each token decoded on its own, and ⟨resid[t], r̂⟩ per token.
    """
    if hook not in HOOK_KINDS:
        raise TokenVizInputError(f"hook must be one of {HOOK_KINDS}, got {hook!r}.")
    if not 0 <= layer < model.n_layers:
        raise TokenVizInputError(f"layer {layer} is out of range for a {model.n_layers}-layer model.")
    direction = torch.as_tensor(direction)
    if direction.shape != (model.d_model,):
        raise TokenVizInputError(
            f"direction must have shape ({model.d_model},), got {tuple(direction.shape)}."
        )
    norm = direction.double().norm()
    if not torch.isfinite(norm) or norm == 0:
        raise TokenVizInputError("direction has zero or non-finite norm.")
    unit = (direction.double() / norm).to(model.device)
    ids = _as_token_ids(token_ids).to(model.device)

    captured: list[Tensor] = []

    def capture(resid: Float[Tensor, "batch pos d_model"], hook) -> None:
        captured.append(resid.detach())

    hook_name = f"blocks.{layer}.hook_{hook}"
    with torch.no_grad():
        # The capture hook is registered last, so it sees the stream after any user intervention.
        model.bridge.run_with_hooks(
            ids[None], attention_mask=torch.ones_like(ids)[None],
            fwd_hooks=[*fwd_hooks, (hook_name, capture)],
        )
    values = (captured[-1][0].double() @ unit).tolist()
    tokens = [model.tokenizer.decode([int(i)]) for i in ids]
    return tokens, values


def projection_view(tokens: Sequence[str], values: Sequence[float], max_abs: float | None = None):
    """A circuitsvis ``colored_tokens`` view (blue positive, red negative; symmetric scale).

    Args:
        tokens: Token strings.
        values: One value per token.
        max_abs: Colour-scale limit; defaults to the largest |value|, so zero is white.
    """
    from circuitsvis.tokens import colored_tokens

    if len(tokens) != len(values) or not tokens:
        raise TokenVizInputError(f"need one value per token: {len(tokens)} tokens, {len(values)} values.")
    limit = max_abs if max_abs is not None else max(max(abs(float(v)) for v in values), 1e-8)
    return colored_tokens(list(tokens), [float(v) for v in values], min_value=-limit, max_value=limit)


def side_by_side(views: Mapping[str, object], offline: bool = True):
    """Titled circuitsvis views next to each other (wrapping on narrow screens), as IPython HTML.

    Args:
        views: Title → circuitsvis ``RenderedHTML`` (e.g. {"baseline": ..., "steered": ...}).
        offline: Inline circuitsvis' JavaScript in every view (works without a network, about
            1.3 MB per view); False loads it from the unpkg CDN (small, needs a network).
    """
    from IPython.display import HTML

    if not views:
        raise TokenVizInputError("side_by_side needs at least one view.")
    panels = []
    for title, view in views.items():
        if not hasattr(view, "local_src"):
            raise TokenVizInputError(f"view {title!r} is a {type(view).__name__}, not a circuitsvis view.")
        source = _SELF_CLOSED_DIV.sub(r"\1></div>", view.local_src if offline else view.cdn_src, count=1)
        panels.append(
            '<div style="flex: 1 1 360px; min-width: 0;">'
            f"<h4 style=\"margin: 4px 0;\">{html.escape(str(title))}</h4>{source}</div>"
        )
    return HTML('<div style="display: flex; flex-wrap: wrap; gap: 16px;">' + "".join(panels) + "</div>")
