"""The admin and the live status page in headless Chromium against a real runproxy: add a
backend in the admin and watch it come online, disable it under load and watch its rate fall
to zero, see an offline backend within one second of the monitor's decision, and keep
several tabs live across a runproxy restart."""
from __future__ import annotations

import collections
import re
import threading
from datetime import datetime

import pytest

from tests.browser import pages
from tests.browser.pages import TIMEOUT_MS, open_status, row
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.waiting import wait_for

pytestmark = pytest.mark.browser

PASSWORD = "browser-pw"
OFFLINE_LINE = re.compile(r"^(\S+ \S+) WARNING director\.health: director app: backend fragile is now offline", re.M)
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


@pytest.fixture(scope="module")
def backends():
    with http_backend("web1") as web1, http_backend("fragile") as fragile, http_backend("steady") as steady:
        yield {"web1": web1, "fragile": fragile, "steady": steady}


@pytest.fixture(scope="module")
def director(backends, tmp_path_factory):
    config = f"""
        [directors.pool]
        dynamic = true

        [directors.app]
        health_check_success_threshold = 1
        backends = {{ fragile = {{ url = "{backends['fragile'].url}", health_check_interval = 0.2 }}, \
steady = {{ url = "{backends['steady'].url}", health_check_interval = 0.2 }} }}

        [[routes]]
        host = "app"
        pass = "app"

        [[routes]]
        pass = "pool"
    """
    d = Director(tmp_path_factory.mktemp("status-browser"), config).start()
    try:
        d.shell(f"from django.contrib.auth.models import User; User.objects.create_superuser('admin', 'a@x', {PASSWORD!r})")
        yield d
    finally:
        d.stop()


class LoadLoop:
    """Requests through the proxy in a thread until stopped; counts answers by status."""

    def __init__(self, d: Director):
        self.d = d
        self.statuses: collections.Counter = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.statuses[self.d.get("/", timeout=5)[0]] += 1
            except OSError:
                self.statuses["error"] += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def login(page, d: Director) -> None:
    pages.login(page, d, "admin", PASSWORD)


def rate(page, selector: str) -> float | None:
    value = page.get_attribute(f"{selector} td.rate", "data-rate")
    return float(value) if value else None


def test_add_backend_in_admin_watch_it_online_then_disable_it_under_load(director, backends, context, artifacts):
    admin = context.new_page()
    login(admin, director)
    assert admin.get_attribute("#director-status-link", "href") == "/status/"
    status = open_status(context, director)
    status.wait_for_selector('section[data-director="pool"]')

    admin.goto(f"{director.admin_url}/admin/balancer/director/")
    admin.click("text=pool")
    admin.click("text=Add another Backend")
    admin.fill("input[name=backends-0-name]", "web1")
    admin.fill("input[name=backends-0-url]", backends["web1"].url)
    admin.fill("input[name=backends-0-health_check_interval]", "0.2")
    admin.click("input[name=_continue]")
    admin.wait_for_selector("ul.messagelist li.success")
    admin.screenshot(path=artifacts / "1-admin-backend-added.png", full_page=True)

    status.wait_for_selector(row("pool", "web1", "online"), timeout=TIMEOUT_MS)
    with LoadLoop(director) as load:
        status.wait_for_function(
            "s => parseFloat(document.querySelector(s)?.dataset.rate || 0) > 0", arg=f"{row('pool', 'web1')} td.rate",
            timeout=TIMEOUT_MS)
        status.screenshot(path=artifacts / "2-status-online-under-load.png", full_page=True)
        assert load.statuses[200] > 0

        admin.uncheck("input[name=backends-0-enabled]")
        admin.click("input[name=_continue]")
        admin.wait_for_selector("ul.messagelist li.success")
        status.wait_for_selector(row("pool", "web1", "disabled"), timeout=TIMEOUT_MS)
        status.wait_for_function(
            "s => document.querySelector(s)?.dataset.rate === '0'", arg=f"{row('pool', 'web1')} td.rate",
            timeout=TIMEOUT_MS)
        wait_for(lambda: load.statuses[503] > 0, 10, what="503s from the director without a backend")
        status.screenshot(path=artifacts / "3-status-disabled-rate-zero.png", full_page=True)
    assert status.get_attribute(f"{row('pool', 'web1')} td.state", "class") == "state state-disabled"


def test_offline_backend_shown_within_one_second(director, backends, context, artifacts):
    login(context.new_page(), director)
    status = open_status(context, director)
    status.wait_for_selector(row("app", "fragile", "online"), timeout=TIMEOUT_MS)
    # The browser notes when the row turns offline (Date.now(): same clock as the log).
    status.evaluate("""selector => {
        const observer = new MutationObserver(() => {
            if (document.querySelector(selector)) { window.offlineSeenAt = Date.now(); observer.disconnect(); }
        });
        observer.observe(document.getElementById("directors"), {subtree: true, attributes: true, childList: true});
    }""", row("app", "fragile", "offline"))
    backends["fragile"].stop()
    status.wait_for_function("() => window.offlineSeenAt !== undefined", timeout=TIMEOUT_MS)
    seen = status.evaluate("window.offlineSeenAt") / 1000
    decided = wait_for(lambda: OFFLINE_LINE.search(director.output()), 5, what="the monitor's offline line")
    latency = seen - datetime.strptime(decided.group(1), LOG_TIME).timestamp()
    print(f"status page showed the backend offline {latency * 1000:.0f} ms after the monitor's decision")
    status.screenshot(path=artifacts / "status-offline.png", full_page=True)
    assert -0.05 < latency < 1.0
    assert status.get_attribute(f"{row('app', 'fragile')} td.state", "class") == "state state-offline"


def test_tabs_stay_live_across_a_runproxy_restart(director, context, artifacts):
    login(context.new_page(), director)
    tabs = [open_status(context, director) for _ in range(3)]
    director.stop()
    for tab in tabs:
        tab.wait_for_selector("body[data-connection=reconnecting]", timeout=TIMEOUT_MS)
    tabs[0].screenshot(path=artifacts / "1-reconnecting.png", full_page=True)
    director.start()
    for tab in tabs:
        tab.wait_for_selector("body[data-connection=live]", timeout=TIMEOUT_MS)
        tab.wait_for_selector(row("app", "steady", "online"), timeout=TIMEOUT_MS)
    tabs[0].screenshot(path=artifacts / "2-live-again.png", full_page=True)
