"""Heatmaps over candidate directions: block input ℓ on x, token position on y (−1 on top).

Every builder takes optional ``eval_layers`` (L_low as block outputs j, drawn at ℓ = j + 1 and
the final-norm output in a column of its own, see :mod:`cosmic_tl.plots.eval_layers`) with the
model's ``n_layers``, ``position_labels`` (position → template token, see
:func:`template_position_labels`) and a provenance ``subtitle``.
"""

from __future__ import annotations

import html
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from cosmic_tl.plots.common import (
    HIGHLIGHT, LEGEND_BELOW, PlotInputError, finite_range, layer_axis, no_data_figure, position_axis,
    position_text, require_columns, set_title,
)
from cosmic_tl.plots.eval_layers import (
    eval_layer_inputs, eval_layer_legend, final_norm_tick, mark_eval_layers, resolve_n_layers,
)

COSMIC_METRICS = ("s_abl", "s_add", "score", "kl")
REFUSAL_TOKEN_METRICS = ("abl_refusal", "add_refusal", "score", "kl")
_SCORE_COLUMNS = ("s_abl", "s_add", "abl_refusal", "add_refusal", "kl", "score")
# Panels on one scale: both cosine scores, or both refusal log-odds.
_COMPARED = (("s_abl", "s_add"), ("abl_refusal", "add_refusal"))
_GREY = [[0.0, "#d0d0d0"], [1.0, "#d0d0d0"]]
ColorRanges = Mapping[str, tuple[float, float]]


def _grid(df: pd.DataFrame, column: str) -> tuple[list[int], list[int], np.ndarray]:
    """(positions, layers, z) with z[i, j] = df[column] at (positions[i], layers[j]); NaN if absent."""
    if df.duplicated(["position", "layer"]).any():
        raise PlotInputError("More than one row for the same (position, layer) candidate.")
    table = df.pivot(index="position", columns="layer", values=column).sort_index().sort_index(axis=1)
    return [int(p) for p in table.index], [int(l) for l in table.columns], table.to_numpy(dtype=object)


def _mark_eval_layers(fig: go.Figure, eval_layers, n_layers: int, row=None, col=None, legend=True) -> None:
    """The outlines, and (once per figure) the legend entry that names them."""
    mark_eval_layers(fig, eval_layers, n_layers, row=row, col=col)
    for trace in eval_layer_legend(eval_layers, n_layers) if legend else []:
        fig.add_trace(trace, row=row, col=col)


def _style_axes(fig: go.Figure, positions, layers, eval_layers, n_layers, position_labels, row=None,
                col=None) -> None:
    if eval_layers:
        axis = layer_axis(layers, eval_layer_inputs(eval_layers, n_layers), final_norm_tick(eval_layers, n_layers))
    else:
        axis = layer_axis(layers)
    fig.update_xaxes(axis, row=row, col=col)
    fig.update_yaxes(position_axis(positions, position_labels), row=row, col=col)


def cosine_heatmap(
    df_pos_layer: pd.DataFrame,
    eval_layers: Sequence[int] | None = None,
    *,
    n_layers: int | None = None,
    position_labels: Mapping[int, str] | None = None,
    subtitle: str | None = None,
) -> go.Figure:
    """Heatmap of cos(mean harmful, mean harmless) of the block inputs over (position, layer).

    Args:
        df_pos_layer: Columns ``position`` (negative int), ``layer`` (block input ℓ), ``cos``.
        eval_layers: L_low as block outputs j; outlined at block input ℓ = j + 1, the final-norm
            output (j = n_layers − 1) in a column of its own.
        n_layers: The model's layer count; default: the table's, which holds every block input.
        position_labels: Position → template token, for the y ticks.
        subtitle: Provenance line (see :func:`provenance`).
    """
    return _value_heatmap(df_pos_layer, "cos", "Harmful vs harmless mean activation cosine (block inputs)",
                          "cos", ".4f", (eval_layers, n_layers), position_labels, subtitle)


