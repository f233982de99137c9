"""Debian's Chromium for the browser tests (never a downloaded browser), driven by Playwright.

Without Chromium a browser test is skipped, unless GRANITE_LONGDOC_REQUIRE_BROWSER=1 (as `.ci/run`
sets it) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM_FLAGS = [  # as root, on a machine without network (see the env notes)
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str:
    """The path of Debian's chromium; skips (or fails, where it is required) without it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("GRANITE_LONGDOC_REQUIRE_BROWSER") == "1":
        pytest.fail("Chromium is required here (GRANITE_LONGDOC_REQUIRE_BROWSER=1) but not installed")
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)")


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (a Playwright Browser), closed afterwards."""
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
