"""The evaluation layers L_low on a block-input heatmap: where each is drawn, and what says so.

L_low are read-outs j (docs/method.md §2): the output of block j, which is the input of block
j + 1, except the last read-out j = n_layers − 1, the final-norm output, which enters no block.
On a block-input axis j < n_layers − 1 is outlined at ℓ = j + 1, and the final-norm output in a
column of its own after the last block, ticked "final norm". A legend entry (the legend sits
under the plot and grows the margin, so it is never clipped) says what the outlines are.
"""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from cosmic_tl.plots.common import HIGHLIGHT, PlotInputError

FINAL_NORM = "final norm"


def eval_layer_inputs(eval_layers: Sequence[int] | None, n_layers: int) -> list[int]:
    """Where each read-out j of L_low sits on a block-input axis: ℓ = j + 1; ``n_layers`` (the
    final-norm column) for j = n_layers − 1.

    Raises:
        PlotInputError: a read-out outside 0 … n_layers − 1.
    """
    js = sorted({int(j) for j in eval_layers or ()})
    if js and not 0 <= js[0] <= js[-1] < n_layers:
        raise PlotInputError(f"eval_layers {js} are not read-outs 0 … {n_layers - 1} of a {n_layers}-layer model.")
    return [j + 1 for j in js]


def final_norm_tick(eval_layers: Sequence[int] | None, n_layers: int) -> dict[int, str]:
    """``{n_layers: "final norm"}`` when the final-norm output is an evaluation layer, else ``{}``."""
    return {n_layers: FINAL_NORM} if n_layers in eval_layer_inputs(eval_layers, n_layers) else {}


def resolve_n_layers(eval_layers: Sequence[int] | None, n_layers: int | None, layers: Sequence[int],
                     complete: bool) -> int:
    """The model's layer count: given, or read off a table holding every block input (``complete``).

    A table of strided or pruned candidates cannot tell whether its last read-out is the final
    norm, so drawing L_low on it needs ``n_layers``.
    """
    if n_layers is not None:
        return int(n_layers)
    if complete or not eval_layers:
        return max(layers) + 1
    raise PlotInputError("Drawing eval_layers on a table of candidates needs n_layers (the model's layer count): "
                         "the final-norm read-out j = n_layers − 1 is drawn apart from the block inputs.")


def mark_eval_layers(fig: go.Figure, eval_layers: Sequence[int] | None, n_layers: int, row=None, col=None) -> None:
    """Outline each evaluation layer's column (in one subplot when ``row``/``col`` are given)."""
    for ell in eval_layer_inputs(eval_layers, n_layers):
        # The final-norm column holds no candidate: a light fill shows it as a column of the panel.
        fill = {"fillcolor": HIGHLIGHT, "opacity": 0.12} if ell == n_layers else {}
        fig.add_vrect(x0=ell - 0.5, x1=ell + 0.5, line={"color": HIGHLIGHT, "width": 2}, row=row, col=col, **fill)


def eval_layer_legend(eval_layers: Sequence[int] | None, n_layers: int) -> list[go.Scatter]:
    """A legend-only trace naming the outlines, e.g. ``L_low: block outputs j = 19, 23 (at block
    input 20, final norm)``; no trace when there are no evaluation layers."""
    if not eval_layers:
        return []
    js = sorted({int(j) for j in eval_layers})
    where = [FINAL_NORM if ell == n_layers else f"block input {ell}" for ell in eval_layer_inputs(js, n_layers)]
    name = f"L_low: block outputs j = {', '.join(map(str, js))} (at {', '.join(where)})"
    return [go.Scatter(x=[None], y=[None], mode="markers", name=name, showlegend=True, hoverinfo="skip",
                       marker={"symbol": "square-open", "size": 14, "color": HIGHLIGHT, "line": {"width": 2}})]
