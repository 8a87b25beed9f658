"""Headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver``
(``make browser``) driven by selenium. Without them a browser test is skipped on a workstation,
but fails in CI (``CI`` set), where it must run."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1500,1200")


def missing() -> str | None:
    """Why no browser test can run here (None: it can)."""
    if CHROMIUM is None or DRIVER is None:
        return "chromium / chromedriver not installed (make browser)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e '.[test]')"
    return None


def require_browser() -> None:
    """Skip the calling test module when no browser is installed; in CI, fail instead."""
    why = missing()
    if why is not None:
        if os.environ.get("CI"):
            raise RuntimeError(f"The browser tests must run in CI: {why}.")
        pytest.skip(why, allow_module_level=True)


def start_browser(profile_dir):
    """A headless Chromium with its own profile folder, keeping the page's console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(DRIVER))


def open_explorer(browser, page, *, no_errors: bool = True) -> dict:
    """Open an explorer page and return its page data (once its script has run)."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return !!window.cosmicExplorer"))
    if no_errors:
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    return browser.execute_script("return window.cosmicExplorer.data")


def click_cell(browser, map_key: str, position: int, layer: int) -> None:
    """A real mouse click at the cell's pixel position on one map."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    div = browser.find_element(By.ID, f"map-{map_key}")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", div)
    x, y, width, height = browser.execute_script(
        "var d = arguments[0], xa = d._fullLayout.xaxis, ya = d._fullLayout.yaxis, r = d.getBoundingClientRect();"
        "return [xa._offset + xa.l2p(arguments[2]), ya._offset + ya.l2p(arguments[1]), r.width, r.height];",
        div, position, layer)
    ActionChains(browser).move_to_element_with_offset(div, int(x - width / 2), int(y - height / 2)).click().perform()