def candidate_norm_heatmap(
    r: Float[Tensor, "n_pos n_layers d_model"],
    positions: Sequence[int],
    *,
    position_labels: Mapping[int, str] | None = None,
    subtitle: str | None = None,
) -> go.Figure:
    """Heatmap of ‖r[position, ℓ]‖ of every candidate direction (block inputs ℓ on x).

    Args:
        r: The candidates (``Candidates.r``), one row per entry of ``positions``.
        positions: The negative position of each row, e.g. ``Candidates.positions``.
        position_labels: Position → template token, for the y ticks.
        subtitle: Provenance line (see :func:`provenance`).
    """
    if getattr(r, "ndim", None) != 3 or r.shape[0] != len(positions):
        raise PlotInputError(f"candidate_norm_heatmap: r must have shape (len(positions), n_layers, d_model), "
                             f"got {tuple(getattr(r, 'shape', ()))} for {len(positions)} positions.")
    norms = r.norm(dim=-1).to(torch.float64)
    df = pd.DataFrame([{"position": int(p), "layer": layer, "norm": float(norms[i, layer])}
                       for i, p in enumerate(positions) for layer in range(r.shape[1])])
    return _value_heatmap(df, "norm", "‖r[position, ℓ]‖ of every candidate direction", "‖r‖", ".3f",
                          (None, None), position_labels, subtitle, zmin=0.0)


def _value_heatmap(df: pd.DataFrame, column: str, title: str, colorbar: str, number: str,
                   low, position_labels, subtitle, zmin: float | None = None) -> go.Figure:
    """One value per (position, block input ℓ), every block input present; ``low`` is (eval_layers,
    n_layers); ``zmin`` pins the low end of the colour scale."""
    require_columns(df, ("position", "layer", column), title)
    if df.empty:
        return no_data_figure(title, subtitle)
    positions, layers, z = _grid(df, column)
    ticks = [position_text(p, position_labels) for p in positions]
    fig = go.Figure(go.Heatmap(
        x=layers, y=positions, z=z.astype(float), colorscale="Viridis", colorbar={"title": colorbar},
        zmin=zmin, customdata=[[t] * len(layers) for t in ticks],
        hovertemplate=f"position %{{customdata}}<br>block input ℓ = %{{x}}<br>{colorbar} %{{z:{number}}}<extra></extra>",
    ))
    eval_layers = low[0]
    n_layers = resolve_n_layers(eval_layers, low[1], layers, complete=True)
    _mark_eval_layers(fig, eval_layers, n_layers)
    _style_axes(fig, positions, layers, eval_layers, n_layers, position_labels)
    fig.update_layout(legend=LEGEND_BELOW, showlegend=bool(eval_layers))
    return set_title(fig, title, subtitle)


def _hover_text(df: pd.DataFrame, positions: list[int], layers: list[int], labels) -> list[list[str]]:
    """Per-cell hover: every score column present, then "kept" or the filter reason."""
    shown = [c for c in _SCORE_COLUMNS if c in df.columns]
    rows = df.set_index(["position", "layer"])
    text = [["" for _ in layers] for _ in positions]
    for (pos, layer), row in rows.iterrows():
        numbers = "<br>".join(f"{c} = {row[c]:.4g}" for c in shown)
        status = "kept" if row["kept"] else f"filtered: {html.escape(str(row['reason']))}"
        chosen = "<br><b>chosen</b>" if row["chosen"] else ""
        text[positions.index(pos)][layers.index(layer)] = (
            f"position {html.escape(position_text(pos, labels))}, block input ℓ = {layer}<br>{numbers}"
            f"<br>{status}{chosen}"
        )
    return text


def _kept_values(selection_df: pd.DataFrame, metric: str) -> np.ndarray:
    kept = selection_df["kept"].astype(bool)
    return selection_df.loc[kept, metric].to_numpy(dtype=float)


