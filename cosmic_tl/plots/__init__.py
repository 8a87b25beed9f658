"""Plotly figures of COSMIC results, and saving them for offline viewing.

Every builder reads results that other modules computed (DataFrames, arrays, summary dicts) and
returns a ``plotly.graph_objects.Figure``; none of them runs the model or recomputes the method.
Each takes an optional ``subtitle`` saying what the figure is from (see :func:`provenance`), shows
a "no data" note for empty input, and names its layer coordinate on the axis: block input ℓ
(``resid_pre``) for candidates and interventions, block output j (``resid_post``, the last one
the final-norm output) for the evaluation layers L_low; on a block-input axis L_low sits at
ℓ = j + 1, the final-norm output in a column ticked "final norm".
"""

from cosmic_tl.plots.common import (
    BLOCK_INPUT_AXIS, BLOCK_OUTPUT_AXIS, NO_DATA, POSITION_AXIS, PlotInputError, provenance, set_title,
    template_position_labels,
)
from cosmic_tl.plots.export import figure_png, save_figure
from cosmic_tl.plots.heatmaps import (
    COSMIC_METRICS, REFUSAL_TOKEN_METRICS, candidate_norm_heatmap, cosine_heatmap, score_heatmaps, selection_dashboard,
    shared_color_ranges,
)
from cosmic_tl.plots.eval_layers import FINAL_NORM, eval_layer_inputs
from cosmic_tl.plots.lengths import length_curve
from cosmic_tl.plots.lines import agreement_scatter, alpha_sweep_plot, layer_cosine_line, projection_plot
from cosmic_tl.plots.rates import capability_bars, effect_label, effects_plot, refusal_bars

__all__ = [
    "BLOCK_INPUT_AXIS", "BLOCK_OUTPUT_AXIS", "COSMIC_METRICS", "FINAL_NORM", "NO_DATA", "POSITION_AXIS", "REFUSAL_TOKEN_METRICS",
    "PlotInputError", "agreement_scatter", "alpha_sweep_plot", "candidate_norm_heatmap", "capability_bars",
    "cosine_heatmap", "effect_label", "effects_plot", "eval_layer_inputs", "figure_png", "layer_cosine_line", "length_curve", "projection_plot",
    "provenance", "refusal_bars", "save_figure", "score_heatmaps", "selection_dashboard", "set_title",
    "shared_color_ranges", "template_position_labels",
]
