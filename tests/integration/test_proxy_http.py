"""The HTTP data plane through a real runproxy (SPEC §7): balancing, capacity and queue,
backup role, retries, timeouts, client-side routing, road warrior, header rules.

One runproxy serves several directors, each reached through its own Host, so the module
pays for one start-up.
"""
import concurrent.futures
import hashlib
import json
import socket
import subprocess
import time

import pytest

from tests.support.backends import http_backend, pattern_bytes
from tests.support.director import Director
from tests.support.rawhttp import RawHTTP
from tests.support.rawhttp import request as raw_request
from tests.support.waiting import free_port, wait_for

FAST_HEALTH = "health_check_interval = 0.2"


@pytest.fixture(scope="module")
def backends():
    with http_backend("a1") as a1, http_backend("a2") as a2, http_backend("cap") as cap, \
            http_backend("act") as act, http_backend("bak") as bak, http_backend("r1") as r1, \
            http_backend("r2") as r2, http_backend("s1") as s1, http_backend("s2") as s2, \
            http_backend("p1") as p1, http_backend("p2") as p2, http_backend("rw") as rw, \
            http_backend("k1", requests_per_connection=1) as k1:
        yield dict(a1=a1, a2=a2, cap=cap, act=act, bak=bak, r1=r1, r2=r2, s1=s1, s2=s2, p1=p1, p2=p2, rw=rw, k1=k1)


def b(backend, extra=""):
    return f'{{ url = "{backend.url}", {FAST_HEALTH}{", " + extra if extra else ""} }}'


@pytest.fixture(scope="module")
def director(backends, tmp_path_factory):
    k = backends
    config = f"""
        [proxy]
        pseudonym = "edge"

        [directors.rr]
        backends = {{ a1 = {b(k['a1'])}, a2 = {b(k['a2'])} }}

        [directors.cap]
        queue_limit = 1
        queue_timeout = 1.5
        retry_after = 7
        backends = {{ cap = {b(k['cap'], 'capacity = 1')} }}

        [directors.roles]
        backends = {{ act = {b(k['act'])}, bak = {b(k['bak'], 'role = "backup"')} }}

        [directors.retry]
        health_check_success_threshold = 1
        backends = {{ r1 = {{ url = "{k['r1'].url}", health_check_interval = 60 }}, r2 = {{ url = "{k['r2'].url}", health_check_interval = 60 }} }}

        [directors.slow]
        read_timeout = 0.5
        max_retry_count = 1
        backends = {{ s1 = {b(k['s1'])}, s2 = {b(k['s2'])} }}

        [directors.pin]
        backends = {{ p1 = {b(k['p1'])}, p2 = {b(k['p2'])} }}

        [directors.keep]
        backends = {{ k1 = {b(k['k1'])} }}

        [directors.down]
        enqueue_on_unavailable = false
        backends = {{ gone = {{ url = "http://127.0.0.1:{free_port()}", {FAST_HEALTH} }} }}

        [directors.off]
        enabled = false
        backends = {{ x = {b(k['a1'])} }}

        [[routes]]
        host = "rr"
        pass = "rr"
        [[routes]]
        host = "cap"
        pass = "cap"
        [[routes]]
        host = "roles"
        pass = "roles"
        [[routes]]
        host = "retry"
        pass = "retry"
        [[routes]]
        host = "slow"
        pass = "slow"
        [[routes]]
        host = "pin"
        pass = "pin"
        backend_from = "cookie:X-Backend"
        [[routes]]
        host = "pinh"
        pass = "pin"
        backend_from = "header:X-Pick"
        [[routes]]
        host = "keep"
        pass = "keep"
        [[routes]]
        host = "down"
        pass = "down"
        [[routes]]
        host = "off"
        pass = "off"
        [[routes]]
        path = "/rw/"
        http = "{k['rw'].address.host}:{k['rw'].port}"
        [[routes]]
        host = "rr"
        path = "/never"
        pass = "down"
    """
    d = Director(tmp_path_factory.mktemp("proxy-http"), config).start()
    try:
        for host in ("rr", "cap", "roles", "retry", "slow", "pin", "keep"):
            wait_for(lambda: d.get("/", headers={"Host": host})[0] == 200, 15, what=f"director {host} online")
        # both members of two-backend directors online
        for host, names in (("rr", {b"a1", b"a2"}), ("pin", {b"p1", b"p2"}), ("retry", {b"r1", b"r2"})):
            wait_for(lambda: {d.get("/", headers={"Host": host})[2] for _ in range(4)} == names, 15,
                     what=f"all backends of {host} online")
        yield d
    finally:
        d.stop()


def test_round_robin_alternates(director):
    bodies = [director.get("/", headers={"Host": "rr"})[2] for _ in range(6)]
    assert bodies in ([b"a1", b"a2"] * 3, [b"a2", b"a1"] * 3)


