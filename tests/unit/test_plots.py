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
from cosmic_tl.plots import PlotInputError, export
from cosmic_tl.stats import wilson_interval

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
    heat, legend = fig.data  # the heatmap, and the legend entry of the L_low outlines
    assert legend.name.startswith("L_low")
    assert isinstance(heat, go.Heatmap)
    assert list(heat.y) == POSITIONS and list(heat.x) == LAYERS
    for row in df.itertuples():
        assert _cell(heat, row.position, row.layer) == pytest.approx(row.cos)
    # L_low are block outputs j; on this block-input axis j = 2 sits at ℓ = 3, and j = 3 (the
    # final-norm output of this 4-layer table) in the column after the last block, ticked by name.
    boxes = sorted((s.x0, s.x1) for s in fig.layout.shapes)
    assert boxes == [(2.5, 3.5), (3.5, 4.5)]
    assert fig.layout.xaxis.range[1] >= 4.5
    assert fig.layout.xaxis.title.text == plots.BLOCK_INPUT_AXIS and list(fig.layout.xaxis.tickvals) == [*LAYERS, 4]
    assert list(fig.layout.xaxis.ticktext) == [*map(str, LAYERS), "final norm"]
    assert "cos" in heat.hovertemplate


def test_candidate_norm_heatmap_cells_axes_and_a_scale_from_zero():
    import torch

    r = torch.zeros(len(POSITIONS), len(LAYERS), 4, dtype=torch.float64)
    for i, p in enumerate(POSITIONS):
        for l in LAYERS:
            r[i, l, 0], r[i, l, 1] = 3.0 * l, 4.0 * (l - p)  # ‖r‖ = 5 * ... differs per cell
    fig = plots.candidate_norm_heatmap(r, POSITIONS, position_labels={-1: "\\n"})
    (heat,) = fig.data
    assert list(heat.y) == POSITIONS and list(heat.x) == LAYERS
    for i, p in enumerate(POSITIONS):
        for l in LAYERS:
            assert _cell(heat, p, l) == pytest.approx(float(r[i, l].norm()))  # the norm, not r[..., 0]
    assert heat.zmin == 0.0  # a norm's colour scale starts at 0
    assert fig.layout.xaxis.title.text == plots.BLOCK_INPUT_AXIS and list(fig.layout.xaxis.tickvals) == LAYERS
    assert fig.layout.yaxis.range[1] > fig.layout.yaxis.range[0] and max(fig.layout.yaxis.tickvals) == -1  # −1 on top
    assert "-1 ⟨\\n⟩" in fig.layout.yaxis.ticktext
    with pytest.raises(PlotInputError, match="shape"):
        plots.candidate_norm_heatmap(r, POSITIONS[:-1])


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


def test_score_heatmap_refusal_token_columns_and_bad_inputs(selection_df):
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
    assert names == [f"{m} (kept)" for m in plots.REFUSAL_TOKEN_METRICS]


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
        for cat, shift in (("all", 0.0), ("cyber", 0.1), ("bio", -0.1)):
            rows.append(dict(dataset="harmful", condition=cond, category=cat, n=10,
                             refusal_rate=base + shift, asr=1 - base - shift))
    rows.append(dict(dataset="harmless", condition="baseline", category="all", n=5,
                     refusal_rate=0.2, asr=0.8))
    return pd.DataFrame(rows)


def test_refusal_bars_heights_equal_rates(metrics_df):
    fig = plots.refusal_bars(metrics_df, dataset="harmful")
    assert [t.name for t in fig.data] == ["baseline", "ablation"]  # baseline first
    assert [list(level) for level in fig.data[0].x] == [["all prompts", "other categories", "other categories"],
                                                         ["all (n=10)", "bio (n=10)", "cyber (n=10)"]]
    assert list(fig.data[0].y) == pytest.approx([0.9, 0.8, 1.0])
    assert list(fig.data[1].y) == pytest.approx([0.1, 0.0, 0.2])
    asr = plots.refusal_bars(metrics_df, dataset="harmful", by_category=False, metric="asr")
    assert [list(level) for level in asr.data[0].x] == [["all prompts"], ["all (n=10)"]]
    assert list(asr.data[1].y) == pytest.approx([0.9])
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
    shared, cosmic_pick, refusal_token_pick = fig.data
    both = selection_df.kept & (selection_df.layer != 0)
    assert len(shared.x) == both.sum()
    merged = selection_df.merge(sub, on=["position", "layer"])
    for x, y, (pos, layer) in zip(shared.x, shared.y, shared.customdata):
        m = merged[(merged.position == pos) & (merged.layer == layer)].iloc[0]
        assert x == pytest.approx(-m.abl_refusal) and y == pytest.approx(m.score_x)
    assert [tuple(c) for c in cosmic_pick.customdata] == [(-3, 2)]
    assert [tuple(c) for c in refusal_token_pick.customdata] == [(-1, 1)]


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
        assert "PNG export skipped" in caplog.text or not export._png_export_works


