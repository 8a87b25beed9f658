"""Render a finished run's interactive figures into ``<run>/figures/``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cosmic_tl import plots
from cosmic_tl.judges import SubstringJudge

if TYPE_CHECKING:
    from cosmic_tl.pipeline import Run


def write_run_figures(run: "Run", png: bool = False) -> list[Path]:
    """Write the run's heatmaps, layer cosine line, selection dashboard and refusal bars (HTML)."""
    out = run.root / "figures"
    metrics = run.metrics()
    substring = metrics[metrics.judge == SubstringJudge.name]
    figures = {
        "cosine_heatmap": plots.cosine_heatmap(run.cosine_pos_layer(), run.eval_layers()),
        "layer_cosine": plots.layer_cosine_line(run.layer_cosine()),
        "selection_dashboard": plots.selection_dashboard(run.selection_table()),
        "refusal_harmful": plots.refusal_bars(substring, dataset="harmful"),
        "refusal_harmless": plots.refusal_bars(substring, dataset="harmless"),
    }
    written: list[Path] = []
    for name, fig in figures.items():
        written += plots.save_figure(fig, out / name, png=png)
    return written
