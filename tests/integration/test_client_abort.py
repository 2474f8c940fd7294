"""A client that goes away (SPEC §5 on_client_abort, §7.2 queue), through a real runproxy.

`ignore`: the upstream request runs to its end and keeps the backend's slot until then.
A client that leaves while queued leaves the queue at once. (`close`, the default, is
covered in test_proxy_http.)
"""
from __future__ import annotations

import concurrent.futures
import json
import socket
import time

import pytest

from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.rawhttp import request
from tests.support.waiting import wait_for

DELAY = 1.0  # seconds the backend takes for /slow
SLOW = f"/slow?delay={DELAY}"
BACKEND = '{{ url = "{url}", capacity = 1, health_check_interval = 0.2 }}'


@pytest.fixture(scope="module")
def backends():
    with http_backend("ign") as ign, http_backend("que") as que, http_backend("once") as once:
        yield dict(ign=ign, que=que, once=once)


@pytest.fixture(scope="module")
def director(backends, tmp_path_factory):
    config = f"""
        [directors.ignore]
        on_client_abort = "ignore"
        health_check_success_threshold = 1
        backends = {{ ign = {BACKEND.format(url=backends['ign'].url)} }}

        [directors.queue]
        health_check_success_threshold = 1
        backends = {{ que = {BACKEND.format(url=backends['que'].url)} }}

        [directors.once]
        on_client_abort = "ignore"
        health_check_success_threshold = 1
        backends = {{ once = {{ url = "{backends['once'].url}", health_check_interval = 0.2 }} }}

        [[routes]]
        host = "ignore"
        pass = "ignore"
        [[routes]]
        host = "once"
        pass = "once"
        [[routes]]
        host = "queue"
        pass = "queue"
    """
    d = Director(tmp_path_factory.mktemp("client-abort"), config).start()
    try:
        for host in ("ignore", "queue", "once"):
            wait_for(lambda: d.get("/", headers={"Host": host})[0] == 200, 15, what=f"director {host} online")
        created = d.manage("createapitoken", "abort-tests")
        assert created.returncode == 0, created.stderr
        d.token = created.stdout.strip()
        yield d
    finally:
        d.stop()


def stats(director, name: str) -> dict:
    """The director's live statistics from the JSON API."""
    status, _, body = director.request("GET", f"/api/v1/directors/{name}/", port=director.admin_port,
                                       headers={"Authorization": f"Token {director.token}"})
    assert status == 200, body
    return json.loads(body)["stats"]


def occupied(director, name: str) -> bool:
    return stats(director, name)["load"]["current"] == 1


def queued(director, name: str) -> int:
    return stats(director, name)["queued"]["current"]


def send_and_leave_later(director, host: str, target: str) -> socket.socket:
    """A client connection with a request sent; the caller closes it to go away."""
    sock = socket.create_connection(("127.0.0.1", director.port))
    sock.sendall(request("GET", target, {"Host": host}))
    return sock


def seen(backend, target: str) -> list:
    return [r for r in backend.requests_seen if r.target == target]


def test_ignore_lets_the_upstream_finish_and_keeps_the_slot(director, backends):
    ign = backends["ign"]
    client = send_and_leave_later(director, "ignore", SLOW)
    wait_for(lambda: seen(ign, SLOW), 5, what="slow request at the backend")
    started = time.monotonic()  # the backend answers DELAY seconds after this, at the earliest
    client.close()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        second = pool.submit(director.get, "/after", headers={"Host": "ignore"})
        wait_for(lambda: queued(director, "ignore") == 1, 5, what="second request queued behind the slot")
        assert occupied(director, "ignore")
        status, headers, body = second.result(timeout=10)
    assert (status, body) == (200, b"ign")
    assert time.monotonic() - started >= DELAY * 0.9  # dispatched only once the slow answer was read
    # The proxy read the abandoned answer to its end: its upstream connection went back to
    # the pool and carried the queued request (a dropped one would have meant a new connection).
    assert headers["x-connection"] == str(seen(ign, SLOW)[0].connection)
    wait_for(lambda: not occupied(director, "ignore") and queued(director, "ignore") == 0, 5, what="slot free")


@pytest.mark.parametrize("target", [SLOW, "/bytes?size=3&chunk=1&interval=0.5&framing=chunked"],
                         ids=["before-the-head", "mid-body"])
def test_an_aborted_request_under_ignore_counts_once_in_load(director, backends, target):
    """The background finisher holds the request's own slot: load max and total count the
    request once (a second slot taken for it counted it twice)."""
    before = stats(director, "once")["load"]
    client = send_and_leave_later(director, "once", target)
    wait_for(lambda: seen(backends["once"], target), 5, what="request at the backend")
    if "bytes" in target:  # wait for the head and first byte: the abort comes mid-body
        assert client.recv(1)
    client.close()
    wait_for(lambda: stats(director, "once")["load"]["current"] == 0, 10, what="slot freed by the finisher")
    load = stats(director, "once")["load"]
    assert load["total"] == before["total"] + 1
    assert load["max"] == 1


def test_client_leaving_the_queue_is_removed_from_it(director, backends):
    que = backends["que"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        holder = pool.submit(director.get, SLOW, headers={"Host": "queue"})
        wait_for(lambda: seen(que, SLOW), 5, what="slow request holding the only slot")
        waiting = send_and_leave_later(director, "queue", "/abandoned")
        wait_for(lambda: queued(director, "queue") == 1, 5, what="request queued")
        waiting.close()
        wait_for(lambda: queued(director, "queue") == 0, 5, what="abandoned request out of the queue")
        assert not holder.done() and occupied(director, "queue")  # left the queue, not dispatched
        assert holder.result(timeout=10)[0] == 200
    # FIFO: an abandoned waiter still queued would be dispatched before this one
    assert director.get("/next", headers={"Host": "queue"})[0] == 200
    assert seen(que, "/next") and not seen(que, "/abandoned")
    assert stats(director, "queue")["queued"]["total"] == 1