# --- what a reader needs: provenance, no-data notes, named layer coordinates, intervals -------------

SUBTITLE = "tiny · train 4+4 · ACE · system turn: none · run abc123"


@pytest.fixture
def effects():
    return [
        dict(dataset="harmful", condition="ablation", n=24, baseline_count=9, count=2, baseline_rate=9 / 24,
             rate=2 / 24, ci_low=0.023, ci_high=0.26, baseline_ci_low=0.21, baseline_ci_high=0.57,
             p_value=0.0156, significant=True),
        dict(dataset="harmless", condition="addition", n=24, baseline_count=1, count=3, baseline_rate=1 / 24,
             rate=3 / 24, ci_low=0.043, ci_high=0.31, baseline_ci_low=0.007, baseline_ci_high=0.2,
             p_value=0.5, significant=False),
    ]


@pytest.fixture
def capability():
    return {"benchmark": "truthfulqa_binary", "conditions": [
        dict(condition="baseline", n=32, count=18, accuracy=18 / 32, ci_low=0.39, ci_high=0.72),
        dict(condition="ablation", n=32, count=14, accuracy=14 / 32, ci_low=0.28, ci_high=0.61)],
        "effects": [dict(condition="ablation", p_value=0.289)]}


def _builders(selection_df, metrics_df, effects, capability):
    cos = pd.DataFrame([dict(position=p, layer=l, cos=0.5) for p in POSITIONS for l in LAYERS])
    layer = pd.DataFrame({"layer": [0, 1, 2], "cos": [0.9, 0.5, 0.7], "in_eval_layers": [False, True, False]})
    sweep = pd.DataFrame({"alpha": [0.0, 1.0], "harmful_refusal": [0.2, 0.6], "harmless_refusal": [0.0, 0.4]})
    sub = selection_df.rename(columns={"s_abl": "abl_refusal", "s_add": "add_refusal"})
    return {
        "cosine_heatmap": lambda **kw: plots.cosine_heatmap(cos, **kw),
        "candidate_norm_heatmap": lambda **kw: plots.candidate_norm_heatmap(
            __import__("torch").ones(len(POSITIONS), len(LAYERS), 2), POSITIONS, **kw),
        "score_heatmaps": lambda **kw: plots.score_heatmaps(selection_df, "score", **kw),
        "selection_dashboard": lambda **kw: plots.selection_dashboard(selection_df, **kw),
        "layer_cosine_line": lambda **kw: plots.layer_cosine_line(layer, **kw),
        "projection_plot": lambda **kw: plots.projection_plot(np.ones((2, 3)), np.zeros((2, 3)), **kw),
        "refusal_bars": lambda **kw: plots.refusal_bars(metrics_df, **kw),
        "alpha_sweep_plot": lambda **kw: plots.alpha_sweep_plot(sweep, **kw),
        "agreement_scatter": lambda **kw: plots.agreement_scatter(selection_df, sub, **kw),
        "capability_bars": lambda **kw: plots.capability_bars(capability, **kw),
        "effects_plot": lambda **kw: plots.effects_plot(effects, **kw),
    }


def test_every_builder_shows_its_provenance_subtitle(selection_df, metrics_df, effects, capability):
    for name, build in _builders(selection_df, metrics_df, effects, capability).items():
        fig = build(subtitle=SUBTITLE)
        assert fig.layout.title.subtitle.text == SUBTITLE, name
        assert fig.layout.title.text, name
        assert not build().layout.title.subtitle.text, name  # no invented provenance


def test_empty_inputs_show_a_no_data_note(selection_df, metrics_df):
    empty = {
        "cosine_heatmap": plots.cosine_heatmap(pd.DataFrame(columns=["position", "layer", "cos"]), [1]),
        "score_heatmaps": plots.score_heatmaps(selection_df.iloc[:0], "kl"),
        "selection_dashboard": plots.selection_dashboard(selection_df.iloc[:0]),
        "layer_cosine_line": plots.layer_cosine_line(pd.DataFrame(columns=["layer", "cos", "in_eval_layers"])),
        "refusal_bars": plots.refusal_bars(metrics_df.iloc[:0], subtitle=SUBTITLE),
        "alpha_sweep_plot": plots.alpha_sweep_plot(pd.DataFrame(columns=["alpha", "harmful_refusal",
                                                                         "harmless_refusal"])),
        "capability_bars": plots.capability_bars({"conditions": []}),
        "effects_plot": plots.effects_plot([]),
    }
    for name, fig in empty.items():
        assert len(fig.data) == 0, name
        assert [a.text for a in fig.layout.annotations] == [plots.NO_DATA], name
    assert empty["refusal_bars"].layout.title.subtitle.text == SUBTITLE
    with pytest.raises(PlotInputError, match="cos"):  # a missing column is still an error
        plots.cosine_heatmap(pd.DataFrame(columns=["position", "layer"]))


