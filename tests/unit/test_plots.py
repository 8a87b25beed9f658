"""Figures built from synthetic result tables: the plotted numbers must be the input numbers."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from cosmic_tl import plots
from cosmic_tl.plots import PlotInputError

POSITIONS = [-3, -2, -1]
LAYERS = [0, 1, 2, 3]


def _cell(fig_trace, position, layer):
    return fig_trace.z[list(fig_trace.y).index(position)][list(fig_trace.x).index(layer)]


@pytest.fixture
def selection_df():
    rng = np.random.default_rng(0)
    rows = []
    for pos in POSITIONS:
        for layer in LAYERS:
            s_abl, s_add, kl = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 0.05)
            rows.append(dict(position=pos, layer=layer, s_abl=s_abl, s_add=s_add, kl=kl,
                             score=s_abl + s_add, kept=True, reason="", chosen=False))
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # row order must not matter
    df.loc[(df.position == -2) & (df.layer == 1), ["kl", "kept", "reason"]] = [0.5, False, "kl>0.1"]
    df.loc[df.layer == 3, ["kept", "reason"]] = [False, "late layer"]
    df.loc[(df.position == -3) & (df.layer == 2), "chosen"] = True
    return df


def test_cosine_heatmap_cells_and_eval_layers():
    df = pd.DataFrame([dict(position=p, layer=l, cos=0.1 * l - 0.01 * p)
                       for p in POSITIONS for l in LAYERS])
    fig = plots.cosine_heatmap(df.iloc[::-1], eval_layers=[2, 3])
    (heat,) = fig.data
    assert isinstance(heat, go.Heatmap)
    assert list(heat.y) == POSITIONS and list(heat.x) == LAYERS
    for row in df.itertuples():
        assert _cell(heat, row.position, row.layer) == pytest.approx(row.cos)
    boxes = sorted((s.x0, s.x1) for s in fig.layout.shapes)
    assert boxes == [(1.5, 2.5), (2.5, 3.5)]
    assert "cos" in heat.hovertemplate


def test_cosine_heatmap_rejects_missing_column():
    with pytest.raises(PlotInputError, match="cos"):
        plots.cosine_heatmap(pd.DataFrame({"position": [-1], "layer": [0]}))


def test_score_heatmap_kept_grey_chosen_and_hover(selection_df):
    fig = plots.score_heatmaps(selection_df, "s_abl")
    kept, grey, chosen = fig.data
    assert isinstance(kept, go.Heatmap) and isinstance(grey, go.Heatmap) and isinstance(chosen, go.Scatter)
    for row in selection_df.itertuples():
        if row.kept:
            assert _cell(kept, row.position, row.layer) == pytest.approx(row.s_abl)
            assert np.isnan(_cell(grey, row.position, row.layer))
        else:
            assert np.isnan(_cell(kept, row.position, row.layer))
            assert not np.isnan(_cell(grey, row.position, row.layer))
    assert (list(chosen.x), list(chosen.y)) == ([2], [-3])
    text = kept.text[POSITIONS.index(-2)][LAYERS.index(1)]
    assert "filtered: kl&gt;0.1" in text and "kl = 0.5" in text
    assert "late layer" in kept.text[0][LAYERS.index(3)]
    assert "chosen" in kept.text[POSITIONS.index(-3)][LAYERS.index(2)]


def test_score_heatmap_substring_columns_and_bad_inputs(selection_df):
    sub = selection_df.rename(columns={"s_abl": "abl_refusal", "s_add": "add_refusal"})
    fig = plots.score_heatmaps(sub, "abl_refusal")
    row = sub[sub.kept].iloc[0]
    assert _cell(fig.data[0], row.position, row.layer) == pytest.approx(row.abl_refusal)
    assert "abl_refusal = " in fig.data[0].text[0][0]
    with pytest.raises(PlotInputError, match="Unknown metric"):
        plots.score_heatmaps(selection_df, "nope")
    with pytest.raises(PlotInputError, match="chosen"):
        plots.score_heatmaps(selection_df.assign(chosen=True), "kl")
    with pytest.raises(PlotInputError, match="same"):
        plots.score_heatmaps(pd.concat([selection_df, selection_df.iloc[:1]]), "kl")


def test_selection_dashboard_has_four_metrics(selection_df):
    fig = plots.selection_dashboard(selection_df)
    kept_traces = [t for t in fig.data if t.name and t.name.endswith("(kept)")]
    assert [t.name for t in kept_traces] == [f"{m} (kept)" for m in plots.COSMIC_METRICS]
    assert len({t.colorbar.x for t in kept_traces}) == 2  # one colorbar column per subplot column
    score = kept_traces[2]
    row = selection_df[selection_df.kept].iloc[0]
    assert _cell(score, row.position, row.layer) == pytest.approx(row.s_abl + row.s_add)
    renamed = selection_df.rename(columns={"s_abl": "abl_refusal", "s_add": "add_refusal"})
    sub = plots.selection_dashboard(renamed)
    names = [t.name for t in sub.data if t.name.endswith("(kept)")]
    assert names == [f"{m} (kept)" for m in plots.SUBSTRING_METRICS]


def test_layer_cosine_line_highlights_eval_layers():
    df = pd.DataFrame({"layer": [3, 0, 1, 2], "cos": [0.9, 0.99, 0.5, 0.7],
                       "in_eval_layers": [False, False, True, True]})
    line, low = plots.layer_cosine_line(df).data
    assert list(line.x) == [0, 1, 2, 3] and list(line.y) == [0.99, 0.5, 0.7, 0.9]
    assert set(low.x) == {1, 2} and set(low.y) == {0.5, 0.7}


def test_projection_plot_mean_and_band():
    import torch

    harmful = torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    harmless = np.array([[0.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 4.0, 1.0]])
    fig = plots.projection_plot(harmful, harmless)
    means = {t.name: list(t.y) for t in fig.data if t.name.endswith("mean")}
    assert means["harmful mean"] == pytest.approx([2.0, 3.0, 4.0])
    assert means["harmless mean"] == pytest.approx([0.0, 2.0, 1.0])
    band = next(t for t in fig.data if t.name == "harmful ± 1 std")
    assert list(band.y[:3]) == pytest.approx([3.0, 4.0, 5.0])  # mean + std (std = 1)
    with pytest.raises(PlotInputError, match="layers"):
        plots.projection_plot(harmful, harmless[:, :2])
    with pytest.raises(PlotInputError, match="n_prompts, n_layers"):
        plots.projection_plot(harmful[0], harmless)


@pytest.fixture
def metrics_df():
    rows = []
    for cond, base in (("ablation", 0.1), ("baseline", 0.9)):
        for cat, shift in (("all", 0.0), ("cyber", 0.05), ("bio", -0.05)):
            rows.append(dict(dataset="harmful", condition=cond, category=cat, n=10,
                             refusal_rate=base + shift, asr=1 - base - shift))
    rows.append(dict(dataset="harmless", condition="baseline", category="all", n=5,
                     refusal_rate=0.2, asr=0.8))
    return pd.DataFrame(rows)


def test_refusal_bars_heights_equal_rates(metrics_df):
    fig = plots.refusal_bars(metrics_df, dataset="harmful")
    assert [t.name for t in fig.data] == ["baseline", "ablation"]  # baseline first
    assert list(fig.data[0].x) == ["all", "bio", "cyber"]
    assert list(fig.data[0].y) == pytest.approx([0.9, 0.85, 0.95])
    assert list(fig.data[1].y) == pytest.approx([0.1, 0.05, 0.15])
    asr = plots.refusal_bars(metrics_df, dataset="harmful", by_category=False, metric="asr")
    assert list(asr.data[0].x) == ["all"] and list(asr.data[1].y) == pytest.approx([0.9])
    with pytest.raises(PlotInputError, match="No rows"):
        plots.refusal_bars(metrics_df, dataset="other")


def test_alpha_sweep_plot_with_and_without_labels():
    df = pd.DataFrame({"alpha": [1.0, 0.0, 0.5], "harmful_refusal": [1.0, 0.2, 0.6],
                       "harmless_refusal": [0.4, 0.0, 0.1]})
    harm, harmless = plots.alpha_sweep_plot(df).data
    assert list(harm.x) == [0.0, 0.5, 1.0] and list(harm.y) == [0.2, 0.6, 1.0]
    assert list(harmless.y) == [0.0, 0.1, 0.4]
    two = plots.alpha_sweep_plot(pd.concat([df.assign(label="ACE"), df.assign(label="LCE")]))
    assert [t.name for t in two.data] == ["ACE: harmful refusal", "ACE: harmless false refusal",
                                          "LCE: harmful refusal", "LCE: harmless false refusal"]


def test_agreement_scatter_shared_candidates_and_picks(selection_df):
    sub = selection_df.rename(columns={"s_abl": "abl_refusal", "s_add": "add_refusal"})
    sub = sub.assign(kept=sub.layer != 0, chosen=(sub.position == -1) & (sub.layer == 1))
    fig = plots.agreement_scatter(selection_df, sub)
    shared, cosmic_pick, substring_pick = fig.data
    both = selection_df.kept & (selection_df.layer != 0)
    assert len(shared.x) == both.sum()
    merged = selection_df.merge(sub, on=["position", "layer"])
    for x, y, (pos, layer) in zip(shared.x, shared.y, shared.customdata):
        m = merged[(merged.position == pos) & (merged.layer == layer)].iloc[0]
        assert x == pytest.approx(-m.abl_refusal) and y == pytest.approx(m.score_x)
    assert [tuple(c) for c in cosmic_pick.customdata] == [(-3, 2)]
    assert [tuple(c) for c in substring_pick.customdata] == [(-1, 1)]


def test_save_figure_writes_offline_html_with_data(tmp_path, caplog):
    fig = go.Figure(go.Bar(x=["a", "b"], y=[0.123456, 0.654321], name="marker-trace"))
    with caplog.at_level(logging.WARNING):
        written = plots.save_figure(fig, tmp_path / "sub" / "bars")
    html_path = tmp_path / "sub" / "bars.html"
    assert written[0] == html_path and set(written) <= {html_path, tmp_path / "sub" / "bars.png"}
    assert (tmp_path / "sub" / "plotly.min.js").is_file()
    text = html_path.read_text()
    assert 'src="plotly.min.js"' in text and "cdn.plot.ly" not in text
    data = json.loads(re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", text, re.S).group(1))
    assert data[0]["name"] == "marker-trace" and data[0]["y"] == [0.123456, 0.654321]
    if len(written) == 1:  # no offline static export here: skipped with a warning, not an error
        assert "PNG export skipped" in caplog.text or not plots._png_export_works