def test_no_route_is_404(director):
    status, headers, _ = director.get("/", headers={"Host": "nothing-here"})
    assert status == 404
    assert headers["server"] == "edge"  # the proxy's own answers name it by its pseudonym


def test_a_response_without_a_server_field_gets_the_pseudonym(director):
    status, headers, _ = director.get("/", headers={"Host": "rr"})  # the test backends send none
    assert status == 200 and headers["server"] == "edge"


def test_headers_forwarded_and_via_both_ways(director, backends):
    status, headers, body = director.get("/headers", headers={
        "Host": "rr", "X-Forwarded-For": "6.6.6.6", "Connection": "X-Drop", "X-Drop": "1", "Keep-Alive": "5",
        "Via": "1.0 upstream-cdn"})
    assert status == 200
    seen = json.loads(body)
    assert seen["x-forwarded-for"] == ["127.0.0.1"]  # untrusted peer: replaced
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["rr"]
    assert seen["via"] == ["1.0 upstream-cdn, 1.1 edge"]
    assert seen["host"] == ["rr"]
    assert "x-drop" not in seen and "keep-alive" not in seen
    assert headers["via"] == "1.1 edge"


def test_connection_cannot_remove_host_but_removes_the_other_fields_it_names(director):
    status, _, body = director.get("/headers", headers={
        "Host": "rr", "Connection": "host, cookie, authorization", "Cookie": "a=1", "Authorization": "Basic eA=="})
    seen = json.loads(body)
    assert status == 200 and seen["host"] == ["rr"]
    assert "cookie" not in seen and "authorization" not in seen  # hop-by-hop as the client declared


def test_http10_request_without_host_gets_the_backends_host(director, backends):
    rw = backends["rw"]
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(b"GET /rw/no-host HTTP/1.0\r\n\r\n")
        response = conn.read_response()
    assert response.status == 200
    assert [r.headers["host"] for r in rw.requests_seen if r.target == "/rw/no-host"] == [[f"127.0.0.1:{rw.port}"]]


def test_raw_path_and_query_byte_for_byte(director, backends):
    target = "/a%2Fb/%7Euser/./x?q=%20a+b&z=%2F&&x"
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(raw_request("GET", target, {"Host": "rr"}))
        response = conn.read_response()
    assert response.status == 200
    seen = [r.target for name in ("a1", "a2") for r in backends[name].requests_seen]
    assert target in seen


def test_capacity_queue_limit_and_retry_after(director, backends):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = pool.submit(director.get, "/slow?delay=1", headers={"Host": "cap"})
        wait_for(lambda: any(r.target.startswith("/slow") for r in backends["cap"].requests_seen) or
                 backends["cap"].open_connections > 0, 5, what="slow request on the backend")
        time.sleep(0.1)
        queued = pool.submit(director.get, "/", headers={"Host": "cap"})
        time.sleep(0.2)
        status, headers, _ = director.get("/", headers={"Host": "cap"})  # queue (limit 1) is full
        assert status == 503 and headers["retry-after"] == "7"
        assert slow.result()[0] == 200
        assert queued.result()[0] == 200  # dispatched when the slot freed


def test_queue_timeout_gives_503(director):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(director.get, "/slow?delay=3", headers={"Host": "cap"})
        time.sleep(0.3)
        started = time.monotonic()
        status, headers, _ = director.get("/", headers={"Host": "cap"})
        waited = time.monotonic() - started
        assert status == 503 and headers["retry-after"] == "7"
        assert 1.2 < waited < 3.0  # queue_timeout 1.5 s
        assert slow.result()[0] == 200


def test_nothing_online_is_503_at_once(director):
    status, headers, _ = director.get("/", headers={"Host": "down"})
    assert status == 503 and headers["retry-after"] == "10"


def test_disabled_director_is_503(director):
    status, headers, _ = director.get("/", headers={"Host": "off"})
    assert status == 503 and "retry-after" in headers


def test_backup_takes_over_only_when_actives_are_down(director, backends):
    assert {director.get("/", headers={"Host": "roles"})[2] for _ in range(4)} == {b"act"}
    director.shell("""
        from balancer.models import Backend
        from balancer import services
        services.set_backend_enabled(Backend.objects.get(director__name="roles", name="act"), False, actor="test")
    """)
    wait_for(lambda: director.get("/", headers={"Host": "roles"})[2] == b"bak", 2, what="backup in use within 1 s")
    director.shell("""
        from balancer.models import Backend
        from balancer import services
        services.set_backend_enabled(Backend.objects.get(director__name="roles", name="act"), True, actor="test")
    """)
    wait_for(lambda: director.get("/", headers={"Host": "roles"})[2] == b"act", 2, what="active back")


