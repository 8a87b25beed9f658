"""Judged rate against reply length: one line per completion set, 95% Wilson error bars."""

from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go

from cosmic_tl.plots.common import LEGEND_BELOW, no_data_figure, set_title

LENGTH_AXIS = "reply length k (new tokens; each reply cut to its first k)"


def length_curve(rates: Mapping[str, Sequence[Mapping]], *, judge: str, judged: str = "refusal",
                 stable_from: int | None = None, subtitle: str | None = None) -> go.Figure:
    """The rate each completion set's verdicts give at every reply length.

    Args:
        rates: ``"<dataset>_<condition>"`` → rows with ``k``, ``count``, ``n``, ``rate``, ``ci_low``,
            ``ci_high`` and ``changed`` (verdicts that differ from the full-length ones), as in
            ``summary.json["lengths"]["judges"][judge]["rates"]``.
        judge: The judge's name (title).
        judged: What the rate counts (axis title).
        stable_from: The length from which no verdict changes (a dashed line), if known.
        subtitle: Provenance line.
    """
    title = f"{judged} rate against reply length ({judge} judge, 95% Wilson intervals)"
    if not rates or not any(rates.values()):
        return no_data_figure(title, subtitle)
    fig = go.Figure()
    cuts = sorted({row["k"] for rows in rates.values() for row in rows})
    # The cuts double, so they are drawn evenly spaced (a log scale) at their index, labelled with k.
    at = {k: i for i, k in enumerate(cuts)}
    for key, rows in rates.items():
        rows = sorted(rows, key=lambda r: r["k"])
        fig.add_trace(go.Scatter(
            x=[at[r["k"]] for r in rows], y=[r["rate"] for r in rows], mode="lines+markers",
            name=key.replace("_", " · ", 1),
            error_y={"type": "data", "symmetric": False, "array": [r["ci_high"] - r["rate"] for r in rows],
                     "arrayminus": [r["rate"] - r["ci_low"] for r in rows]},
            customdata=[[r["count"], r["n"], r["ci_low"], r["ci_high"], r["changed"], r["k"]] for r in rows],
            hovertemplate=(f"{key}<br>k = %{{customdata[5]}}: %{{customdata[0]}}/%{{customdata[1]}} = %{{y:.2f}}"
                           "<br>95% CI [%{customdata[2]:.2f}, %{customdata[3]:.2f}]"
                           "<br>%{customdata[4]} verdicts differ from the longest<extra></extra>"),
        ))
    if stable_from in at and len(cuts) > 1:
        fig.add_vline(x=at[stable_from], line_dash="dash", line_color="#7f7f7f",
                      annotation_text=f"verdicts stable from {stable_from}", annotation_position="top left")
    fig.update_xaxes(title_text=LENGTH_AXIS, tickmode="array", tickvals=list(at.values()),
                     ticktext=[str(k) for k in cuts], range=[-0.3, len(cuts) - 0.7])
    fig.update_yaxes(title_text=f"{judged} rate", range=[-0.03, 1.03])  # a rate of 0 stays visible
    fig.update_layout(legend=LEGEND_BELOW, height=460)
    return set_title(fig, title, subtitle)