def color_range(metric: str, values: np.ndarray) -> tuple[float, float] | None:
    """A metric's colour range over the kept candidates; KL always starts at 0."""
    span = finite_range([values])
    if metric == "kl":
        return 0.0, max(span[1], 1e-12) if span else 1e-12
    return span


def shared_color_ranges(tables: Sequence[pd.DataFrame], metrics: Sequence[str] = _SCORE_COLUMNS) -> dict:
    """Colour ranges shared by several selection tables (runs meant to be compared) and by the
    panels that show the same kind of number (S_abl with S_add, the two refusal scores).

    Returns:
        ``{metric: (zmin, zmax)}`` for the metrics present, for ``selection_dashboard(...,
        color_ranges=...)`` or ``score_heatmaps(..., zrange=...)``.
    """
    present = [m for m in metrics if any(m in t.columns for t in tables)]
    values = {m: np.concatenate([_kept_values(t, m) for t in tables if m in t.columns] or [np.empty(0)])
              for m in present}
    for group in _COMPARED:
        members = [m for m in group if m in values]
        joined = np.concatenate([values[m] for m in members]) if members else np.empty(0)
        values.update({m: joined for m in members})
    ranges = {m: color_range(m, v) for m, v in values.items()}
    return {m: r for m, r in ranges.items() if r is not None}


def _score_traces(selection_df: pd.DataFrame, metric: str, zrange, labels, show_legend: bool = True) -> list:
    """Kept heatmap (filtered cells NaN), grey heatmap of the filtered cells, the chosen marker."""
    positions, layers, values = _grid(selection_df, metric)
    kept_cells = _grid(selection_df, "kept")[2]
    present = pd.notna(kept_cells)  # cells with no candidate row stay blank, not grey
    kept = present & (kept_cells == True)  # noqa: E712 (object array holding bools and NaN)
    values = values.astype(float)
    zmin, zmax = zrange or color_range(metric, np.where(kept, values, np.nan)) or (None, None)
    text = _hover_text(selection_df, positions, layers, labels)
    common = {"x": layers, "y": positions, "text": text, "hoverongaps": False,
              "hovertemplate": "%{text}<extra></extra>"}
    traces = [
        go.Heatmap(z=np.where(kept, values, np.nan), colorscale="Viridis", name=f"{metric} (kept)",
                   zmin=zmin, zmax=zmax, colorbar={"title": metric}, **common),
        go.Heatmap(z=np.where(present & ~kept, 0.0, np.nan), colorscale=_GREY, showscale=False,
                   name="filtered", **common),
    ]
    chosen = selection_df[selection_df["chosen"].astype(bool)]
    if len(chosen) > 1:
        raise PlotInputError(f"{len(chosen)} candidates are marked chosen; expected one.")
    if len(chosen) == 1:
        traces.append(go.Scatter(
            x=chosen["layer"].tolist(), y=chosen["position"].tolist(), mode="markers", name="chosen",
            marker={"symbol": "star", "size": 16, "color": HIGHLIGHT, "line": {"color": "white", "width": 1}},
            hoverinfo="skip", showlegend=show_legend,
        ))
    return traces


def _check_selection(selection_df: pd.DataFrame, metrics: Sequence[str]) -> None:
    require_columns(selection_df, ("position", "layer", *metrics, "kept", "reason", "chosen"), "selection table")


