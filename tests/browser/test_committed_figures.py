"""The figures committed in ``figures/``, opened in a real browser: each renders without errors, says
which run it comes from, and is not a smoke-test (CI-sized) figure.

Checked on the figure plotly actually drew (``gd.data``, ``gd._fullLayout``), per figure:

- it renders (a plotly graph div, no SEVERE console message) and is not blank: some trace holds
  data, or it says "no data";
- its subtitle names where it comes from (model and run, or the data it shows), and no subtitle
  shows the notebooks' ``ci`` sizes (the notebook tests write their figures elsewhere);
- every heatmap over candidates has block inputs ℓ on x and position −1 on top;
- every bar trace of a rate has asymmetric error bars (the Wilson interval).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmic_tl import plots
from cosmic_tl.config import RunConfig
from cosmic_tl.workflows.notebook import RUN_SIZES
from cosmic_tl.shipped import SHIPPED_MODELS

from browser_support import require_browser  # noqa: E402  (tests/browser/browser_support.py)

require_browser()

from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

FIGURES = Path(__file__).resolve().parents[2] / "figures"
COMMITTED = sorted(FIGURES.glob("*.html"))
# Figures of rates: their bars carry Wilson intervals.
RATE_FIGURES = ("refusal", "effects", "truthfulqa", "capability")

_READ = """
var gd = document.querySelector('.js-plotly-plot');
if (!gd || !gd._fullLayout) { return null; }
var fl = gd._fullLayout, title = gd.layout.title || {};  // layout: no editor placeholder text
if (typeof title === 'string') { title = {text: title}; }
return {
  title: title.text || '', subtitle: (title.subtitle || {}).text || '',
  annotations: (fl.annotations || []).map(function (a) { return a.text || ''; }),
  traces: gd._fullData.map(function (t) {
    var e = t.error_y || {};
    return {type: t.type || 'scatter', n: (t.z || t.y || t.x || []).length, xaxis: t.xaxis || 'x',
            yaxis: t.yaxis || 'y', error_array: !!(e.array && e.array.length), error_visible: e.visible !== false,
            error_asymmetric: e.symmetric === false};
  }),
  axes: Object.keys(fl).filter(function (k) { return /^[xy]axis\\d*$/.test(k); }).reduce(function (o, k) {
    var a = fl[k]; o[k] = {title: (a.title || {}).text || '', range: a.range, tickvals: a.tickvals || null};
    return o; }, {})
};
"""


def _ci_test_sizes() -> str:
    sizes = RunConfig(**RUN_SIZES["ci"]).sizes
    return plots.provenance(sizes={"n_train": sizes.n_train, "n_val": sizes.n_val, "n_test": sizes.n_test})


def _axis_key(ref: str, letter: str) -> str:
    return f"{letter}axis{ref[1:]}"


def test_figures_folder_holds_figures():
    assert len(COMMITTED) >= 20, f"figures/ holds only {len(COMMITTED)} figures; run `make figures`"
    assert (FIGURES / "plotly.min.js").is_file(), "the figures load plotly.js from figures/plotly.min.js"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_committed_figure(browser, path):
    browser.get(path.as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(_READ) is not None)
    fig = browser.execute_script(_READ)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe

    assert fig["title"], "a figure says what it shows"
    assert any(t["n"] for t in fig["traces"]) or plots.NO_DATA in fig["annotations"], "blank axes"
    subtitle = fig["subtitle"]
    assert subtitle.startswith("data:") or any(m in subtitle for m in SHIPPED_MODELS), (
        f"the subtitle names no model (or data) it comes from: {subtitle!r}")
    assert _ci_test_sizes() not in subtitle, f"a CI smoke-test figure: {subtitle!r}"

    for trace in fig["traces"]:
        if trace["type"] == "heatmap":
            x, y = fig["axes"][_axis_key(trace["xaxis"], "x")], fig["axes"][_axis_key(trace["yaxis"], "y")]
            assert x["title"] == plots.BLOCK_INPUT_AXIS, x["title"]
            assert y["tickvals"] and max(y["tickvals"]) == -1 and y["range"][1] > y["range"][0], "−1 on top"
        if trace["type"] == "bar" and any(key in path.stem for key in RATE_FIGURES):
            assert trace["error_array"] and trace["error_visible"] and trace["error_asymmetric"], (
                "a rate's bar has its Wilson interval")
