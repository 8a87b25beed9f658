"""Rates with their 95% Wilson intervals: refusal bars, TruthfulQA accuracy, and the paired
effects of each intervention against its baseline (exact McNemar p-values in the labels)."""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from cosmic_tl.plots.categories import ALL_PROMPTS, category_group, rate_title
from cosmic_tl.plots.common import (
    HIGHLIGHT, LEGEND_BELOW, PlotInputError, no_data_figure, require_columns, set_title, wilson_error_bars,
)

_BASELINE = "baseline"
_RATE_HOVER = "%{customdata[0]}/%{customdata[1]} = %{y:.3f}<br>95% CI [%{customdata[2]:.3f}, %{customdata[3]:.3f}]"


def _baseline_first(conditions: Sequence[str]) -> list[str]:
    order = list(dict.fromkeys(conditions))
    return sorted(order, key=lambda c: (c != _BASELINE, order.index(c)))


def _rate_bar(rows: pd.DataFrame, x, rate: str, name: str, **kwargs) -> go.Bar:
    """Bars of ``rate`` with Wilson error bars; hover shows count/n and the interval."""
    rows, error = wilson_error_bars(rows, rate)
    return go.Bar(x=x, y=rows[rate], name=name, error_y=error,
                  customdata=rows[["count", "n", "ci_low", "ci_high"]].to_numpy(),
                  hovertemplate=f"{name}<br>%{{x}}: {_RATE_HOVER}<extra></extra>", **kwargs)


def refusal_bars(metrics_df: pd.DataFrame, dataset: str = "harmful", by_category: bool = True,
                 metric: str = "refusal_rate", *, subtitle: str | None = None) -> go.Figure:
    """Grouped bars of ``metric`` per condition (baseline first) with 95% Wilson error bars.

    Categories are grouped under the benchmark whose taxonomy names them (the x axis has two
    levels: benchmark, then ``category (n=…)``); the overall row comes first, as ``all prompts``.

    Args:
        metrics_df: Columns ``dataset``, ``condition``, ``category`` ("all" = overall), ``n``,
            ``refusal_rate``, ``asr`` (optional ``count``, ``ci_low``, ``ci_high`` are used as given).
        dataset: Which dataset's rows to plot.
        by_category: Bars per category (overall first); otherwise only the overall row.
        metric: ``refusal_rate`` or ``asr``.
        subtitle: Provenance line.
    """
    title = f"{rate_title(metric).capitalize()} on {dataset} prompts (95% Wilson intervals)"
    require_columns(metrics_df, ("dataset", "condition", "category", "n", metric), "refusal_bars")
    if metrics_df.empty:
        return no_data_figure(title, subtitle)
    df = metrics_df[metrics_df["dataset"] == dataset]
    if df.empty:
        raise PlotInputError(f"No rows for dataset {dataset!r}; have {sorted(metrics_df['dataset'].unique())}.")
    if not by_category:
        df = df[df["category"] == "all"]
        if df.empty:
            raise PlotInputError(f"Dataset {dataset!r} has no overall (category 'all') rows.")
    if df.duplicated(["condition", "category"]).any():
        raise PlotInputError(f"Dataset {dataset!r} has several rows for one (condition, category).")
    # Every condition of a category sees the same prompts, so one n per category label.
    sizes = df.groupby("category")["n"].max().astype(int)
    order = sorted(sizes.index, key=lambda c: (category_group(c) != ALL_PROMPTS, category_group(c), c))
    label = {c: f"{c} (n={sizes[c]})" for c in order}
    fig = go.Figure()
    for condition in _baseline_first(df["condition"]):
        rows = df[df["condition"] == condition].set_index("category").reindex(order).dropna(subset=[metric])
        x = [[category_group(c) for c in rows.index], [label[c] for c in rows.index]]
        fig.add_trace(_rate_bar(rows.reset_index(), x, metric, condition))
    fig.update_xaxes(title_text="prompt category, grouped by the benchmark that names it")
    fig.update_layout(barmode="group", yaxis_title=rate_title(metric), yaxis_range=[0, 1.05])
    return set_title(fig, title, subtitle)