def score_heatmaps(
    selection_df: pd.DataFrame,
    metric: str,
    *,
    eval_layers: Sequence[int] | None = None,
    n_layers: int | None = None,
    position_labels: Mapping[int, str] | None = None,
    zrange: tuple[float, float] | None = None,
    subtitle: str | None = None,
) -> go.Figure:
    """Heatmap of one selection metric over candidates; filtered candidates grey, the pick starred.

    Args:
        selection_df: The selection table (COSMIC: ``s_abl``, ``s_add``, ``kl``, ``score``;
            refusal-token baseline: ``abl_refusal``, ``add_refusal``, ``kl``, ``score``) with
            ``position``, ``layer`` (block input ℓ), ``kept``, ``reason``, ``chosen``.
        metric: The column to colour by.
        eval_layers: L_low as block outputs j; outlined at ℓ = j + 1, the final-norm output
            (j = n_layers − 1) in a column of its own.
        n_layers: The model's layer count (required with ``eval_layers``: strided or pruned
            candidates do not show it).
        position_labels: Position → template token, for the y ticks.
        zrange: Colour range (e.g. from :func:`shared_color_ranges`); default: the kept cells'
            range, from 0 for KL.
        subtitle: Provenance line.
    """
    if metric not in _SCORE_COLUMNS:
        raise PlotInputError(f"Unknown metric {metric!r}; expected one of {_SCORE_COLUMNS}.")
    _check_selection(selection_df, (metric,))
    title = f"{metric} per candidate (grey: filtered out)"
    if selection_df.empty:
        return no_data_figure(title, subtitle)
    fig = go.Figure(_score_traces(selection_df, metric, zrange, position_labels))
    positions, layers, _ = _grid(selection_df, metric)
    n_layers = resolve_n_layers(eval_layers, n_layers, layers, complete=False)
    _mark_eval_layers(fig, eval_layers, n_layers)
    _style_axes(fig, positions, layers, eval_layers, n_layers, position_labels)
    fig.update_layout(plot_bgcolor="white", legend=LEGEND_BELOW)
    return set_title(fig, title, subtitle)


def selection_dashboard(
    selection_df: pd.DataFrame,
    *,
    eval_layers: Sequence[int] | None = None,
    n_layers: int | None = None,
    position_labels: Mapping[int, str] | None = None,
    color_ranges: Mapping[str, tuple[float, float]] | None = None,
    subtitle: str | None = None,
) -> go.Figure:
    """2×2 heatmaps of the selection metrics (COSMIC or refusal-token baseline, told by the columns).

    The two ablation/addition panels share one colour range, KL starts at 0; ``color_ranges``
    (see :func:`shared_color_ranges`) overrides them, e.g. to compare dashboards of several runs.
    Other arguments as for :func:`score_heatmaps`.
    """
    metrics = REFUSAL_TOKEN_METRICS if "abl_refusal" in selection_df.columns else COSMIC_METRICS
    _check_selection(selection_df, metrics)
    title = "Direction selection (grey: filtered out, star: chosen)"
    if selection_df.empty:
        return no_data_figure(title, subtitle)
    ranges = {**shared_color_ranges([selection_df], metrics), **(color_ranges or {})}
    fig = make_subplots(rows=2, cols=2, subplot_titles=metrics, horizontal_spacing=0.15, vertical_spacing=0.15)
    positions, layers, _ = _grid(selection_df, metrics[0])
    n_layers = resolve_n_layers(eval_layers, n_layers, layers, complete=False)
    for k, metric in enumerate(metrics):
        row, col = divmod(k, 2)
        traces = _score_traces(selection_df, metric, ranges.get(metric), position_labels, show_legend=k == 0)
        # One colorbar per subplot, placed beside it instead of stacked at the figure's right edge.
        suffix = k + 1 if k else ""
        xdom, ydom = fig.layout[f"xaxis{suffix}"].domain, fig.layout[f"yaxis{suffix}"].domain
        traces[0].colorbar.update(x=xdom[1] + 0.01, y=(ydom[0] + ydom[1]) / 2, len=ydom[1] - ydom[0], thickness=12)
        for trace in traces:
            fig.add_trace(trace, row=row + 1, col=col + 1)
        _style_axes(fig, positions, layers, eval_layers, n_layers, position_labels, row=row + 1, col=col + 1)
        _mark_eval_layers(fig, eval_layers, n_layers, row=row + 1, col=col + 1, legend=k == 0)
    # Both columns show the same positions: labels on the left only, clear of the left colour bars.
    fig.update_yaxes(showticklabels=False, title_text="", col=2)
    fig.update_layout(plot_bgcolor="white", height=800, legend={**LEGEND_BELOW, "y": -0.1})
    return set_title(fig, title, subtitle)
