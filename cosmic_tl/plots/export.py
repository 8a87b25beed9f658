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
    if png:
        image = figure_png(fig)
        if image is not None:
            written.append(atomic.write_bytes(base.with_name(base.name + ".png"), image))
    return written


def figure_png(fig: go.Figure, width: int | None = None, scale: float = 1) -> bytes | None:
    """``fig`` as PNG bytes (kaleido), or None where no static export works offline.

    Args:
        fig: The figure.
        width: Its width in pixels (None: the figure's own, else plotly's 700).
        scale: Pixel density; 1 keeps files small.

    Returns:
        The PNG, or None after a failed export (kaleido or Chrome missing): the first failure is
        logged and later calls return None at once, since each try costs a browser start.
    """
    global _png_export_works
    if not _png_export_works:
        return None
    try:
        return fig.to_image(format="png", width=width, scale=scale)
    except (ImportError, RuntimeError, ValueError, OSError) as e:
        _png_export_works = False
        logger.warning("PNG export skipped (kaleido/Chrome not usable offline: %s); HTML only.",
                       str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        return None
