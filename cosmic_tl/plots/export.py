"""Saving figures for offline viewing: HTML with a shared local plotly.js, PNG when possible."""

from __future__ import annotations

import logging
from pathlib import Path

import plotly.graph_objects as go

logger = logging.getLogger(__name__)

_png_export_works = True  # flips to False after the first failed PNG export, so we warn once


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
