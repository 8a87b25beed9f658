"""explorer.html of a concept run and of an experiment in a real browser (headless Chromium): the
header names the concept and its effects, the chosen candidate's completions are listed (every test
prompt) with the replies the run's judge counted marked, the projection plot has axis titles, a cell
without a score on one map is selected by clicking it there, and an experiment's stages are tabs.
"""

from __future__ import annotations

import json

import pytest

from cosmic_tl.config import RunConfig
from cosmic_tl.experiments import run_weak
from cosmic_tl.explore import write_explorer_page
from cosmic_tl.runs import open_run
from cosmic_tl.runs.report import judged_flags
from cosmic_tl.workflows import run_pipeline

from browser_support import click_cell, open_explorer, require_browser  # noqa: E402  (tests/browser/browser_support.py)

require_browser()

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# layer_stride 3: the selection skips layers, so the score maps have cells without a value.
SIZES = dict(preset="tiny", n_train=6, n_val=4, n_test=3, max_new_tokens=4, layer_stride=3, batch_size=4,
             eval_layer_fraction=0.5, n_truthfulqa=0)


@pytest.fixture(scope="module")
def chinese_page(tmp_path_factory, tiny_model, tiny_model_dir):
    out = tmp_path_factory.mktemp("browser-zh") / "run"
    run_pipeline(RunConfig(model=str(tiny_model_dir), concept="chinese", **SIZES), out, model=tiny_model,
                 progress=False, log=lambda _: None)
    return write_explorer_page(out)


@pytest.fixture(scope="module")
def weak_page(tmp_path_factory, tiny_model, tiny_model_dir):
    out = tmp_path_factory.mktemp("browser-weak") / "run"
    config = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=8, n_val=4, n_test=2, max_new_tokens=3,
                       layer_stride=4, batch_size=8, gen_batch_size=8)
    run_weak(config, out, alphas=(1,), model=tiny_model, progress=False, log=lambda _: None)
    return write_explorer_page(out)


def test_concept_page_shows_the_concept_its_effects_and_the_chosen_completions(browser, chinese_page):
    data = open_explorer(browser, chinese_page)
    run = open_run(chinese_page.parent)
    header = browser.find_element(By.TAG_NAME, "header").text
    assert "concept chinese" in header and "McNemar p" in header and "harmful" not in header
    assert str(chinese_page.parent) in header  # the --top-k hint names the folder's path
    completions = browser.find_element(By.ID, "completions").text
    assert "No completions saved" not in completions
    prompts = json.loads((chinese_page.parent / "data" / "prompts.json").read_text())
    for p in prompts["chinese_test"] + prompts["plain_test"]:  # every test prompt, not the first few
        assert p["instruction"][:40] in completions
    judge = data["parts"][0]["effects"][0]["judge"]
    counted = sum(judged_flags(run, d, c, judge).count(True) for d, c in
                  (("chinese", "baseline"), ("chinese", "ablation"), ("plain", "baseline"), ("plain", "addition")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#completions td.counted .verdict")) == counted
    titles = browser.execute_script("var l = document.getElementById('projection')._fullLayout;"
                                    "return [l.xaxis.title.text, l.yaxis.title.text];")
    assert titles[0].startswith("layer ℓ") and titles[1] == "⟨x, r̂⟩"


def test_a_cell_without_a_score_is_selected_by_a_click_on_that_map(browser, chinese_page):
    data = open_explorer(browser, chinese_page)
    part = data["parts"][0]
    s_abl = next(m for m in part["maps"] if m["key"] == "s_abl")
    position, layer = next((p, layer) for i, p in enumerate(part["positions"])
                           for j, layer in enumerate(part["layers"]) if s_abl["z"][i][j] is None)
    click_cell(browser, "s_abl", position, layer)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "cell-layer").text == str(layer)
                                     and d.find_element(By.ID, "cell-position").text == str(position))


def test_weak_experiment_page_has_a_tab_per_stage_with_its_completions(browser, weak_page):
    data = open_explorer(browser, weak_page)
    assert [p["key"] for p in data["parts"]] == ["stage1", "stage2"]
    browser.find_element(By.CSS_SELECTOR, '#part-tabs button[data-part="stage2"]').click()
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.cosmicExplorer.state.part") == "stage2")
    completions = browser.find_element(By.ID, "completions").text
    assert "addition (α = 1)" in completions and "No completions saved" not in completions
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
