"""The admin's Drain action against a real runproxy: it asks first (showing the request in
flight), then the backend takes no new requests, finishes the one it has, and is removed;
the operator's action is audited once (`backend.delete`), the removal when it happens."""
from __future__ import annotations

import asyncio
import threading

from tests.support.admin_session import admin_login, csrf_token
from tests.support.backends import http_backend
from tests.support.live_api import live_api
from tests.support.waiting import wait_for

PASSWORD = "drain-pw"
BACKENDS = "/admin/balancer/backend/"
SETUP = f"""
from django.contrib.auth.models import User
from balancer.models import Backend
User.objects.create_superuser("admin", "a@x", {PASSWORD!r})
print(Backend.objects.get(name="b1").pk)
"""


async def drain(d, backend_id: int, confirm: bool) -> tuple[int, str]:
    async with await admin_login(d, "admin", PASSWORD) as session:
        async with session.get(BACKENDS) as response:
            form = {"csrfmiddlewaretoken": csrf_token(await response.text()), "action": "drain_backends",
                    "_selected_action": str(backend_id), **({"post": "yes"} if confirm else {})}
        async with session.post(BACKENDS, data=form, allow_redirects=False) as response:
            return response.status, await response.text()


def test_drain_asks_then_waits_for_the_request_in_flight(tmp_path):
    with http_backend("b1") as b1, live_api(tmp_path) as live:
        d = live.director
        live.add_backend(b1)
        live.wait_online("b1")
        backend_id = int(d.shell(SETUP).split()[-1])
        answers = []
        held = threading.Thread(target=lambda: answers.append(d.get("/slow?delay=4", timeout=30)))
        held.start()
        wait_for(lambda: any(r.target.startswith("/slow") for r in b1.requests_seen), 10, what="the held request")

        status, page = asyncio.run(drain(d, backend_id, confirm=False))
        assert status == 200 and 'id="confirm-drain"' in page
        assert '<tr data-backend="pool/b1">' in page and "<td>1</td>" in page  # one request in flight
        assert live.backend("b1")[1]["terminating"] is False  # asking changed nothing

        status, _ = asyncio.run(drain(d, backend_id, confirm=True))
        assert status == 302
        wait_for(lambda: live.backend("b1")[1]["terminating"], 5, what="b1 draining")
        assert d.get("/")[0] == 503  # no new requests: nothing else is online
        assert held.is_alive() and "b1" in live.backend_names()  # the request in flight goes on
        held.join(30)
        assert answers and answers[0][0] == 200 and answers[0][2] == b"b1"
        live.wait_removed("b1", timeout=10)
        audit = d.shell("""
            from balancer.models import AuditRecord
            for r in AuditRecord.objects.filter(backend_name="b1").order_by("id"):
                print(r.action, r.actor)
        """)
        assert audit.split("\n")[:-1] == ["backend.create api:ops", "backend.delete admin:admin",
                                           "backend.remove proxy:drained"]
