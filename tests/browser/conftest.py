"""Playwright fixtures: Debian's Chromium, headless, never a downloaded browser.

Locally the browser tests skip when /usr/bin/chromium is missing; in CI (CI=true) they fail.
Screenshots go to test-artifacts/<test name>/ (git-ignored).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.processes import REPO

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    """Module-scoped: sync Playwright runs an event loop in this thread while it is open,
    which must be gone before other modules' asyncio tests run."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} not installed (Debian package chromium; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def artifacts(request) -> Path:
    """A directory for this test's screenshots."""
    directory = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("::", 1)[-1])
    directory.mkdir(parents=True, exist_ok=True)
    return directory
