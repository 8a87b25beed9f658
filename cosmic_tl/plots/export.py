"""Saving figures for offline viewing: HTML with a shared local plotly.js, PNG when possible."""

from __future__ import annotations

import logging
from pathlib import Path

import plotly.graph_objects as go

from cosmic_tl import atomic

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
    html_path = base.with_name(base.name + ".html")
    # Through the package's one writer, like every artifact: atomic, recorded by the run folder's
    # step, never through a symbolic link it did not make. plotly.min.js as write_html would copy it.
    atomic.write_text(html_path, fig.to_html(include_plotlyjs="directory", full_html=True))
    written = [html_path]
    bundle = base.parent / "plotly.min.js"
    if not bundle.exists():
        from plotly.offline import get_plotlyjs

        atomic.write_text(bundle, get_plotlyjs())
    if png and _png_export_works:
        png_path = base.with_name(base.name + ".png")
        try:
            written.append(atomic.write_bytes(png_path, fig.to_image(format="png")))
        except (ImportError, RuntimeError, ValueError, OSError) as e:
            _png_export_works = False
            logger.warning("PNG export skipped (kaleido/Chrome not usable offline: %s); HTML only.",
                           str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return written
