"""The notebooks' shared settings: one size switch, one runs folder, one figures folder.

Every notebook starts with ``NB = notebook_settings(SIZE)``, which also sets what every notebook
needs (plotly figures embedded, so they render offline; no autograd, the notebooks only run
inference). The size setting is ``SIZE`` or, where that is None, ``COSMIC_TL_NOTEBOOK_SIZE``
(``ci``: a smoke test with tiny sizes, the default when ``CI`` is set; ``small``: the effects on a
CPU, the default otherwise; ``paper``: the paper's sizes). Run folders live in
``<out>/runs/notebooks`` and figures in ``<out>/figures``, where ``<out>`` is
``COSMIC_TL_NOTEBOOK_OUT`` or the repository (the notebooks' parent folder);
``COSMIC_TL_NOTEBOOK_FIGURES`` sends figures elsewhere (the notebook tests use a temporary folder).

Notebooks share run folders: :meth:`NotebookSettings.pipeline` finds the run of a configuration
(``<label>-<fingerprint[:8]>``) or makes it, so a step one notebook finished is reused by the next.
:meth:`NotebookSettings.show` saves a figure to the figures folder and shows it, interactive and as
a static image (what a viewer that runs no JavaScript, such as GitHub's, shows).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import plotly.graph_objects as go
import plotly.io as pio
import torch
from IPython.display import Image, display

from cosmic_tl.concepts import Concept
from cosmic_tl.config import RunConfig
from cosmic_tl.models import ChatModel
from cosmic_tl.plots import figure_png, save_figure
from cosmic_tl.runs.reader import Run, open_run
from cosmic_tl.workflows.pipeline import run_pipeline

# plotly.js embedded in each notebook (renders offline), plus the mimetype JupyterLab and VS Code render
# (tools/run_notebooks.py drops the embedded copy from the committed notebooks: 5 MB each).
RENDERER = "plotly_mimetype+notebook"

# Width in pixels of the static image NotebookSettings.show adds below each interactive figure.
PNG_WIDTH = 900

# RunConfig sizes of each setting.
RUN_SIZES = {
    "ci": dict(preset="tiny", n_train=4, n_val=2, n_test=2, max_new_tokens=3, layer_stride=8),
    "small": dict(preset="quick", n_train=32, n_val=8, n_test=12, max_new_tokens=24, layer_stride=4),
    "paper": dict(preset="paper"),  # 180+180 train, 100+100 val, 512+512 test, 512 tokens, every layer
}
SIZES = tuple(RUN_SIZES)


@dataclass(frozen=True)
class NotebookSettings:
    """Sizes and folders of a notebook session.

    Attributes:
        size: ``"ci"``, ``"small"`` or ``"paper"``.
        run_sizes: The ``RunConfig`` size fields of that setting (``RunConfig(**run_sizes)``).
        progress: Show progress bars (not in ``ci``).
        runs: Where the notebooks' run folders are.
        figures: Where the notebooks save their figures.
    """

    size: str
    run_sizes: dict
    progress: bool
    runs: Path
    figures: Path

    @property
    def sample_sizes(self) -> dict:
        """``n_train``, ``n_val``, ``n_test`` of this setting (for ``sample_paper``)."""
        sizes = RunConfig(**self.run_sizes).sizes
        return dict(n_train=sizes.n_train, n_val=sizes.n_val, n_test=sizes.n_test)

    def run_folder(self, label: str, fingerprint: str) -> Path:
        """The notebooks' folder of a run: ``<runs>/<label>-<fingerprint[:8]>``."""
        return self.runs / f"{label}-{fingerprint[:8]}"

    def find(self, label: str, config: RunConfig, *, concept: Concept | None = None) -> Run:
        """Open the folder of the pipeline run of ``config`` (and ``concept``) as far as it got,
        without running anything (e.g. to read the prompts of a run whose selection failed)."""
        return open_run(self.run_folder(label, config.fingerprint(concept)))

    def pipeline(self, label: str, config: RunConfig, *, model: ChatModel | None = None,
                 concept: Concept | None = None) -> Run:
        """Find the pipeline run of ``config`` (or make it; finished steps are reused) and open it.

        Args:
            label: The folder's label, e.g. ``"cosmic-ace"``.
            config: Its run configuration.
            model: An already loaded ``config.model``.
            concept: What the positive and negative prompts contrast (default: the configuration's
                concept fields); it names the folder with the configuration.
        """
        folder = self.run_folder(label, config.fingerprint(concept))
        run_pipeline(config, folder, model=model, concept=concept, progress=self.progress)
        return open_run(folder)

    def experiment(self, run_experiment: Callable[..., object], config: RunConfig, *, label: str,
                   model: ChatModel | None = None, **params) -> Run:
        """Find or make an experiment's run and open it (its sub-runs are the selections).

        Args:
            run_experiment: ``run_agreement``, ``run_adversarial`` or ``run_weak``.
            config: Its run configuration.
            label: The folder's label, e.g. ``"weak-ace"``.
            model: An already loaded ``config.model``.
            **params: The experiment's own options (``alphas``, ``natural`` for ``run_weak``); with
                the configuration they name the folder, so other options get another folder.
        """
        key = json.dumps({"config": config.fingerprint(), "params": params}, sort_keys=True, default=str)
        folder = self.run_folder(label, hashlib.sha256(key.encode()).hexdigest())
        run_experiment(config, folder, model=model, progress=self.progress, **params)
        return open_run(folder)

    def show(self, fig: go.Figure, name: str) -> None:
        """Save ``fig`` as ``<figures>/<name>.html`` (:func:`~cosmic_tl.plots.save_figure`, no PNG)
        and show it twice: interactive, then as a static PNG image.

        The static image is for viewers that run no JavaScript (GitHub's notebook view shows an
        ``image/png`` output but leaves an interactive plotly output blank); it stays in the
        notebook only, so ``figures/`` keeps one file per figure. Where no static export works
        (kaleido or Chrome missing), one printed line says so instead.
        """
        save_figure(fig, self.figures / name, png=False)
        fig.show()
        png = figure_png(fig, width=PNG_WIDTH)  # scale 1: a moderate file in the committed notebook
        if png is None:
            print(f"(no static image of {name}: PNG export needs kaleido and Chrome)")
        else:
            display(Image(data=png, format="png"))

    def __str__(self) -> str:
        return f"size setting {self.size!r}: {self.run_sizes}; runs -> {self.runs}; figures -> {self.figures}"


