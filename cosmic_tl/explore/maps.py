"""The linked position × layer maps of one run part, as plotly figures on shared axes.

Every map has the same x (all layers) and y (all candidate positions) ranges, so one cell is at the
same place everywhere. Score maps colour the kept candidates and draw filtered ones grey (their
hover says why they were dropped); layers the selection skipped (``layer_stride``) stay blank.
Above the coloured maps lies one transparent heatmap over every cell (:data:`CELLS_TRACE`): it
carries the hover text and the clicks, so a cell without a value on one map (a layer the
selection skipped, a score that is not finite) is still hovered and selected there. The cosine
map outlines the evaluation layers L_low as the run's figures do (:mod:`cosmic_tl.plots.eval_layers`);
every map's layer axis has the final-norm column when L_low reads it, so columns line up across
maps. Each figure ends with two marker traces: the chosen candidate (a star) and the current
selection (an open square), which the page and the notebook view move when a cell is clicked.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go

from cosmic_tl.explore.projections import cell_key
from cosmic_tl.plots.eval_layers import FINAL_NORM, eval_layer_inputs, mark_eval_layers

GREY = [[0.0, "#c8c8c8"], [1.0, "#c8c8c8"]]
CHOSEN_COLOUR = "#d62728"
SELECTED_COLOUR = "#ff7f0e"
SELECTED_TRACE = "selected"  # name of the marker trace that follows the selection
CELLS_TRACE = "cells"  # name of the transparent heatmap that takes every cell's hover and click
TRANSPARENT = [[0.0, "rgba(0,0,0,0)"], [1.0, "rgba(0,0,0,0)"]]
MAP_HEIGHT = 300


def status_line(row: dict | None) -> str:
    """"kept, rank 3", "filtered: kl > 0.1" or "not scored" for one candidate row."""
    if row is None:
        return "not scored (layer skipped by the selection)"
    if row["kept"]:
        return f"kept, rank {row['rank']}" + (" (chosen)" if row["chosen"] else "")
    return f"filtered: {row['reason']}"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _hover(part: dict, map_: dict) -> list[list[str]]:
    text = []
    for i, position in enumerate(part["positions"]):
        line = []
        for j, layer in enumerate(part["layers"]):
            row = part["candidates"].get(cell_key(position, layer))
            line.append(f"position {position}, layer {layer}<br>{map_['label']} = {_fmt(map_['z'][i][j])}"
                        f"<br>{html.escape(status_line(row))}")
        text.append(line)
    return text


def _mask(part: dict, map_: dict, kept: bool) -> list[list]:
    """The map's values where the candidate is kept (``kept``) or filtered (``not kept``), else None."""
    out = []
    for i, position in enumerate(part["positions"]):
        line = []
        for j, layer in enumerate(part["layers"]):
            row = part["candidates"].get(cell_key(position, layer))
            show = row is not None and row["kept"] == kept and map_["z"][i][j] is not None
            line.append((map_["z"][i][j] if kept else 0.0) if show else None)
        out.append(line)
    return out


def _marker(name: str, cell: dict | None, symbol: str, colour: str, size: int) -> go.Scatter:
    return go.Scatter(
        x=[cell["layer"]] if cell else [], y=[cell["position"]] if cell else [], mode="markers", name=name,
        marker={"symbol": symbol, "size": size, "color": colour, "line": {"color": colour, "width": 3}},
        hoverinfo="skip", showlegend=False,
    )


