"""The linked position × layer maps of one run part, as plotly figures on shared axes.

Every map has the same x (all layers) and y (all candidate positions) ranges, so one cell is at the
same place everywhere. Score maps colour the kept candidates and draw filtered ones grey (their
hover says why they were dropped); layers the selection skipped (``layer_stride``) stay blank.
Each figure ends with two marker traces: the chosen candidate (a star) and the current selection
(an open square), which the page and the notebook view move when a cell is clicked.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go

from cosmic_tl.explore.projections import cell_key

GREY = [[0.0, "#c8c8c8"], [1.0, "#c8c8c8"]]
CHOSEN_COLOUR = "#d62728"
SELECTED_COLOUR = "#ff7f0e"
SELECTED_TRACE = "selected"  # name of the marker trace that follows the selection
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
    text = _hover(part, map_)
    common = {"x": part["layers"], "y": part["positions"], "text": text, "hoverongaps": False,
              "hovertemplate": "%{text}<extra></extra>", "xgap": 1, "ygap": 1}
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
    chosen = part["chosen"]
    traces.append(_marker("chosen", chosen, "star", CHOSEN_COLOUR, 14))
    traces.append(_marker(SELECTED_TRACE, selected or chosen, "square-open", SELECTED_COLOUR, 18))
    fig = go.Figure(traces)
    positions, layers = part["positions"], part["layers"]
    # Candidates live at block inputs ℓ; the evaluation layers L_low are block outputs j, which
    # feed block j + 1: they are outlined at ℓ = j + 1 (the final norm's output j = n − 1 at ℓ = n).
    lows = [j + 1 for j in part["eval_layers"]] if map_["kind"] == "cosine" else []
    fig.update_layout(
        title={"text": map_["title"], "font": {"size": 13}, "x": 0.02},
        height=MAP_HEIGHT, margin={"l": 50, "r": 10, "t": 36, "b": 40}, plot_bgcolor="white",
        xaxis={"title": "block input ℓ (resid_pre)", "range": [min(layers) - 0.5, max([*layers, *lows]) + 0.5],
               "dtick": _dtick(len(layers))},
        yaxis={"title": "position", "range": [min(positions) - 0.5, max(positions) + 0.5], "dtick": 1},
        clickmode="event", dragmode=False,
    )
    for low in lows:
        fig.add_vrect(x0=low - 0.5, x1=low + 0.5, line={"color": CHOSEN_COLOUR, "width": 1.5, "dash": "dot"})
    return fig


def _dtick(n_layers: int) -> int:
    return 1 if n_layers <= 12 else 2 if n_layers <= 24 else 4


def map_figures(part: dict, selected: dict | None = None) -> list[go.Figure]:
    """Every map of ``part``, in the data's order (cosine first, then the selection scores)."""
    return [map_figure(part, m, selected) for m in part["maps"]]


def projection_figure(part: dict, position: int, layer: int) -> go.Figure:
    """Harmful and harmless projections onto r̂[position, layer] across layers (± 1 std when known)."""
    projections = part["projections"]
    curve = projections["curves"].get(cell_key(position, layer)) if projections else None
    fig = go.Figure()
    if curve is None:
        why = "the run's candidates file is missing" if projections is None else "this candidate's r is zero"
        fig.add_annotation(text=f"no projection: {why}", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    else:
        layers = projections["layers"]
        for cls, colour, band in (("harmful", "#d62728", "rgba(214,39,40,0.15)"),
                                  ("harmless", "#1f77b4", "rgba(31,119,180,0.15)")):
            mean, std = curve[cls]["mean"], curve[cls]["std"]
            if std is not None:
                fig.add_trace(go.Scatter(
                    x=layers + layers[::-1], y=[m + s for m, s in zip(mean, std)] + [m - s for m, s in zip(mean, std)][::-1],
                    fill="toself", fillcolor=band, line={"width": 0}, hoverinfo="skip", showlegend=False))
            fig.add_trace(go.Scatter(x=layers, y=mean, mode="lines+markers", name=cls, line={"color": colour}))
        fig.add_vline(x=layer, line={"color": SELECTED_COLOUR, "dash": "dot"})
    label = projections["label"] if projections else ""
    fig.update_layout(title={"text": f"projection onto r̂[{position}, {layer}]<br><sub>{label}</sub>", "font": {"size": 13}},
                      height=300, margin={"l": 50, "r": 10, "t": 56, "b": 40},
                      xaxis_title=f"layer ℓ (position {position})", yaxis_title="⟨x, r̂⟩")
    return fig