def notebook_settings(size: str | None = None) -> NotebookSettings:
    """The settings of this notebook session (see the module docstring for the variables read).

    Also sets plotly's default renderer to :data:`RENDERER` and turns autograd off.

    Args:
        size: ``"ci"``, ``"small"`` or ``"paper"``; None reads ``COSMIC_TL_NOTEBOOK_SIZE``.

    Raises:
        ValueError: an unknown size setting.
    """
    size = size or os.environ.get("COSMIC_TL_NOTEBOOK_SIZE") or ("ci" if os.environ.get("CI") else "small")
    if size not in RUN_SIZES:
        raise ValueError(f"COSMIC_TL_NOTEBOOK_SIZE must be one of {SIZES}, got {size!r}.")
    cwd = Path.cwd()
    out = Path(os.environ.get("COSMIC_TL_NOTEBOOK_OUT") or (cwd.parent if cwd.name == "notebooks" else cwd))
    figures = Path(os.environ.get("COSMIC_TL_NOTEBOOK_FIGURES") or out / "figures")
    pio.renderers.default = RENDERER
    torch.set_grad_enabled(False)
    return NotebookSettings(size=size, run_sizes=dict(RUN_SIZES[size]), progress=size != "ci",
                            runs=out / "runs" / "notebooks", figures=figures)
