"""Page helpers shared by the browser tests: log into the admin, open the live status page,
find a backend's row, keep screenshots."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support.director import Director

TIMEOUT_MS = 15_000
SCREENS_ENV = "DIRECTOR_SCREENS"  # when set: a directory that gets a copy of every screenshot


def login(page, d: Director, user: str, password: str) -> None:
    page.goto(f"{d.admin_url}/admin/login/?next=/admin/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{d.admin_url}/admin/")


def open_status(context, d: Director):
    page = context.new_page()
    page.goto(f"{d.admin_url}/status/")
    page.wait_for_selector("body[data-connection=live]", timeout=TIMEOUT_MS)
    return page


def row(director: str, backend: str, state: str | None = None) -> str:
    return f'tr[data-backend="{director}/{backend}"]' + (f'[data-state="{state}"]' if state else "")


def screenshot(page, directory: Path, name: str) -> Path:
    """A full-page PNG in the test's artifacts directory (and in $DIRECTOR_SCREENS if set)."""
    path = directory / name
    page.screenshot(path=path, full_page=True)
    screens = os.environ.get(SCREENS_ENV)
    if screens:
        Path(screens).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(screens) / name)
    return path
