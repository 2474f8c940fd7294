"""What an operator does in headless Chromium against a real runproxy: watch a backend go
offline and come back (state, since, last check code, transitions), disable and enable it
from the status page, remove one through the confirmation page (a protected one is refused
with the reason), see the removal in the admin's History, and a viewer who gets no buttons
and whose forged POST changes nothing. Screenshots of the status page and the admin's
backend list go to the test's artifacts (and $DIRECTOR_SCREENS)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser.pages import TIMEOUT_MS, login, open_status, row, screenshot
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.waiting import free_port

pytestmark = pytest.mark.browser

PASSWORD = "operator-pw"
AUDIT_OF = """
from balancer.models import AuditRecord
for r in AuditRecord.objects.filter(backend_name={name!r}).order_by("id"):
    print(r.action, r.actor)
"""


class SwitchableHealth(ThreadingHTTPServer):
    """A real HTTP backend answering every request with `status` (200 until switched)."""

    daemon_threads = True

    def __init__(self):
        self.status = 200

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(handler):  # noqa: N805 - the server is `self` here
                body = b"switchable"
                handler.send_response(self.status)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def switch():
    server = SwitchableHealth()
    server.thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def director(switch, tmp_path_factory):
    with http_backend("steady") as steady, http_backend("web1") as web1, http_backend("keep") as keep:
        config = f"""
            [directors.app]
            health_check_success_threshold = 1
            backends = {{ flaky = {{ url = "{switch.url}", health_check_interval = 0.3 }}, \
steady = {{ url = "{steady.url}", health_check_interval = 0.3 }} }}

            [directors.pool]
            dynamic = true
            health_check_success_threshold = 1

            [directors.orphan]
            backends = {{ lone = "http://127.0.0.1:{free_port()}" }}

            [[routes]]
            host = "app"
            pass = "app"

            [[routes]]
            pass = "pool"
        """
        d = Director(tmp_path_factory.mktemp("operator-browser"), config).start()
        try:
            d.shell(f"""
                from django.contrib.auth.models import User
                from balancer import services
                from balancer.models import Director
                from balancer.permissions import grant_role
                User.objects.create_superuser("admin", "a@x", {PASSWORD!r})
                grant_role(User.objects.create_user("viewer", "v@x", {PASSWORD!r}, is_staff=True), "viewer")
                pool = Director.objects.get(name="pool")
                services.create_backend(pool, {{"name": "web1", "url": "{web1.url}", "health_check_interval": 0.3}},
                                        actor="test")
                services.create_backend(pool, {{"name": "keep", "url": "{keep.url}", "health_check_interval": 0.3,
                                                "terminate_protection": True}}, actor="test")
            """)
            yield d
        finally:
            d.stop()


def state_cell(page, director: str, backend: str) -> str:
    return page.inner_text(f"{row(director, backend)} td.state summary")


def test_watch_a_backend_go_offline_and_come_back(director, switch, context, artifacts):
    login(context.new_page(), director, "admin", PASSWORD)
    status = open_status(context, director)
    status.wait_for_selector(row("app", "flaky", "online"), timeout=TIMEOUT_MS)
    status.wait_for_selector(f'{row("app", "flaky")} td.check[data-code="200"]', timeout=TIMEOUT_MS)
    assert "online since " in state_cell(status, "app", "flaky")

    switch.status = 503
    status.wait_for_selector(row("app", "flaky", "offline"), timeout=TIMEOUT_MS)
    status.wait_for_selector(f'{row("app", "flaky")} td.check[data-code="503"]', timeout=TIMEOUT_MS)
    check = status.inner_text(f'{row("app", "flaky")} td.check')
    assert "503" in check and "ms" in check and "✗" in check
    assert "offline since " in state_cell(status, "app", "flaky")
    assert status.inner_text(f'{row("app", "flaky")} td.check .error') == "unexpected status 503"
    status.click(f'{row("app", "flaky")} td.state summary')
    status.wait_for_selector(f'{row("app", "flaky")} ol.transitions li:has-text("online → offline: unexpected status 503")',
                             timeout=TIMEOUT_MS)
    status.wait_for_selector('section[data-director="orphan"] .unreached:visible', timeout=TIMEOUT_MS)
    assert status.is_hidden('section[data-director="app"] .unreached')
    screenshot(status, artifacts, "status-page-offline.png")

    switch.status = 200
    status.wait_for_selector(row("app", "flaky", "online"), timeout=TIMEOUT_MS)
    status.wait_for_selector(f'{row("app", "flaky")} td.check[data-code="200"]', timeout=TIMEOUT_MS)
    first = status.inner_text(f'{row("app", "flaky")} ol.transitions li:first-child')
    assert "offline → online: health check passed (HTTP 200)" in first


def test_disable_and_enable_from_the_status_page(director, context, artifacts):
    login(context.new_page(), director, "admin", PASSWORD)
    status = open_status(context, director)
    toggle = f'{row("app", "steady", "online")} td.actions button.toggle'
    status.wait_for_selector(toggle, timeout=TIMEOUT_MS)
    assert status.inner_text(toggle) == "Disable"
    status.click(toggle)
    status.wait_for_selector(row("app", "steady", "disabled"), timeout=TIMEOUT_MS)
    assert status.inner_text("#action-message") == "backend app/steady disabled"
    status.click(f'{row("app", "steady")} td.actions button.toggle:has-text("Enable")')
    status.wait_for_selector(row("app", "steady", "online"), timeout=TIMEOUT_MS)
    assert director.shell(AUDIT_OF.format(name="steady")).split("\n")[-3:-1] == [
        "backend.disable status:admin", "backend.enable status:admin"]


def test_remove_through_the_confirmation_page_then_read_its_history(director, context, artifacts):
    login(context.new_page(), director, "admin", PASSWORD)
    status = open_status(context, director)
    status.wait_for_selector(row("pool", "web1", "online"), timeout=TIMEOUT_MS)
    for _ in range(40):  # some traffic for the figures and charts in the screenshots
        assert director.get("/", headers={"Host": "app"})[0] == 200 and director.get("/")[0] == 200
    status.wait_for_function("s => parseFloat(document.querySelector(s)?.dataset.rate || 0) > 0",
                             arg=f'{row("pool", "web1")} td.rate', timeout=TIMEOUT_MS)
    screenshot(status, artifacts, "status-page.png")
    status.click(f'{row("pool", "web1")} td.actions a.remove')
    status.wait_for_selector("#confirm-remove")
    assert "Remove backend web1 of director pool?" in status.inner_text("h2")
    assert "This deletes backend pool/web1" in status.inner_text("main")
    screenshot(status, artifacts, "status-remove-confirmation.png")
    status.click("#confirm-remove")
    status.wait_for_selector("body[data-connection=live]", timeout=TIMEOUT_MS)
    assert "pool/web1 is being removed" in status.inner_text(".message-success")
    status.wait_for_selector(row("pool", "web1"), state="detached", timeout=TIMEOUT_MS)

    status.wait_for_selector(row("pool", "keep", "online"), timeout=TIMEOUT_MS)
    status.click(f'{row("pool", "keep")} td.actions a.remove')
    assert "terminate_protection" in status.inner_text("#refusal")
    assert status.query_selector("#confirm-remove") is None

    admin = context.new_page()
    admin.goto(f"{director.admin_url}/admin/balancer/director/")
    admin.click("text=pool")
    admin.click("a.historylink")
    admin.wait_for_selector("#audit-history")
    actions = admin.eval_on_selector_all("tr.audit-record", "rows => rows.map(r => r.innerText)")
    assert any("status:admin" in a and "backend.delete" in a and "pool/web1" in a for a in actions)
    assert any("proxy:drained" in a and "backend.remove" in a and "pool/web1" in a for a in actions)
    screenshot(admin, artifacts, "admin-director-history.png")

    admin.goto(f"{director.admin_url}/admin/balancer/backend/")
    admin.wait_for_selector("#result_list")
    assert admin.inner_text("#site-name") == "Director"
    headers = admin.eval_on_selector_all("#result_list thead th", "cells => cells.map(c => c.innerText.trim())")
    assert {"STATE", "LOAD", "REQUESTS", "ERRORS"} <= {h.upper() for h in headers}
    assert admin.query_selector('tr:has-text("steady") .director-state.state-online') is not None
    screenshot(admin, artifacts, "admin-backend-list.png")

    admin.check("#action-toggle")  # every backend: the admin's Drain asks and names each refusal
    admin.select_option("select[name=action]", "drain_backends")
    admin.click("button[name=index]")
    admin.wait_for_selector("#drain-list")
    assert "no: backend 'keep' has terminate_protection set" in admin.inner_text('tr[data-backend="pool/keep"]')
    assert "is defined in the config file" in admin.inner_text('tr[data-backend="app/steady"]')
    screenshot(admin, artifacts, "admin-drain-confirmation.png")


def test_viewer_sees_no_buttons_and_a_forged_post_changes_nothing(director, context):
    login(context.new_page(), director, "viewer", PASSWORD)
    status = open_status(context, director)
    status.wait_for_selector(row("app", "steady", "online"), timeout=TIMEOUT_MS)
    assert status.query_selector("td.actions") is None and status.query_selector("a.remove") is None
    backend_id = status.get_attribute(row("app", "steady"), "data-backend-id")
    answer = status.evaluate("""id => {
        const token = document.cookie.split("; ").find(c => c.startsWith("csrftoken=")).split("=")[1];
        return fetch("/status/backends/" + id + "/disable", {method: "POST", headers: {"X-CSRFToken": token}})
            .then(r => r.json().then(body => [r.status, body.detail]));
    }""", backend_id)
    assert answer == [403, "Changing backends needs operator rights."]
    assert status.get_attribute(row("app", "steady"), "data-state") == "online"
    assert "backend.disable status:viewer" not in director.shell(AUDIT_OF.format(name="steady"))