def map_figure(part: dict, map_: dict, selected: dict | None = None) -> go.Figure:
    """One map of ``part`` (an entry of the explorer data's ``parts``).

    Args:
        part: The part's explorer data.
        map_: One of ``part["maps"]``.
        selected: The selected cell ``{"position", "layer"}`` (default: the chosen candidate).
    """
    # The coloured traces take no events: the cells trace above them answers hovers and clicks.
    common = {"x": part["layers"], "y": part["positions"], "hoverinfo": "skip", "xgap": 1, "ygap": 1}
    colorbar = {"thickness": 10, "len": 0.9, "title": {"text": map_["label"], "side": "right"}}
    if map_["kind"] == "cosine":
        traces = [go.Heatmap(z=map_["z"], colorscale="Viridis", name=map_["label"], colorbar=colorbar, **common)]
    else:
        traces = [
            go.Heatmap(z=_mask(part, map_, kept=True), colorscale="Viridis", name=f"{map_['label']} (kept)",
                       colorbar=colorbar, **common),
            go.Heatmap(z=_mask(part, map_, kept=False), colorscale=GREY, showscale=False, name="filtered",
                       **common),
        ]
    traces.append(go.Heatmap(
        x=part["layers"], y=part["positions"], z=[[0.0] * len(part["layers"]) for _ in part["positions"]],
        text=_hover(part, map_), hovertemplate="%{text}<extra></extra>", colorscale=TRANSPARENT, showscale=False,
        name=CELLS_TRACE))
    chosen = part["chosen"]
    traces.append(_marker("chosen", chosen, "star", CHOSEN_COLOUR, 14))
    traces.append(_marker(SELECTED_TRACE, selected or chosen, "square-open", SELECTED_COLOUR, 18))
    fig = go.Figure(traces)
    positions, layers, n_layers = part["positions"], part["layers"], part["n_layers"]
    # Candidates live at block inputs ℓ; the evaluation layers L_low are read-outs j, drawn where the
    # figures draw them (ℓ = j + 1; the final norm's output in a column of its own, ticked so).
    lows = eval_layer_inputs(part["eval_layers"], n_layers) if n_layers is not None else []
    fig.update_layout(
        title={"text": map_["title"], "font": {"size": 13}, "x": 0.02},
        height=MAP_HEIGHT, margin={"l": 50, "r": 10, "t": 36, "b": 40}, plot_bgcolor="white",
        xaxis={"title": "block input ℓ (resid_pre)", "range": [min(layers) - 0.5, max([*layers, *lows]) + 0.5],
               **_layer_ticks(layers, n_layers if n_layers in lows else None)},
        yaxis={"title": "position", "range": [min(positions) - 0.5, max(positions) + 0.5], "dtick": 1},
        clickmode="event", dragmode=False,
    )
    if map_["kind"] == "cosine" and lows:
        mark_eval_layers(fig, part["eval_layers"], n_layers)
    return fig


def _layer_ticks(layers: list[int], final_norm: int | None) -> dict:
    """Every 1st, 2nd or 4th block input (by model depth), and the final-norm column ``final_norm`` if drawn."""
    step = 1 if len(layers) <= 12 else 2 if len(layers) <= 24 else 4
    ticks = {ell: str(ell) for ell in layers[::step]}
    if final_norm is not None:
        ticks[final_norm] = FINAL_NORM
    return {"tickmode": "array", "tickvals": list(ticks), "ticktext": list(ticks.values())}


def map_figures(part: dict, selected: dict | None = None) -> list[go.Figure]:
    """Every map of ``part``, in the data's order (cosine first, then the selection scores)."""
    return [map_figure(part, m, selected) for m in part["maps"]]


PROJECTION_COLOURS = (("positive", "#d62728", "rgba(214,39,40,0.15)"), ("negative", "#1f77b4", "rgba(31,119,180,0.15)"))
PROJECTION_X_TITLE = "layer ℓ (residual stream entering block ℓ)"
PROJECTION_Y_TITLE = "⟨x, r̂⟩"


def projection_figure(part: dict, position: int, layer: int) -> go.Figure:
    """Positive and negative projections onto r̂[position, layer] across layers (± 1 std when known)."""
    projections = part["projections"]
    curve = projections["curves"].get(cell_key(position, layer)) if projections else None
    fig = go.Figure()
    if curve is None:
        why = "the run's candidates file is missing" if projections is None else "this candidate's r is zero"
        fig.add_annotation(text=f"no projection: {why}", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    else:
        layers = projections["layers"]
        for cls, colour, band in PROJECTION_COLOURS:
            mean, std = curve[cls]["mean"], curve[cls]["std"]
            if std is not None:
                fig.add_trace(go.Scatter(
                    x=layers + layers[::-1], y=[m + s for m, s in zip(mean, std)] + [m - s for m, s in zip(mean, std)][::-1],
                    fill="toself", fillcolor=band, line={"width": 0}, hoverinfo="skip", showlegend=False))
            fig.add_trace(go.Scatter(x=layers, y=mean, mode="lines+markers", name=part["labels"][cls],
                                     line={"color": colour}))
        fig.add_vline(x=layer, line={"color": SELECTED_COLOUR, "dash": "dot"})
    label = projections["label"] if projections else ""
    fig.update_layout(title={"text": f"projection onto r̂[{position}, {layer}]<br><sub>{label}</sub>", "font": {"size": 13}},
                      height=300, margin={"l": 50, "r": 10, "t": 56, "b": 40},
                      xaxis_title=f"{PROJECTION_X_TITLE}, position {position}", yaxis_title=PROJECTION_Y_TITLE)
    return fig
