"""Misbehaving HTTP backends through a real runproxy (SPEC §7.4-7.6).

Before any response byte reached the client (which includes a valid head followed by a bad
first chunk line: the head goes out with the first body bytes): 502 (504 after a timeout),
never a hang, and the client connection stays sound. After that: the client connection is
closed at once (a length-delimited body stops short, a chunked one has no final chunk) and a
request pipelined behind it gets no answer. A director's backend that fails a live request goes offline and an idempotent request
is retried on the next backend.

Most faults come from road-warrior routes (no health checks). Those that need a director's
short timeouts use `LiveOnlyMisbehaving`: a backend that answers health checks well, so the
director brings it online, and misbehaves on live requests only.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.support.backends import MISBEHAVIOURS, READ_CHUNK, Misbehaving, http_backend, misbehaving_backend, read_head, reset
from tests.support.director import Director
from tests.support.rawhttp import IncompleteBody, RawHTTP, request
from tests.support.waiting import wait_for

HEALTH_CHECK_HEADER = "x-director-health-check"
HEALTHY_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
NEEDS_TIMEOUT = {"stall", "stall-mid-body"}  # road warriors wait the default 120 s for these
# mode -> body bytes the backend sends after a valid head before failing
AFTER_HEAD = {"short-content-length": b"x" * 10, "reset-mid-body": b"x" * 10, "die-mid-chunked": b"hello"}
BEFORE_HEAD = sorted(set(MISBEHAVIOURS) - NEEDS_TIMEOUT - set(AFTER_HEAD) - {"close-delimited"})
# one per kind of failure: closed, malformed head, timed out, malformed first chunk (after a valid head)
RETRIED = ("reset", "bad-status", "stall", "bad-chunk-size")
# director name -> mode of its LiveOnlyMisbehaving backend "m"
LIVE_ONLY = {"stall": "stall", "stallbody": "stall-mid-body", "deaf": "deaf", "patient": "stall",
             **{f"retry-{m}": m for m in RETRIED}}
SHORT = 0.5  # seconds: the directors' read/write timeout
LARGE_BODY = 32 * 1024 * 1024  # well beyond what loopback socket buffers absorb
OK = request("GET", "/ok/", {"Host": "faults"})
FAST_HEALTH = "health_check_interval = 0.2"


class LiveOnlyMisbehaving(Misbehaving):
    """Answers health checks with 200; misbehaves (as its mode says) on every other request."""

    live_requests = 0

    async def handle(self, reader, writer, number):
        head = await read_head(reader)
        if head is None:
            return
        if HEALTH_CHECK_HEADER in head[2]:
            writer.write(HEALTHY_ANSWER)
            await writer.drain()
            return
        self.live_requests += 1
        if self.then == "deaf":  # the head was read; the body never is
            writer.transport.pause_reading()
            await asyncio.Event().wait()
        writer.write(self.payload)
        await writer.drain()
        if self.then == "reset":
            reset(writer)
        elif self.then == "stall":
            while await reader.read(READ_CHUNK):
                pass


@contextlib.contextmanager
def live_only(mode: str):
    backend = LiveOnlyMisbehaving(mode, None, "127.0.0.1", 0, None).start()
    try:
        yield backend
    finally:
        backend.stop()


def route_for(mode: str) -> str:
    return f"/m/{mode}/"


@pytest.fixture(scope="module")
def backends():
    with contextlib.ExitStack() as stack:
        road = {mode: stack.enter_context(misbehaving_backend(mode)) for mode in sorted(set(MISBEHAVIOURS) - NEEDS_TIMEOUT)}
        live = {name: stack.enter_context(live_only(mode)) for name, mode in LIVE_ONLY.items()}
        good = {mode: stack.enter_context(http_backend(f"good-{mode}")) for mode in RETRIED}
        ok = stack.enter_context(http_backend("ok"))
        yield dict(road=road, live=live, good=good, ok=ok)


def director_table(name: str, members: dict, **settings) -> str:
    options = "".join(f"{key} = {value}\n" for key, value in {"health_check_success_threshold": 1, **settings}.items())
    listed = ", ".join(f'{member} = {{ url = "{backend.url}", {FAST_HEALTH} }}' for member, backend in members.items())
    return f"[directors.{name}]\n{options}backends = {{ {listed} }}\n[[routes]]\nhost = \"{name}\"\npass = \"{name}\"\n"


@pytest.fixture(scope="module")
def director(backends, tmp_path_factory):
    live, good = backends["live"], backends["good"]
    tables = [
        director_table("stall", {"m": live["stall"]}, read_timeout=SHORT),
        director_table("stallbody", {"m": live["stallbody"]}, read_timeout=SHORT),
        director_table("deaf", {"m": live["deaf"]}, write_timeout=SHORT),
        director_table("patient", {"m": live["patient"]}, read_timeout=SHORT, passive_failure_threshold=2),
        *(director_table(f"retry-{mode}", {"m": live[f"retry-{mode}"], "good": good[mode]}, scheduler='"chance"',
                         read_timeout=SHORT) for mode in RETRIED),
    ]
    routes = [f'[[routes]]\npath = "{route_for(mode)}"\nhttp = "127.0.0.1:{b.port}"\n' for mode, b in backends["road"].items()]
    routes.append(f'[[routes]]\npath = "/ok/"\nhttp = "127.0.0.1:{backends["ok"].port}"\n')
    d = Director(tmp_path_factory.mktemp("proxy-faults"), "\n".join(tables + routes)).start()
    try:
        members = [("stall", "m"), ("stallbody", "m"), ("deaf", "m"), ("patient", "m")]
        members += [(f"retry-{mode}", name) for mode in RETRIED for name in ("m", "good")]
        for name, member in members:
            wait_for(lambda: f"director {name}: backend {member} is now online" in d.output(), 15,
                     what=f"{name}/{member} online")
        yield d
    finally:
        d.stop()


def assert_unaffected(director):
    """A new connection is served normally."""
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(OK)
        response = conn.read_response()
    assert (response.status, response.body) == (200, b"ok")


def assert_truncated_and_closed(conn: RawHTTP, sent: bytes):
    """The response head came, its body stops short of what it announced, the connection is
    closed and nothing else (no bytes of another response) follows."""
    head = conn.read_head()
    assert head.status == 200
    with pytest.raises(IncompleteBody) as cut:
        conn.read_body(head)
    assert sent.startswith(cut.value.received), cut.value.received[:100]
    assert conn.at_eof()


def offline_logged(director, name: str, member: str = "m") -> bool:
    return f"director {name}: backend {member} is now offline: " in director.output()


@pytest.mark.parametrize("mode", BEFORE_HEAD)
def test_failure_before_the_head_is_502_and_the_connection_stays_sound(director, mode):
    started = time.monotonic()
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(request("GET", route_for(mode), {"Host": "faults"}) + OK)  # the second one pipelined
        first = conn.read_response()
        assert first.status == 502
        assert time.monotonic() - started < 3
        if (first.header("connection") or "").lower() == "close":
            assert conn.at_eof()
        else:
            second = conn.read_response()
            assert (second.status, second.body) == (200, b"ok")
    assert_unaffected(director)


@pytest.mark.parametrize("mode", sorted(AFTER_HEAD))
def test_failure_after_the_head_cuts_the_body_and_closes(director, mode):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(request("GET", route_for(mode), {"Host": "faults"}) + OK)
        assert_truncated_and_closed(conn, AFTER_HEAD[mode])
    assert_unaffected(director)


def test_close_delimited_body_is_relayed_whole(director):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(request("GET", route_for("close-delimited"), {"Host": "faults"}))
        response = conn.read_response()
    assert (response.status, response.body) == (200, b"until the end")


def test_stalled_head_is_504_after_read_timeout(director, backends):
    started = time.monotonic()
    status, _, _ = director.get("/", headers={"Host": "stall"})
    assert status == 504
    assert SHORT <= time.monotonic() - started < 3
    assert backends["live"]["stall"].live_requests == 1
    wait_for(lambda: offline_logged(director, "stall"), 5, what="offline log line")


def test_backend_goes_offline_only_after_passive_failure_threshold_failed_requests(director, backends):
    """One slow request no longer takes a one-backend director offline (threshold 2); a
    POST's read timeout counts once."""
    status, _, _ = director.request("POST", "/", body=b"p", headers={"Host": "patient"})
    assert status == 504
    assert backends["live"]["patient"].live_requests == 1
    status, _, _ = director.get("/", headers={"Host": "patient"})
    assert status == 504  # still online after one failure: tried again, not 503
    assert backends["live"]["patient"].live_requests == 2
    wait_for(lambda: offline_logged(director, "patient"), 5, what="offline after the second failure")
    assert director.get("/", headers={"Host": "patient"})[0] == 503