def test_heatmap_positions_are_labelled_with_template_tokens_and_minus_one_on_top(selection_df):
    labels = {-3: "<|im_end|>", -2: "\\n", -1: "assistant"}
    for fig in (plots.score_heatmaps(selection_df, "s_abl", position_labels=labels),
                plots.cosine_heatmap(selection_df.assign(cos=0.1), position_labels=labels)):
        y = fig.layout.yaxis
        assert list(y.tickvals) == POSITIONS
        assert list(y.ticktext) == ["-3 ⟨<|im_end|>⟩", "-2 ⟨\\n⟩", "-1 ⟨assistant⟩"]
        assert y.autorange is False and y.range[0] < y.range[1] == -0.5  # ascending: -1 is the top row
        assert y.title.text == plots.POSITION_AXIS
    dashboard = plots.selection_dashboard(selection_df, position_labels=labels)
    for k in ("", "2", "3", "4"):
        assert list(dashboard.layout[f"yaxis{k}"].ticktext)[-1] == "-1 ⟨assistant⟩"
        assert dashboard.layout[f"yaxis{k}"].range[1] == -0.5


def test_template_position_labels_escape_newlines():
    class Tok:
        def decode(self, ids):
            return {7: "<|im_end|>", 8: "\n", 9: "assistant"}[ids[0]]

    assert plots.template_position_labels(Tok(), [7, 8, 9, 8]) == {-4: "<|im_end|>", -3: "\\n", -2: "assistant",
                                                                   -1: "\\n"}


def test_score_heatmap_ticks_only_at_scored_layers_and_l_low_at_block_inputs(selection_df):
    strided = selection_df.assign(layer=selection_df.layer * 2)  # layer stride 2: 0, 2, 4, 6
    fig = plots.score_heatmaps(strided, "score", eval_layers=[4, 6], n_layers=10)
    assert list(fig.layout.xaxis.tickvals) == [0, 2, 4, 6]
    assert fig.layout.xaxis.title.text == plots.BLOCK_INPUT_AXIS
    assert sorted((s.x0, s.x1) for s in fig.layout.shapes) == [(4.5, 5.5), (6.5, 7.5)]
    assert fig.layout.xaxis.range[1] >= 7.5
    assert plots.eval_layer_inputs([6, 4, 4], 10) == [5, 7]
    with pytest.raises(PlotInputError, match="needs n_layers"):  # strided: the final norm is not visible
        plots.score_heatmaps(strided, "score", eval_layers=[4, 6])


def test_kl_scale_starts_at_zero_and_legend_sits_below_the_colour_bar(selection_df):
    fig = plots.score_heatmaps(selection_df, "kl")
    kept_kl = selection_df[selection_df.kept].kl
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == pytest.approx(kept_kl.max())
    assert kept_kl.min() > 0  # so a scale starting at the data minimum would not start at 0
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0
    dashboard = plots.selection_dashboard(selection_df)
    assert dashboard.layout.legend.orientation == "h" and dashboard.layout.legend.y < 0
    assert all(t.colorbar.x > 0.4 for t in dashboard.data if t.name.endswith("(kept)"))


def test_compared_panels_share_a_colour_range(selection_df):
    fig = plots.selection_dashboard(selection_df)
    kept = {t.name: t for t in fig.data if t.name.endswith("(kept)")}
    rows = selection_df[selection_df.kept]
    both = pd.concat([rows.s_abl, rows.s_add])
    for name in ("s_abl (kept)", "s_add (kept)"):
        assert (kept[name].zmin, kept[name].zmax) == pytest.approx((both.min(), both.max()))
    assert kept["kl (kept)"].zmin == 0
    other = selection_df.assign(score=selection_df.score + 5.0)
    ranges = plots.shared_color_ranges([selection_df, other])
    assert ranges["score"] == pytest.approx((rows.score.min(), rows.score.max() + 5.0))
    for table in (selection_df, other):
        score = next(t for t in plots.selection_dashboard(table, color_ranges=ranges).data if t.name == "score (kept)")
        assert (score.zmin, score.zmax) == pytest.approx(ranges["score"])


