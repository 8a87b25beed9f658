"""The notebooks' shared settings (cosmic_tl.workflows.notebook): the size switch, where runs and
figures go, the set-up every notebook needs, showing and saving a figure, and finding a
configuration's run folder (with or without a concept) instead of a hand-typed name."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch
from IPython.display import Image

from cosmic_tl.concepts import builtin_concept
from cosmic_tl.config import RunConfig
from cosmic_tl.plots import export
from cosmic_tl.workflows import notebook
from cosmic_tl.workflows.notebook import RUN_SIZES, notebook_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("COSMIC_TL_NOTEBOOK_SIZE", "COSMIC_TL_NOTEBOOK_OUT", "COSMIC_TL_NOTEBOOK_FIGURES", "CI"):
        monkeypatch.delenv(name, raising=False)
    # notebook_settings changes process-wide state: restore it after each test.
    renderer, grad = pio.renderers.default, torch.is_grad_enabled()
    yield
    pio.renderers.default = renderer
    torch.set_grad_enabled(grad)


def test_settings_set_up_what_every_notebook_needs():
    pio.renderers.default = "browser"
    torch.set_grad_enabled(True)
    notebook_settings()
    assert pio.renderers.default == notebook.RENDERER and not torch.is_grad_enabled()
    assert notebook_settings("ci").size == "ci"  # the parameter cell's SIZE wins over the environment


@pytest.fixture
def shown(monkeypatch):
    """What NB.show put under the cell: interactive figures and displayed objects, in order."""
    out = []
    monkeypatch.setattr(go.Figure, "show", lambda fig, *a, **k: out.append(fig))
    monkeypatch.setattr(notebook, "display", out.append)
    return out


def test_show_saves_the_figure_where_the_notebooks_keep_them_and_shows_it(tmp_path, monkeypatch, shown):
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_FIGURES", str(tmp_path / "figs"))
    monkeypatch.setattr(notebook, "figure_png", lambda fig, width: b"\x89PNG fake")
    nb = notebook_settings("ci")
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    assert nb.show(fig, "00_line") is None  # nothing echoed under the cell
    assert shown[0] is fig and (tmp_path / "figs" / "00_line.html").is_file()
    # The PNG is shown below the figure, for viewers without JavaScript, and not saved to figures/.
    assert isinstance(shown[1], Image) and shown[1].data == b"\x89PNG fake" and len(shown) == 2
    assert (tmp_path / "figs" / "plotly.min.js").is_file() and not (tmp_path / "figs" / "00_line.png").exists()


def test_show_makes_a_real_static_image(tmp_path, monkeypatch, shown):
    pytest.importorskip("kaleido")
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_FIGURES", str(tmp_path))
    monkeypatch.setattr(export, "_png_export_works", True)
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    png = export.figure_png(fig, width=notebook.PNG_WIDTH)
    if png is None:
        pytest.skip("no Chrome for kaleido on this machine")
    notebook_settings("ci").show(fig, "00_bars")
    assert shown[0] is fig and isinstance(shown[1], Image)
    assert shown[1].data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(shown[1].data[16:20], "big")  # the PNG header's IHDR width
    assert width == notebook.PNG_WIDTH


def test_show_without_static_export_shows_the_figure_and_says_so(tmp_path, monkeypatch, shown, capsys):
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_FIGURES", str(tmp_path))
    monkeypatch.setattr(export, "_png_export_works", True)

    def no_browser(*args, **kwargs):
        raise RuntimeError("Chrome not found\nmore detail")

    monkeypatch.setattr(go.Figure, "to_image", no_browser)
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    nb = notebook_settings("ci")
    nb.show(fig, "00_line")
    nb.show(fig, "00_again")  # after a failed export: no second try (each costs a browser start)
    assert shown == [fig, fig] and (tmp_path / "00_line.html").is_file()
    assert capsys.readouterr().out.splitlines() == [
        "(no static image of 00_line: PNG export needs kaleido and Chrome)",
        "(no static image of 00_again: PNG export needs kaleido and Chrome)",
    ]
    assert export._png_export_works is False


def test_size_switch_defaults_and_refusal(monkeypatch):
    assert notebook_settings().size == "small"
    monkeypatch.setenv("CI", "true")
    nb = notebook_settings()
    assert nb.size == "ci" and nb.progress is False and nb.run_sizes == RUN_SIZES["ci"]
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_SIZE", "paper")
    assert notebook_settings().run_sizes == {"preset": "paper"} and notebook_settings().progress
    assert notebook_settings().sample_sizes == dict(n_train=180, n_val=100, n_test=512)
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_SIZE", "huge")
    with pytest.raises(ValueError, match="COSMIC_TL_NOTEBOOK_SIZE must be one of .*'huge'"):
        notebook_settings()


def test_folders_from_the_environment(monkeypatch, tmp_path):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    nb = notebook_settings()
    assert nb.runs == tmp_path / "runs" / "notebooks" and nb.figures == tmp_path / "figures"
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_FIGURES", str(tmp_path / "figs"))
    nb = notebook_settings()
    assert nb.runs == tmp_path / "out" / "runs" / "notebooks" and nb.figures == tmp_path / "figs"


def test_a_configuration_has_one_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_OUT", str(tmp_path))
    nb = notebook_settings("ci")
    config = RunConfig(**nb.run_sizes)
    folder = nb.run_folder("cosmic-ace", config.fingerprint())
    assert folder == tmp_path / "runs" / "notebooks" / f"cosmic-ace-{config.fingerprint()[:8]}"
    other = RunConfig(**{**nb.run_sizes, "seed": 1})
    assert nb.run_folder("cosmic-ace", other.fingerprint()) != folder


def test_find_or_make_reuses_the_run(tmp_path, monkeypatch, tiny_model, tiny_model_dir):
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_OUT", str(tmp_path))
    nb = notebook_settings("ci")
    config = RunConfig(model=str(tiny_model_dir), **{**nb.run_sizes, "layer_stride": 3})
    run = nb.pipeline("cosmic-ace", config, model=tiny_model)
    assert run.root == nb.run_folder("cosmic-ace", config.fingerprint()) and run.kind == "pipeline"
    stamp = (run.root / "steps" / "selection.json").stat().st_mtime_ns
    again = nb.pipeline("cosmic-ace", config, model=tiny_model)
    assert (again.root / "steps" / "selection.json").stat().st_mtime_ns == stamp
    assert again.selection_summary() == run.selection_summary()


def test_a_concept_run_has_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_OUT", str(tmp_path))
    calls = []
    monkeypatch.setattr(notebook, "run_pipeline", lambda config, folder, **kw: calls.append((folder, kw)))
    monkeypatch.setattr(notebook, "open_run", lambda folder: folder)
    nb = notebook_settings("ci")
    config, chinese = RunConfig(**nb.run_sizes), builtin_concept("chinese")
    folder = nb.pipeline("chinese", config, concept=chinese)
    assert folder == nb.run_folder("chinese", config.fingerprint(chinese)) == nb.find("chinese", config, concept=chinese)
    assert folder != nb.run_folder("chinese", config.fingerprint())
    assert calls == [(folder, {"model": None, "concept": chinese, "progress": False})]