def test_refused_backend_marked_offline_and_request_retried_with_body(director, backends):
    backends["r1"].stop()  # still online in the proxy's view (health interval 60 s)
    payload = pattern_bytes(300_000)
    for _ in range(3):
        status, headers, body = director.request("POST", "/echo", body=payload, headers={"Host": "retry"})
        assert status == 200 and headers["x-backend"] == "r2"
        assert headers["x-body-sha256"] == hashlib.sha256(payload).hexdigest()
    wait_for(lambda: "director retry: backend r1 is now offline" in director.output(), 5, what="offline log line")


def test_read_timeout_tries_each_backend_once_then_504(director, backends):
    started = time.monotonic()
    status, _, _ = director.get("/slow?delay=2", headers={"Host": "slow"})
    assert status == 504
    assert time.monotonic() - started < 2.0  # two attempts of 0.5 s, not more
    # each backend got the request exactly once (they log it once the slow answer is written)
    wait_for(lambda: all(any(r.target == "/slow?delay=2" for r in backends[n].requests_seen) for n in ("s1", "s2")),
             5, what="both backends saw the request")
    for n in ("s1", "s2"):
        assert sum(r.target == "/slow?delay=2" for r in backends[n].requests_seen) == 1


def test_client_chosen_backend_by_cookie_and_header(director):
    for _ in range(3):
        assert director.get("/", headers={"Host": "pin", "Cookie": "a=1; X-Backend=p2"})[2] == b"p2"
        assert director.get("/", headers={"Host": "pinh", "X-Pick": "p1"})[2] == b"p1"
    status, headers, _ = director.get("/", headers={"Host": "pin", "Cookie": "X-Backend=nope"})
    assert status == 503 and headers["retry-after"] == "10"
    assert "client-chosen backend nope is unknown" in director.output()
    # absent: normal balancing
    assert {director.get("/", headers={"Host": "pin"})[2] for _ in range(4)} == {b"p1", b"p2"}


def test_road_warrior_http(director, backends):
    status, headers, body = director.get("/rw/x?y=1", headers={"Host": "whatever"})
    assert status == 200 and body == b"rw" and headers["via"] == "1.1 edge"
    assert backends["rw"].requests_seen[-1].target == "/rw/x?y=1"


def test_upstream_keepalive_pooled(director, backends):
    for _ in range(20):
        director.get("/pooled", headers={"Host": "rr"})
    for name in ("a1", "a2"):
        connections = {r.connection for r in backends[name].requests_seen if r.target == "/pooled"}
        assert len(connections) == 1, (name, connections)  # sequential requests share one connection


def test_post_not_resent_after_reaching_backend(director, backends):
    # k1 drops every second request on a connection: the pooled connection's second POST
    # reaches the backend and dies; a POST must not be sent again.
    k1 = backends["k1"]
    statuses = []
    for _ in range(4):
        status, _, _ = director.request("POST", "/echo", body=b"once", headers={"Host": "keep"})
        statuses.append(status)
    posts = [r for r in k1.requests_seen if r.method == "POST"]
    assert 502 in statuses
    assert len(posts) == statuses.count(200)
    # A reused connection dying before the response says nothing about k1's health.
    assert "backend k1 is now offline" not in director.output()
    assert director.get("/", headers={"Host": "keep"})[0] == 200


def test_streamed_large_response_intact(director):
    size = 30 * 1024 * 1024
    status, headers, body = director.get(f"/bytes?size={size}&framing=chunked&chunk=65536", headers={"Host": "rr"})
    assert status == 200 and len(body) == size
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern_bytes(size)).digest()


def _close_wait(port: int) -> int:
    """Backend-side sockets whose peer (the proxy) has closed: the upstream was cancelled."""
    out = subprocess.run(["ss", "-Htn", "state", "close-wait", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def test_client_abort_frees_slot_and_cancels_upstream(director, backends):
    cap = backends["cap"]
    sock = socket.create_connection(("127.0.0.1", director.port))
    sock.sendall(raw_request("GET", "/slow?delay=30", {"Host": "cap"}))
    wait_for(lambda: cap.open_connections >= 1, 5, what="upstream request in flight")
    time.sleep(0.2)
    assert _close_wait(cap.port) == 0
    sock.close()
    # the upstream connection is closed by the proxy (the backend sees EOF: CLOSE-WAIT) ...
    wait_for(lambda: _close_wait(cap.port) >= 1, 5, what="upstream connection closed by the proxy")
    # ... and the slot (capacity 1) is free again at once
    started = time.monotonic()
    status, _, body = director.get("/", headers={"Host": "cap"})
    assert status == 200 and time.monotonic() - started < 2