def test_layer_cosine_and_projection_use_block_outputs():
    df = pd.DataFrame({"layer": [0, 1, 2, 3], "cos": [0.9, 0.5, 0.7, 0.8], "in_eval_layers": [0, 1, 1, 0]})
    axis = plots.layer_cosine_line(df).layout.xaxis
    assert axis.title.text == plots.BLOCK_OUTPUT_AXIS
    assert list(axis.tickvals) == [0, 1, 2, 3] and axis.ticktext[-1] == "3<br>final norm"
    fig = plots.projection_plot(np.ones((2, 4)), np.zeros((2, 4)), chosen_layer=2)
    assert fig.layout.xaxis.title.text == plots.BLOCK_OUTPUT_AXIS
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 1  # block input 2 is the output of block 1: the curve's x = 1
    with pytest.raises(PlotInputError, match="chosen_layer"):
        plots.projection_plot(np.ones((2, 4)), np.zeros((2, 4)), chosen_layer=4)


def test_refusal_bars_have_wilson_error_bars_and_show_n(metrics_df):
    fig = plots.refusal_bars(metrics_df, dataset="harmful")
    baseline = fig.data[0]
    for k, rate in enumerate(baseline.y):
        low, high = wilson_interval(round(rate * 10), 10)
        assert baseline.error_y.array[k] == pytest.approx(high - rate)
        assert baseline.error_y.arrayminus[k] == pytest.approx(rate - low)
    assert [tuple(c[:2]) for c in baseline.customdata] == [(9, 10), (8, 10), (10, 10)]
    with pytest.raises(ValueError, match="not a count out of n"):
        plots.refusal_bars(metrics_df.assign(refusal_rate=0.55))
    assert "95% CI" in baseline.hovertemplate


def test_alpha_sweep_error_bars_when_sizes_are_given():
    df = pd.DataFrame({"alpha": [0.0, 1.0], "harmful_refusal": [0.25, 0.5], "harmless_refusal": [0.0, 0.75],
                       "n_harmful": [4, 4], "n_harmless": [4, 4]})
    harm, harmless = plots.alpha_sweep_plot(df).data
    low, high = wilson_interval(3, 4)
    assert harmless.error_y.array[1] == pytest.approx(high - 0.75)
    assert harmless.error_y.arrayminus[1] == pytest.approx(0.75 - low)
    assert plots.alpha_sweep_plot(df.drop(columns=["n_harmful", "n_harmless"])).data[0].error_y.array is None


def test_capability_bars_show_accuracy_intervals_and_p_values(capability):
    fig = plots.capability_bars(capability)
    (bars,) = fig.data
    assert list(bars.y) == pytest.approx([18 / 32, 14 / 32])
    assert bars.error_y.array[0] == pytest.approx(0.72 - 18 / 32)
    assert bars.error_y.arrayminus[1] == pytest.approx(14 / 32 - 0.28)
    assert list(bars.x) == ["baseline<br>n=32", "ablation<br>n=32, p=0.289"]
    assert [s.y0 for s in fig.layout.shapes] == [0.5]  # chance line


def test_effects_plot_puts_both_rates_with_intervals_and_p_in_the_label(effects):
    fig = plots.effects_plot(effects)
    baseline, intervention = fig.data
    assert list(intervention.y) == ["harmful · ablation (n=24, p=0.0156) *", "harmless · addition (n=24, p=0.5)"]
    assert list(intervention.x) == pytest.approx([2 / 24, 3 / 24])
    assert list(baseline.x) == pytest.approx([9 / 24, 1 / 24])
    assert intervention.error_x.array[0] == pytest.approx(0.26 - 2 / 24)
    assert baseline.error_x.arrayminus[1] == pytest.approx(1 / 24 - 0.007)
    assert list(fig.layout.xaxis.range) == [0, 1]


def test_provenance_line():
    text = plots.provenance("qwen", {"n_train": 32, "n_val": 16, "n_test": 24, "max_new_tokens": 48}, "ace",
                            "none", "ab12")
    assert text == "qwen · train 32+32, val 16+16, test 24+24, 48 new tokens · ACE · system turn: none · run ab12"


# The default model's demo: 24 layers, candidates at layer stride 4, L_low = block outputs 19 and 23.
DEMO_LAYERS, DEMO_EVAL = 24, [19, 23]


