"""Plotly figures of COSMIC results, and saving them for offline viewing.

Every function here reads results that other modules computed (DataFrames, arrays) and returns a
``plotly.graph_objects.Figure``; none of them runs the model or recomputes the method. Heatmaps put
the candidate layer on x and the token position (−n_pos … −1) on y.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

logger = logging.getLogger(__name__)

COSMIC_METRICS = ("s_abl", "s_add", "score", "kl")
SUBSTRING_METRICS = ("abl_refusal", "add_refusal", "score", "kl")
_SCORE_COLUMNS = ("s_abl", "s_add", "abl_refusal", "add_refusal", "kl", "score")
_GREY = [[0.0, "#d0d0d0"], [1.0, "#d0d0d0"]]
_HIGHLIGHT = "#d62728"
_png_export_works = True  # flips to False after the first failed PNG export, so we warn once


class PlotInputError(ValueError):
    """A results table or array does not have the columns or shape a plot needs."""


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise PlotInputError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise PlotInputError(f"{what}: missing column(s) {missing}; has {list(df.columns)}.")
    if df.empty:
        raise PlotInputError(f"{what}: the table is empty.")


def _grid(df: pd.DataFrame, column: str) -> tuple[list[int], list[int], np.ndarray]:
    """(positions, layers, z) with z[i, j] = df[column] at (positions[i], layers[j]); NaN if absent."""
    if df.duplicated(["position", "layer"]).any():
        raise PlotInputError("More than one row for the same (position, layer) candidate.")
    table = df.pivot(index="position", columns="layer", values=column).sort_index().sort_index(axis=1)
    return list(table.index), list(table.columns), table.to_numpy(dtype=object)


def cosine_heatmap(df_pos_layer: pd.DataFrame, eval_layers: Sequence[int] | None = None) -> go.Figure:
    """Heatmap of cos(mean harmful, mean harmless) over (position, layer).

    Args:
        df_pos_layer: Columns ``position`` (negative int), ``layer``, ``cos``.
        eval_layers: Layers to outline (the evaluation layers L_low), or None.
    """
    _require_columns(df_pos_layer, ("position", "layer", "cos"), "cosine_heatmap")
    positions, layers, z = _grid(df_pos_layer, "cos")
    fig = go.Figure(
        go.Heatmap(
            x=layers, y=positions, z=z.astype(float), colorscale="Viridis", colorbar={"title": "cos"},
            hovertemplate="position %{y}<br>layer %{x}<br>cos %{z:.4f}<extra></extra>",
        )
    )
    for layer in sorted(set(eval_layers or ())):
        fig.add_vrect(x0=layer - 0.5, x1=layer + 0.5, line={"color": _HIGHLIGHT, "width": 2},
                      annotation_text="L_low", annotation_position="top")
    fig.update_layout(title="Harmful vs harmless mean activation cosine", xaxis_title="layer",
                      yaxis_title="position", yaxis={"dtick": 1})
    return fig


def _hover_text(df: pd.DataFrame, positions: list[int], layers: list[int]) -> list[list[str]]:
    """Per-cell hover: every score column present, then "kept" or the filter reason."""
    shown = [c for c in _SCORE_COLUMNS if c in df.columns]
    rows = df.set_index(["position", "layer"])
    text = [["" for _ in layers] for _ in positions]
    for (pos, layer), row in rows.iterrows():
        numbers = "<br>".join(f"{c} = {row[c]:.4g}" for c in shown)
        status = "kept" if row["kept"] else f"filtered: {html.escape(str(row['reason']))}"
        chosen = "<br><b>chosen</b>" if row["chosen"] else ""
        text[positions.index(pos)][layers.index(layer)] = (
            f"position {pos}, layer {layer}<br>{numbers}<br>{status}{chosen}"
        )
    return text


def _score_traces(selection_df: pd.DataFrame, metric: str, show_legend: bool = True) -> list:
    """Kept heatmap (filtered cells NaN), grey heatmap of the filtered cells, the chosen marker."""
    _require_columns(selection_df, ("position", "layer", metric, "kept", "reason", "chosen"),
                     "selection table")
    positions, layers, values = _grid(selection_df, metric)
    kept_cells = _grid(selection_df, "kept")[2]
    present = pd.notna(kept_cells)  # cells with no candidate row stay blank, not grey
    kept = present & (kept_cells == True)  # noqa: E712 (object array holding bools and NaN)
    values = values.astype(float)
    text = _hover_text(selection_df, positions, layers)
    common = {"x": layers, "y": positions, "text": text, "hoverongaps": False,
              "hovertemplate": "%{text}<extra></extra>"}
    traces = [
        go.Heatmap(z=np.where(kept, values, np.nan), colorscale="Viridis", name=f"{metric} (kept)",
                   colorbar={"title": metric}, **common),
        go.Heatmap(z=np.where(present & ~kept, 0.0, np.nan), colorscale=_GREY, showscale=False,
                   name="filtered", **common),
    ]
    chosen = selection_df[selection_df["chosen"].astype(bool)]
    if len(chosen) > 1:
        raise PlotInputError(f"{len(chosen)} candidates are marked chosen; expected one.")
    if len(chosen) == 1:
        traces.append(go.Scatter(
            x=chosen["layer"].tolist(), y=chosen["position"].tolist(), mode="markers", name="chosen",
            marker={"symbol": "star", "size": 16, "color": _HIGHLIGHT,
                    "line": {"color": "white", "width": 1}},
            hoverinfo="skip", showlegend=show_legend,
        ))
    return traces


def score_heatmaps(selection_df: pd.DataFrame, metric: str) -> go.Figure:
    """Heatmap of one selection metric over candidates; filtered candidates grey, the pick starred.

    Args:
        selection_df: The selection table (COSMIC: ``s_abl``, ``s_add``, ``kl``, ``score``;
            substring baseline: ``abl_refusal``, ``add_refusal``, ``kl``, ``score``) with
            ``position``, ``layer``, ``kept``, ``reason``, ``chosen``.
        metric: The column to colour by.
    """
    if metric not in _SCORE_COLUMNS:
        raise PlotInputError(f"Unknown metric {metric!r}; expected one of {_SCORE_COLUMNS}.")
    fig = go.Figure(_score_traces(selection_df, metric))
    fig.update_layout(title=f"{metric} per candidate (grey: filtered out)", xaxis_title="layer",
                      yaxis_title="position", yaxis={"dtick": 1}, plot_bgcolor="white")
    return fig


def selection_dashboard(selection_df: pd.DataFrame) -> go.Figure:
    """2×2 heatmaps of the selection metrics (COSMIC or substring baseline, told by the columns)."""
    metrics = SUBSTRING_METRICS if "abl_refusal" in selection_df.columns else COSMIC_METRICS
    fig = make_subplots(rows=2, cols=2, subplot_titles=metrics, horizontal_spacing=0.15,
                        vertical_spacing=0.15)
    for k, metric in enumerate(metrics):
        row, col = divmod(k, 2)
        traces = _score_traces(selection_df, metric, show_legend=k == 0)
        # One colorbar per subplot, placed beside it instead of stacked at the figure's right edge.
        suffix = k + 1 if k else ""
        xdom, ydom = fig.layout[f"xaxis{suffix}"].domain, fig.layout[f"yaxis{suffix}"].domain
        traces[0].colorbar.update(x=xdom[1] + 0.01, y=(ydom[0] + ydom[1]) / 2,
                                  len=ydom[1] - ydom[0], thickness=12)
        for trace in traces:
            fig.add_trace(trace, row=row + 1, col=col + 1)
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="position", dtick=1)
    fig.update_layout(title="Direction selection (grey: filtered out, star: chosen)",
                      plot_bgcolor="white", height=750)
    return fig


def layer_cosine_line(df_layer: pd.DataFrame) -> go.Figure:
    """Per-layer cosine of the class means at the last position, evaluation layers L_low marked."""
    _require_columns(df_layer, ("layer", "cos", "in_eval_layers"), "layer_cosine_line")
    df = df_layer.sort_values("layer")
    low = df[df["in_eval_layers"].astype(bool)]
    fig = go.Figure([
        go.Scatter(x=df["layer"], y=df["cos"], mode="lines+markers", name="cos(harmful, harmless)",
                   hovertemplate="layer %{x}<br>cos %{y:.4f}<extra></extra>"),
        go.Scatter(x=low["layer"], y=low["cos"], mode="markers", name="L_low (evaluation layers)",
                   marker={"size": 13, "color": _HIGHLIGHT, "symbol": "circle-open", "line": {"width": 3}},
                   hovertemplate="evaluation layer %{x}<br>cos %{y:.4f}<extra></extra>"),
    ])
    fig.update_layout(title="Harmful vs harmless similarity per layer (last position)",
                      xaxis_title="layer", yaxis_title="cosine similarity")
    return fig


def _as_2d(array, name: str) -> np.ndarray:
    values = np.asarray(array.detach().cpu().double() if hasattr(array, "detach") else array, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0:
        raise PlotInputError(f"{name}: expected shape [n_prompts, n_layers], got {values.shape}.")
    return values


def projection_plot(harmful_proj, harmless_proj) -> go.Figure:
    """Mean ± one standard deviation of the projection onto r̂, per layer, for both classes.

    Args:
        harmful_proj, harmless_proj: Tensors or arrays of shape [n_prompts, n_layers].
    """
    classes = {"harmful": _as_2d(harmful_proj, "harmful_proj"),
               "harmless": _as_2d(harmless_proj, "harmless_proj")}
    if classes["harmful"].shape[1] != classes["harmless"].shape[1]:
        raise PlotInputError("harmful_proj and harmless_proj have different numbers of layers.")
    fig = go.Figure()
    for (label, values), colour in zip(classes.items(), ("#d62728", "#1f77b4")):
        layers = np.arange(values.shape[1])
        mean, std = values.mean(axis=0), values.std(axis=0)
        fig.add_trace(go.Scatter(
            x=np.concatenate([layers, layers[::-1]]), y=np.concatenate([mean + std, (mean - std)[::-1]]),
            fill="toself", fillcolor=colour, opacity=0.2, line={"width": 0}, name=f"{label} ± 1 std",
            hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=layers, y=mean, mode="lines+markers", name=f"{label} mean",
                                 line={"color": colour},
                                 hovertemplate=f"{label}<br>layer %{{x}}<br>mean %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title="Projection onto the refusal direction", xaxis_title="layer",
                      yaxis_title="projection onto r̂")
    return fig


def refusal_bars(metrics_df: pd.DataFrame, dataset: str = "harmful", by_category: bool = True,
                 metric: str = "refusal_rate") -> go.Figure:
    """Grouped bars of ``metric`` per condition (baseline first), per category or overall.

    Args:
        metrics_df: Columns ``dataset``, ``condition``, ``category`` ("all" = overall), ``n``,
            ``refusal_rate``, ``asr``.
        dataset: Which dataset's rows to plot.
        by_category: Bars per category (overall first); otherwise only the overall row.
        metric: ``refusal_rate`` or ``asr``.
    """
    _require_columns(metrics_df, ("dataset", "condition", "category", "n", metric), "refusal_bars")
    df = metrics_df[metrics_df["dataset"] == dataset]
    if df.empty:
        have = sorted(metrics_df["dataset"].unique())
        raise PlotInputError(f"No rows for dataset {dataset!r}; have {have}.")
    if not by_category:
        df = df[df["category"] == "all"]
        if df.empty:
            raise PlotInputError(f"Dataset {dataset!r} has no overall (category 'all') rows.")
    if df.duplicated(["condition", "category"]).any():
        raise PlotInputError(f"Dataset {dataset!r} has several rows for one (condition, category).")
    categories = ["all"] * ("all" in set(df["category"])) + sorted(set(df["category"]) - {"all"})
    order = list(dict.fromkeys(df["condition"]))
    conditions = sorted(order, key=lambda c: (c != "baseline", order.index(c)))
    fig = go.Figure()
    for condition in conditions:
        rows = df[df["condition"] == condition].set_index("category").reindex(categories)
        hover = f"{condition}<br>%{{x}}: %{{y:.3f}} (n=%{{customdata}})<extra></extra>"
        fig.add_trace(go.Bar(x=categories, y=rows[metric], name=condition, customdata=rows["n"],
                             hovertemplate=hover))
    fig.update_layout(barmode="group", title=f"{metric} on {dataset} prompts", yaxis_title=metric,
                      yaxis_range=[0, 1.05], xaxis_title="category")
    return fig


def alpha_sweep_plot(df: pd.DataFrame) -> go.Figure:
    """Harmful refusal and harmless false refusal against the steering strength α.

    Args:
        df: Columns ``alpha``, ``harmful_refusal``, ``harmless_refusal``, optionally ``label``
            (one pair of curves per label).
    """
    _require_columns(df, ("alpha", "harmful_refusal", "harmless_refusal"), "alpha_sweep_plot")
    groups = df.groupby("label", sort=False) if "label" in df.columns else [("", df)]
    fig = go.Figure()
    for label, group in groups:
        group = group.sort_values("alpha")
        prefix = f"{label}: " if label != "" else ""
        for column, name, dash in (("harmful_refusal", "harmful refusal", "solid"),
                                   ("harmless_refusal", "harmless false refusal", "dash")):
            fig.add_trace(go.Scatter(x=group["alpha"], y=group[column], mode="lines+markers",
                                     name=prefix + name, line={"dash": dash}, legendgroup=str(label),
                                     hovertemplate=f"{prefix}{name}<br>α %{{x}}<br>%{{y:.3f}}"
                                                   "<extra></extra>"))
    fig.update_layout(title="Refusal rate against steering strength", xaxis_title="α",
                      yaxis_title="refusal rate", yaxis_range=[0, 1.05])
    return fig


def agreement_scatter(cosmic_df: pd.DataFrame, substring_df: pd.DataFrame) -> go.Figure:
    """COSMIC score against −(ablation refusal score) for candidates both methods kept; picks marked.

    Args:
        cosmic_df: COSMIC selection table (``position``, ``layer``, ``score``, ``kept``, ``chosen``).
        substring_df: Substring-baseline table (``position``, ``layer``, ``abl_refusal``, ``kept``,
            ``chosen``).
    """
    _require_columns(cosmic_df, ("position", "layer", "score", "kept", "chosen"), "cosmic_df")
    _require_columns(substring_df, ("position", "layer", "abl_refusal", "kept", "chosen"), "substring_df")
    merged = cosmic_df[["position", "layer", "score", "kept", "chosen"]].merge(
        substring_df[["position", "layer", "abl_refusal", "kept", "chosen"]],
        on=["position", "layer"], suffixes=("_cosmic", "_substring"))
    merged["neg_abl_refusal"] = -merged["abl_refusal"]
    shared = merged[merged["kept_cosmic"].astype(bool) & merged["kept_substring"].astype(bool)]
    hover = ("position %{customdata[0]}, layer %{customdata[1]}<br>−abl refusal %{x:.4f}"
             "<br>COSMIC score %{y:.4f}")
    fig = go.Figure(go.Scatter(
        x=shared["neg_abl_refusal"], y=shared["score"], mode="markers", name="kept by both",
        marker={"color": "#7f7f7f", "size": 7}, customdata=shared[["position", "layer"]].to_numpy(),
        hovertemplate=hover + "<extra></extra>"))
    for method, symbol, colour in (("cosmic", "star", _HIGHLIGHT), ("substring", "diamond-open", "#1f77b4")):
        pick = merged[merged[f"chosen_{method}"].astype(bool)]
        fig.add_trace(go.Scatter(
            x=pick["neg_abl_refusal"], y=pick["score"], mode="markers", name=f"{method} pick",
            marker={"symbol": symbol, "size": 18, "color": colour, "line": {"width": 2, "color": colour}},
            customdata=pick[["position", "layer"]].to_numpy(), hovertemplate=hover + "<extra></extra>"))
    fig.update_layout(title="COSMIC vs substring-matching candidate scores",
                      xaxis_title="−(ablation refusal score)  (substring baseline)",
                      yaxis_title="COSMIC score (S_abl + S_add)")
    return fig


def save_figure(fig: go.Figure, path_without_suffix: str | Path, png: bool = True) -> list[Path]:
    """Write ``<path>.html`` (plotly.js as a shared ``plotly.min.js`` beside it, so it opens offline)
    and, when a static export works offline (kaleido with a browser), ``<path>.png``.

    Returns:
        The files written. A failed PNG export is logged once and skipped.
    """
    global _png_export_works
    base = Path(path_without_suffix)
    if base.suffix in (".html", ".png"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    html_path = base.with_name(base.name + ".html")
    fig.write_html(html_path, include_plotlyjs="directory", full_html=True)
    written = [html_path]
    if png and _png_export_works:
        png_path = base.with_name(base.name + ".png")
        try:
            fig.write_image(png_path)
            written.append(png_path)
        except (ImportError, RuntimeError, ValueError, OSError) as e:
            _png_export_works = False
            logger.warning("PNG export skipped (kaleido/Chrome not usable offline: %s); HTML only.",
                           str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return written
