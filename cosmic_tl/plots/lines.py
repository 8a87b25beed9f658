"""Line and scatter figures: the per-layer cosine that picks L_low, projections onto r̂, the α
sweep, and the agreement of COSMIC with the refusal-token baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from cosmic_tl.plots.common import (
    BLOCK_OUTPUT_AXIS, HIGHLIGHT, PlotInputError, no_data_figure, require_columns, set_title, wilson_error_bars,
)


def _block_output_axis(n: int) -> dict:
    """X axis over read-out indices 0 … n−1; the last tick says it is the final-norm output."""
    return {"title_text": BLOCK_OUTPUT_AXIS, "tickmode": "array", "tickvals": list(range(n)),
            "ticktext": [str(j) for j in range(n - 1)] + [f"{n - 1}<br>final norm"]}


def layer_cosine_line(df_layer: pd.DataFrame, *, subtitle: str | None = None) -> go.Figure:
    """Per-read-out cosine of the class means at the last position, evaluation layers L_low marked.

    Args:
        df_layer: Columns ``layer`` (block output j, the last one the final-norm output), ``cos``,
            ``in_eval_layers``.
        subtitle: Provenance line.
    """
    title = "Harmful vs harmless similarity per layer (last position)"
    require_columns(df_layer, ("layer", "cos", "in_eval_layers"), "layer_cosine_line")
    if df_layer.empty:
        return no_data_figure(title, subtitle)
    df = df_layer.sort_values("layer")
    low = df[df["in_eval_layers"].astype(bool)]
    fig = go.Figure([
        go.Scatter(x=df["layer"], y=df["cos"], mode="lines+markers", name="cos(harmful, harmless)",
                   hovertemplate="block output j = %{x}<br>cos %{y:.4f}<extra></extra>"),
        go.Scatter(x=low["layer"], y=low["cos"], mode="markers", name="L_low (evaluation layers)",
                   marker={"size": 13, "color": HIGHLIGHT, "symbol": "circle-open", "line": {"width": 3}},
                   hovertemplate="evaluation layer j = %{x}<br>cos %{y:.4f}<extra></extra>"),
    ])
    fig.update_layout(xaxis=_block_output_axis(int(df["layer"].max()) + 1), yaxis_title="cosine similarity")
    return set_title(fig, title, subtitle)


def _as_2d(array, name: str) -> np.ndarray:
    values = np.asarray(array.detach().cpu().double() if hasattr(array, "detach") else array, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0:
        raise PlotInputError(f"{name}: expected shape [n_prompts, n_layers], got {values.shape}.")
    return values


def projection_plot(harmful_proj, harmless_proj, chosen_layer: int | None = None, *,
                    subtitle: str | None = None) -> go.Figure:
    """Mean ± one standard deviation of the projection onto r̂, per read-out, for both classes.

    Args:
        harmful_proj, harmless_proj: Tensors or arrays of shape [n_prompts, n_layers]: column j
            is the block-j output (the last one the final-norm output).
        chosen_layer: The direction's block input ℓ; marked at block output j = ℓ − 1, the same
            activation (ℓ = 0, the embeddings, is drawn at j = −1).
        subtitle: Provenance line.
    """
    classes = {"harmful": _as_2d(harmful_proj, "harmful_proj"), "harmless": _as_2d(harmless_proj, "harmless_proj")}
    n_layers = classes["harmful"].shape[1]
    if classes["harmless"].shape[1] != n_layers:
        raise PlotInputError("harmful_proj and harmless_proj have different numbers of layers.")
    if chosen_layer is not None and not 0 <= chosen_layer < n_layers:
        raise PlotInputError(f"chosen_layer {chosen_layer} is not a block input 0 … {n_layers - 1}.")
    fig = go.Figure()
    for (label, values), colour in zip(classes.items(), ("#d62728", "#1f77b4")):
        layers = np.arange(n_layers)
        mean, std = values.mean(axis=0), values.std(axis=0)
        fig.add_trace(go.Scatter(
            x=np.concatenate([layers, layers[::-1]]), y=np.concatenate([mean + std, (mean - std)[::-1]]),
            fill="toself", fillcolor=colour, opacity=0.2, line={"width": 0}, name=f"{label} ± 1 std",
            hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=layers, y=mean, mode="lines+markers", name=f"{label} mean", line={"color": colour},
                                 hovertemplate=f"{label}<br>block output j = %{{x}}<br>mean %{{y:.4f}}<extra></extra>"))
    if chosen_layer is not None:
        note = f"chosen direction: block input ℓ = {chosen_layer} (= output j = {chosen_layer - 1})"
        fig.add_vline(x=chosen_layer - 1, line_dash="dot", annotation_text=note)
    fig.update_layout(xaxis=_block_output_axis(n_layers), yaxis_title="projection onto r̂")
    return set_title(fig, "Projection onto the refusal direction (last position)", subtitle)


def alpha_sweep_plot(df: pd.DataFrame, *, subtitle: str | None = None) -> go.Figure:
    """Harmful refusal and harmless false refusal against the steering strength α.

    Args:
        df: Columns ``alpha``, ``harmful_refusal``, ``harmless_refusal``; optionally ``label``
            (one pair of curves per label) and ``n_harmful`` / ``n_harmless`` (prompts per rate),
            which add 95% Wilson error bars.
        subtitle: Provenance line.
    """
    title = "Refusal rate against steering strength"
    require_columns(df, ("alpha", "harmful_refusal", "harmless_refusal"), "alpha_sweep_plot")
    if df.empty:
        return no_data_figure(title, subtitle)
    groups = df.groupby("label", sort=False) if "label" in df.columns else [("", df)]
    fig = go.Figure()
    for label, group in groups:
        group = group.sort_values("alpha")
        prefix = f"{label}: " if label != "" else ""
        for column, kind, name, dash in (("harmful_refusal", "harmful", "harmful refusal", "solid"),
                                         ("harmless_refusal", "harmless", "harmless false refusal", "dash")):
            error, hover_n = None, ""
            if f"n_{kind}" in group.columns:
                _, error = wilson_error_bars(group.rename(columns={f"n_{kind}": "n"}), column)
                hover_n = " (n=%{customdata})"
            fig.add_trace(go.Scatter(
                x=group["alpha"], y=group[column], mode="lines+markers", name=prefix + name, line={"dash": dash},
                legendgroup=str(label), error_y=error,
                customdata=group[f"n_{kind}"] if error else None,
                hovertemplate=f"{prefix}{name}<br>α %{{x}}<br>%{{y:.3f}}{hover_n}<extra></extra>"))
    fig.update_layout(xaxis_title="α", yaxis_title="refusal rate", yaxis_range=[0, 1.05])
    return set_title(fig, title, subtitle)


def agreement_scatter(cosmic_df: pd.DataFrame, refusal_token_df: pd.DataFrame, *, subtitle: str | None = None) -> go.Figure:
    """COSMIC score against −(ablation refusal score) for candidates both methods kept; picks marked.

    Args:
        cosmic_df: COSMIC selection table (``position``, ``layer``, ``score``, ``kept``, ``chosen``).
        refusal_token_df: Refusal-token baseline table (``position``, ``layer``, ``abl_refusal``, ``kept``,
            ``chosen``).
        subtitle: Provenance line.
    """
    title = "COSMIC vs refusal-token candidate scores"
    require_columns(cosmic_df, ("position", "layer", "score", "kept", "chosen"), "cosmic_df")
    require_columns(refusal_token_df, ("position", "layer", "abl_refusal", "kept", "chosen"), "refusal_token_df")
    merged = cosmic_df[["position", "layer", "score", "kept", "chosen"]].merge(
        refusal_token_df[["position", "layer", "abl_refusal", "kept", "chosen"]],
        on=["position", "layer"], suffixes=("_cosmic", "_refusal_token"))
    if merged.empty:
        return no_data_figure(title, subtitle, "no candidate in both tables")
    merged["neg_abl_refusal"] = -merged["abl_refusal"]
    shared = merged[merged["kept_cosmic"].astype(bool) & merged["kept_refusal_token"].astype(bool)]
    hover = ("position %{customdata[0]}, block input ℓ = %{customdata[1]}<br>−abl refusal %{x:.4f}"
             "<br>COSMIC score %{y:.4f}")
    fig = go.Figure(go.Scatter(
        x=shared["neg_abl_refusal"], y=shared["score"], mode="markers", name="kept by both",
        marker={"color": "#7f7f7f", "size": 7}, customdata=shared[["position", "layer"]].to_numpy(),
        hovertemplate=hover + "<extra></extra>"))
    for method, name, symbol, colour in (("cosmic", "cosmic", "star", HIGHLIGHT),
                                         ("refusal_token", "refusal-token", "diamond-open", "#1f77b4")):
        pick = merged[merged[f"chosen_{method}"].astype(bool)]
        fig.add_trace(go.Scatter(
            x=pick["neg_abl_refusal"], y=pick["score"], mode="markers", name=f"{name} pick",
            marker={"symbol": symbol, "size": 18, "color": colour, "line": {"width": 2, "color": colour}},
            customdata=pick[["position", "layer"]].to_numpy(), hovertemplate=hover + "<extra></extra>"))
    fig.update_layout(xaxis_title="−(ablation refusal score)  (refusal-token baseline)",
                      yaxis_title="COSMIC score (S_abl + S_add)")
    return set_title(fig, title, subtitle)
