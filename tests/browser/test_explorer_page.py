"""explorer.html in a real browser: headless Chromium opens the page from disk, a mouse click on a
heatmap cell selects that candidate, and the side panel shows its position, layer, scores and, for a
filtered candidate, why it was dropped.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser``) and ``selenium``. Without
them the test is skipped on a workstation, but fails in CI (``CI`` set), where it must run.
"""

from __future__ import annotations

import math

import pytest

from cosmic_tl.config import RunConfig
from cosmic_tl.explore import write_explorer_page
from cosmic_tl.explore.projections import cell_key
from cosmic_tl.workflows import run_pipeline

from browser_support import click_cell, open_explorer, require_browser  # noqa: E402  (tests/browser/browser_support.py)

require_browser()

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory, tiny_model, tiny_model_dir):
    out = tmp_path_factory.mktemp("browser") / "run"
    # Every layer scored: the tiny model's L_low = [1] lies below the preset's strided layers.
    run_pipeline(RunConfig(model=str(tiny_model_dir), preset="tiny", layer_stride=1), out, model=tiny_model,
                 progress=False, log=lambda _: None)
    return write_explorer_page(out)


def _click_cell(browser, map_key: str, position: int, layer: int) -> None:
    """A real mouse click on a cell, then wait until the page shows it selected."""
    click_cell(browser, map_key, position, layer)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "cell-layer").text == str(layer)
                                     and d.find_element(By.ID, "cell-position").text == str(position))


def _shown_score(browser, key: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, f'#cell-scores tr[data-score="{key}"] td').text


def test_page_loads_without_errors_and_clicks_select_candidates(browser, page):
    data = open_explorer(browser, no_errors=False, page=page)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
    assert not browser.find_element(By.ID, "script-status").is_displayed()
    part = data["parts"][0]
    chosen = part["chosen"]
    assert browser.find_element(By.ID, "cell-layer").text == str(chosen["layer"])

    kept = next(c for c in part["candidates"].values() if c["kept"] and not c["chosen"])
    _click_cell(browser, "score", kept["position"], kept["layer"])
    assert browser.find_element(By.ID, "cell-status").text == f"kept, rank {kept['rank']}"
    for key in ("s_abl", "s_add", "score"):
        value = kept["scores"][key]
        assert math.isclose(float(_shown_score(browser, key)), value, rel_tol=1e-3), key
    markers = browser.execute_script(
        "return Array.from(document.querySelectorAll('#maps .map')).map(function (d) {"
        "var t = d.data.filter(function (t) { return t.name === 'selected'; })[0]; return [t.x[0], t.y[0]]; });")
    assert markers == [[kept["layer"], kept["position"]]] * len(part["maps"])
    assert "projection onto r̂[" + f"{kept['position']}, {kept['layer']}]" in browser.find_element(By.ID, "projection").text

    filtered = next(c for c in part["candidates"].values() if not c["kept"] and c["scores"].get("s_abl") is not None)
    _click_cell(browser, "s_abl", filtered["position"], filtered["layer"])
    assert browser.find_element(By.ID, "cell-status").text == f"filtered: {filtered['reason']}"
    assert math.isclose(float(_shown_score(browser, "s_abl")), filtered["scores"]["s_abl"], rel_tol=1e-3)

    _click_cell(browser, "cos", chosen["position"], chosen["layer"])
    completions = browser.find_element(By.ID, "completions").text
    first = part["completions"][cell_key(chosen["position"], chosen["layer"])]["sets"][0]["rows"][0]
    assert first["prompt"][:40] in completions
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_page_whose_script_fails_says_so(browser, page, tmp_path):
    broken = tmp_path / "explorer.html"
    broken.write_text(page.read_text().replace('id="explorer-data" type="application/json">{',
                                               'id="explorer-data" type="application/json">{broken', 1))
    browser.get(broken.as_uri())
    status = browser.find_element(By.ID, "script-status")
    WebDriverWait(browser, 30).until(lambda d: "failed" in status.text)
    assert status.is_displayed()


@pytest.fixture(scope="module")
def long_reply_page(tmp_path_factory, tiny_model, tiny_model_dir):
    """A run whose 40-token replies from the random tiny model include looping or symbol-soup ones."""
    out = tmp_path_factory.mktemp("browser") / "long"
    run_pipeline(RunConfig(model=str(tiny_model_dir), preset="tiny", layer_stride=1, max_new_tokens=40, n_truthfulqa=0),
                 out, model=tiny_model, progress=False, log=lambda _: None)
    return write_explorer_page(out)


def test_degenerate_replies_are_flagged_in_the_completion_tables(browser, long_reply_page):
    from cosmic_tl.judges import degenerate_reason

    data = open_explorer(browser, no_errors=False, page=long_reply_page)
    part = data["parts"][0]
    chosen = part["chosen"]
    rows = [r for s in part["completions"][cell_key(chosen["position"], chosen["layer"])]["sets"] for r in s["rows"]]
    expected = sum(degenerate_reason(r[side]) is not None for r in rows for side in ("baseline", "steered"))
    assert expected > 0  # the tiny random model's replies include empty or looping ones
    flags = browser.find_elements(By.CSS_SELECTOR, "#completions td.degenerate .flag")
    assert len(flags) == expected
    assert all(f.is_displayed() and f.text.startswith("degenerate: ") for f in flags)