def test_stalled_body_is_cut_after_read_timeout(director):
    started = time.monotonic()
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(request("GET", "/", {"Host": "stallbody"}) + OK)
        assert_truncated_and_closed(conn, MISBEHAVIOURS["stall-mid-body"][0].partition(b"\r\n\r\n")[2])
    assert SHORT <= time.monotonic() - started < 3
    wait_for(lambda: offline_logged(director, "stallbody"), 5, what="offline log line")
    assert_unaffected(director)


def test_backend_that_never_reads_the_body_is_504_after_write_timeout(director, backends):
    started = time.monotonic()
    status, _, _ = director.request("POST", "/upload", body=b"u" * LARGE_BODY, headers={"Host": "deaf"})
    assert status == 504
    assert time.monotonic() - started < 5
    assert backends["live"]["deaf"].live_requests == 1
    wait_for(lambda: offline_logged(director, "deaf"), 5, what="offline log line")


@pytest.mark.parametrize("mode", RETRIED)
def test_failed_backend_goes_offline_and_the_request_is_retried(director, backends, mode):
    name = f"retry-{mode}"
    status, headers, body = director.get("/", headers={"Host": name})
    assert (status, body) == (200, f"good-{mode}".encode())
    assert backends["live"][name].live_requests == 1  # "chance" tried m, the first backend, first
    wait_for(lambda: offline_logged(director, name), 5, what="offline log line")