def _demo_table() -> pd.DataFrame:
    rows = [dict(position=p, layer=l, s_abl=0.9 + 0.001 * l, s_add=0.95 - 0.001 * l, kl=0.01 * (l + 1),
                 score=1.8 + 0.01 * l, kept=l > 0, reason="" if l > 0 else "kl", chosen=(p, l) == (-2, 16))
            for p in (-3, -2, -1) for l in range(0, 21, 4)]
    return pd.DataFrame(rows)


def _x_ticks(axis) -> dict:
    return dict(zip(axis.tickvals, axis.ticktext))


def test_the_final_norm_read_out_is_drawn_in_a_named_column_not_at_a_block_input_24():
    """Block input 24 does not exist in a 24-layer model: j = 23 is the final-norm output."""
    cos = pd.DataFrame([dict(position=p, layer=l, cos=0.9) for p in (-2, -1) for l in range(DEMO_LAYERS)])
    figures = [plots.cosine_heatmap(cos, DEMO_EVAL), plots.score_heatmaps(_demo_table(), "score", eval_layers=DEMO_EVAL,
                                                                       n_layers=DEMO_LAYERS)]
    for fig in figures:
        ticks = _x_ticks(fig.layout.xaxis)
        assert ticks[DEMO_LAYERS] == plots.FINAL_NORM and "24" not in ticks.values()
        centres = sorted((s.x0 + s.x1) / 2 for s in fig.layout.shapes)
        assert centres == [20, DEMO_LAYERS] and all(c in ticks for c in centres)  # every outline on a named column
        assert fig.layout.xaxis.range[1] >= DEMO_LAYERS + 0.5


def test_the_outline_is_explained_in_the_legend_not_in_a_clipped_note_under_the_plot():
    for fig in (plots.score_heatmaps(_demo_table(), "score", eval_layers=DEMO_EVAL, n_layers=DEMO_LAYERS),
                plots.selection_dashboard(_demo_table(), eval_layers=DEMO_EVAL, n_layers=DEMO_LAYERS),
                plots.cosine_heatmap(_demo_table().assign(cos=0.5), DEMO_EVAL, n_layers=DEMO_LAYERS)):
        # No annotation below the plot area (y < 0 is outside the figure's margins and is clipped).
        assert all(a.yref != "paper" or a.y >= 0 for a in fig.layout.annotations)
        (entry,) = [t for t in fig.data if t.name and t.name.startswith("L_low")]
        assert entry.showlegend and entry.marker.color == plots.common.HIGHLIGHT
        assert entry.name == "L_low: block outputs j = 19, 23 (at block input 20, final norm)"
        assert fig.layout.showlegend is not False


def test_dashboard_outlines_lie_inside_their_panel_left_of_its_colour_bar():
    fig = plots.selection_dashboard(_demo_table(), eval_layers=DEMO_EVAL, n_layers=DEMO_LAYERS)
    bars = {t.xaxis or "x": t.colorbar.x for t in fig.data if t.name and t.name.endswith("(kept)")}
    assert len(fig.layout.shapes) == 8  # two outlines in each of four panels
    for shape in fig.layout.shapes:
        axis = fig.layout["xaxis" + shape.xref[1:]]
        low, high = axis.range
        assert low <= shape.x0 < shape.x1 <= high  # inside the panel's x range ...
        assert (shape.x0 + shape.x1) / 2 in _x_ticks(axis)  # ... on a ticked column ...
        assert axis.domain[1] < bars[shape.xref]  # ... whose colour bar sits to the right of the panel


def test_category_bars_group_names_by_their_benchmark_with_human_axis_titles():
    rows = [dict(dataset="harmful", condition=c, category=cat, n=n, refusal_rate=0.5, asr=0.5)
            for c in ("baseline", "ablation")
            for cat, n in (("all", 8), ("Disinformation", 2), ("Disinformation and deception", 2),
                           ("misinformation_disinformation", 2), ("my label", 2))]
    fig = plots.refusal_bars(pd.DataFrame(rows), dataset="harmful")
    groups, names = (list(level) for level in fig.data[0].x)
    assert groups == ["all prompts", "HarmBench", "JailbreakBench", "StrongREJECT", "other categories"]
    assert names == ["all (n=8)", "misinformation_disinformation (n=2)", "Disinformation (n=2)",
                     "Disinformation and deception (n=2)", "my label (n=2)"]
    assert [list(level) for level in fig.data[1].x] == [groups, names]  # one naming for every condition
    assert fig.layout.yaxis.title.text == "refusal rate" and "refusal_rate" not in fig.layout.title.text
    asr = plots.refusal_bars(pd.DataFrame(rows), dataset="harmful", metric="asr")
    assert asr.layout.yaxis.title.text == "attack success rate"