def capability_bars(capability: Mapping, *, subtitle: str | None = None) -> go.Figure:
    """TruthfulQA (binary) accuracy per condition with 95% Wilson error bars and chance at 0.5.

    Args:
        capability: :func:`cosmic_tl.capabilities.capability_summary`'s dict: ``conditions``
            (``condition``, ``n``, ``count``, ``accuracy``, ``ci_low``, ``ci_high``) and ``effects``
            (their paired tests against the baseline; the p-value goes into the tick label).
        subtitle: Provenance line.
    """
    title = f"{capability.get('benchmark', 'capability')}: accuracy per condition (95% Wilson intervals)"
    conditions = pd.DataFrame(list(capability.get("conditions", [])))
    if conditions.empty:
        return no_data_figure(title, subtitle)
    require_columns(conditions, ("condition", "n", "count", "accuracy", "ci_low", "ci_high"), "capability_bars")
    p_values = {e["condition"]: e["p_value"] for e in capability.get("effects", [])}
    labels = [f"{c}<br>n={n}" + (f", p={p_values[c]:.3g}" if c in p_values else "")
              for c, n in zip(conditions["condition"], conditions["n"])]
    fig = go.Figure(_rate_bar(conditions, labels, "accuracy", "accuracy", marker_color="#1f77b4"))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance (two options)")
    fig.update_layout(xaxis_title="condition (p: exact McNemar vs baseline)", yaxis_title="accuracy",
                      yaxis_range=[0, 1.05], showlegend=False)
    return set_title(fig, title, subtitle)


def effect_label(effect: Mapping) -> str:
    """``harmful · ablation (n=24, p=0.031)``, starred when the effect is significant."""
    star = " *" if effect["significant"] else ""
    return f"{effect['dataset']} · {effect['condition']} (n={effect['n']}, p={effect['p_value']:.3g}){star}"


def effects_plot(effects: Sequence, *, subtitle: str | None = None) -> go.Figure:
    """Forest plot: each intervention's rate and its baseline's, with 95% Wilson intervals.

    Args:
        effects: :class:`cosmic_tl.stats.Effect` values or :func:`cosmic_tl.stats.paired_effect`
            dicts (the ``effects`` of ``summary.json``).
        subtitle: Provenance line.
    """
    title = "Effects of the interventions (95% Wilson intervals; * : p < 0.05, expected sign)"
    if not effects:
        return no_data_figure(title, subtitle)
    table = pd.DataFrame(list(effects))
    require_columns(table, ("dataset", "condition", "n", "baseline_count", "count", "baseline_rate", "rate",
                            "ci_low", "ci_high", "baseline_ci_low", "baseline_ci_high", "p_value", "significant"),
                    "effects_plot")
    labels = [effect_label(e) for e in table.to_dict("records")]
    fig = go.Figure()
    for prefix, name, colour, symbol in (("baseline_", "no intervention", "#7f7f7f", "circle-open"),
                                         ("", "intervention", HIGHLIGHT, "diamond")):
        rate = table[f"{prefix}rate"]
        fig.add_trace(go.Scatter(
            x=rate, y=labels, mode="markers", name=name, marker={"color": colour, "symbol": symbol, "size": 11},
            error_x={"type": "data", "symmetric": False, "array": table[f"{prefix}ci_high"] - rate,
                     "arrayminus": rate - table[f"{prefix}ci_low"]},
            customdata=table[[f"{prefix}count", "n"]].to_numpy(),
            hovertemplate=f"{name}: %{{customdata[0]}}/%{{customdata[1]}} = %{{x:.3f}}<extra>%{{y}}</extra>"))
    fig.update_layout(xaxis_title="rate (count / n)", xaxis_range=[0, 1], yaxis={"autorange": "reversed"},
                      legend=LEGEND_BELOW, height=max(300, 120 + 50 * len(table)))
    return set_title(fig, title, subtitle)
