"""What every figure shares: input checks, the provenance subtitle, the "no data" note, the layer
and position axes, and error bars from Wilson intervals.

Two layer coordinates exist and every axis names the one it uses (docs/method.md §2): candidate
directions and interventions live at **block inputs** ℓ (``blocks.ℓ.hook_resid_pre``); the
evaluation layers L_low are **block outputs** j (``resid_post``, the last one the final-norm
output). The output of block j is the input of block j + 1, so on a block-input axis L_low is
drawn at ℓ = j + 1.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cosmic_tl.stats import with_wilson

BLOCK_INPUT_AXIS = "block input ℓ (resid_pre)"
BLOCK_OUTPUT_AXIS = "block output j (resid_post; last = final norm)"
POSITION_AXIS = "token position"
NO_DATA = "no data"
HIGHLIGHT = "#d62728"
# A horizontal legend under the plot area never covers a colour bar, which sits at its right.
LEGEND_BELOW = {"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.18, "yanchor": "top"}


class PlotInputError(ValueError):
    """A results table or array does not have the columns or shape a plot needs."""


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Refuse a non-DataFrame or one lacking ``columns`` (an empty table is allowed: "no data")."""
    if not isinstance(df, pd.DataFrame):
        raise PlotInputError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise PlotInputError(f"{what}: missing column(s) {missing}; has {list(df.columns)}.")


def provenance(
    model: str | None = None,
    sizes: Mapping[str, int] | None = None,
    steering: str | None = None,
    system: str | None = None,
    run_id: str | None = None,
) -> str:
    """One line saying what a figure is from, for the ``subtitle`` of every builder.

    Args:
        model: Model name.
        sizes: Any of ``n_train``, ``n_val``, ``n_test`` (per class), ``max_new_tokens``,
            ``layer_stride``.
        steering: "ace" or "lce".
        system: The system-turn label (e.g. "none", "default").
        run_id: The run's id or fingerprint.
    """
    sizes = dict(sizes or {})
    parts = [model] if model else []
    split = [f"{name} {sizes[f'n_{name}']}+{sizes[f'n_{name}']}" for name in ("train", "val", "test")
             if f"n_{name}" in sizes]
    if "max_new_tokens" in sizes:
        split.append(f"{sizes['max_new_tokens']} new tokens")
    if "layer_stride" in sizes:
        split.append(f"layer stride {sizes['layer_stride']}")
    parts += [", ".join(split)] if split else []
    parts += [steering.upper()] if steering else []
    parts += [f"system turn: {system}"] if system is not None else []
    parts += [f"run {run_id}"] if run_id else []
    return " · ".join(parts)


def set_title(fig: go.Figure, title: str, subtitle: str | None) -> go.Figure:
    """The figure's title with its provenance subtitle (room made above the plot for both)."""
    fig.update_layout(title={"text": title, "subtitle": {"text": subtitle or ""}},
                      margin={"t": 100 if subtitle else 70})
    return fig


def no_data_figure(title: str, subtitle: str | None, what: str = NO_DATA) -> go.Figure:
    """An empty figure that says so, instead of blank axes."""
    fig = go.Figure()
    fig.add_annotation(text=what, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font={"size": 18, "color": "#7f7f7f"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return set_title(fig, title, subtitle)


def position_text(position: int, labels: Mapping[int, str] | None) -> str:
    """``-2 ⟨\\n⟩``: the position with its template token, when the token is known."""
    return f"{position} ⟨{labels[position]}⟩" if labels and position in labels else str(position)


def template_position_labels(tokenizer, eoi_ids: Sequence[int]) -> dict[int, str]:
    """Position → visible token text of the post-instruction template (−len … −1).

    Newlines and tabs are written as ``\\n`` and ``\\t`` so a tick label stays on one line.

    Args:
        tokenizer: The model's tokenizer.
        eoi_ids: The post-instruction template token ids (``ChatModel.eoi_ids``).
    """
    n = len(eoi_ids)
    return {k - n: tokenizer.decode([t]).replace("\n", "\\n").replace("\t", "\\t") for k, t in enumerate(eoi_ids)}


def position_axis(positions: Sequence[int], labels: Mapping[int, str] | None) -> dict:
    """Y axis of a heatmap: one tick per position, position −1 on top (ascending, not reversed)."""
    return {"title_text": POSITION_AXIS, "tickmode": "array", "tickvals": list(positions),
            "ticktext": [position_text(p, labels) for p in positions],
            "range": [min(positions) - 0.5, max(positions) + 0.5], "autorange": False}


def layer_axis(layers: Sequence[int], extra: Sequence[float] = (),
               named: Mapping[int, str] | None = None) -> dict:
    """X axis of a block-input heatmap: ticks at the layers present (the scored ones).

    ``extra`` are further x positions that must stay visible (an L_low outline at ℓ = j + 1 past
    the last candidate layer); ``named`` are further columns ticked by name (the final norm).
    """
    layers = sorted(layers)
    first = (layers[1] - layers[0]) / 2 if len(layers) > 1 else 0.5
    last = (layers[-1] - layers[-2]) / 2 if len(layers) > 1 else 0.5
    ticks = {**{ell: str(ell) for ell in layers}, **(named or {})}
    high = max([layers[-1] + last, *[x + 0.5 for x in [*extra, *ticks]]])
    return {"title_text": BLOCK_INPUT_AXIS, "tickmode": "array", "tickvals": list(ticks),
            "ticktext": list(ticks.values()), "range": [layers[0] - first, high], "autorange": False}


def wilson_error_bars(table: pd.DataFrame, rate: str) -> tuple[pd.DataFrame, dict]:
    """``table`` with ``count``, ``ci_low``, ``ci_high`` (kept if given, else 95% Wilson from
    ``rate`` and ``n``) and the matching asymmetric ``error_y`` of a bar or scatter trace."""
    if not {"count", "ci_low", "ci_high"} <= set(table.columns):
        table = with_wilson(table, rate=rate)
    values = table[rate].to_numpy(dtype=float)
    error = {"type": "data", "symmetric": False, "array": table["ci_high"].to_numpy(dtype=float) - values,
             "arrayminus": values - table["ci_low"].to_numpy(dtype=float)}
    return table, error


def finite_range(values: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """(min, max) over the finite entries of several arrays, None when there is none."""
    finite = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values])
    finite = finite[np.isfinite(finite)]
    return (float(finite.min()), float(finite.max())) if finite.size else None
