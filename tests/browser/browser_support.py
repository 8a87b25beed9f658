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
