"""`/haproxy/stats.csv` through a real runproxy: HAProxy's header (checked against a real
HAProxy's own `;csv` output), a FRONTEND row, server rows and a BACKEND row per director,
statuses UP/DOWN/MAINT, active/backup flags, limits and counters."""
from __future__ import annotations

import csv
import http.client
import io

import pytest

from balancer.haproxy_csv import FIELDS, HEADER
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.processes import Process, require_binary
from tests.support.waiting import free_port, wait_for, wait_port

HAPROXY_CONFIG = """
defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s
frontend stats
  bind 127.0.0.1:{port}
  stats enable
  stats uri /stats
"""


@pytest.fixture(scope="module")
def backends():
    with http_backend("a1") as a1, http_backend("bk") as bk, http_backend("dis") as dis, http_backend("x") as x:
        yield {"a1": a1, "bk": bk, "dis": dis, "x": x}


@pytest.fixture(scope="module")
def director(backends, tmp_path_factory):
    k = backends
    check = "health_check_interval = 0.2"
    config = f"""
        [directors.web]
        health_check_success_threshold = 1
        backends = {{ a1 = {{ url = "{k['a1'].url}", {check}, capacity = 3 }}, \
bk = {{ url = "{k['bk'].url}", {check}, role = "backup" }}, \
dis = {{ url = "{k['dis'].url}", {check}, enabled = false }}, \
dead = {{ url = "http://127.0.0.1:{free_port()}", {check} }} }}

        [directors.off]
        enabled = false
        health_check_success_threshold = 1
        backends = {{ x = {{ url = "{k['x'].url}", {check} }} }}

        [[routes]]
        pass = "web"
    """
    d = Director(tmp_path_factory.mktemp("haproxy-csv"), config).start()
    try:
        wait_for(lambda: d.get("/")[0] == 200, 15, what="director web online")
        yield d
    finally:
        d.stop()


def stats(d: Director) -> dict[tuple[str, str], dict]:
    """Rows keyed by (pxname, svname), in document order."""
    status, headers, body = d.get("/haproxy/stats.csv", port=d.admin_port)
    assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8"
    text = body.decode()
    assert text.startswith(HEADER)
    for line in text.splitlines():
        assert line.count(",") == len(FIELDS), line  # one comma per field, trailing one included
    rows = csv.DictReader(io.StringIO(text[2:]))
    return {(row["pxname"], row["svname"]): row for row in rows}


def stats_until(d: Director, predicate, what: str) -> dict:
    def attempt():
        rows = stats(d)
        return rows if predicate(rows) else None
    return wait_for(attempt, 10, what=what)


def test_header_is_a_prefix_of_real_haproxys(tmp_path):
    haproxy = require_binary("haproxy", "haproxy")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port))
    process = Process([haproxy, "-f", config, "-db"], tmp_path / "haproxy.log")
    try:
        wait_port("127.0.0.1", port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/stats;csv")
        theirs = conn.getresponse().read().decode().splitlines()[0]
        conn.close()
    finally:
        process.stop()
    assert theirs.startswith("# ")
    assert theirs[2:].split(",")[:len(FIELDS)] == FIELDS


def test_rows_per_director_and_statuses(director):
    rows = stats_until(director, lambda r: r[("web", "dead")]["status"] == "DOWN" and r[("web", "bk")]["status"] == "UP",
                       "dead down and bk up")
    assert [key for key in rows if key[0] == "web"] == [
        ("web", "FRONTEND"), ("web", "a1"), ("web", "bk"), ("web", "dis"), ("web", "dead"), ("web", "BACKEND")]
    assert [key for key in rows if key[0] == "off"] == [("off", "FRONTEND"), ("off", "x"), ("off", "BACKEND")]

    a1, bk, dis, dead = (rows["web", name] for name in ("a1", "bk", "dis", "dead"))
    assert (a1["status"], a1["act"], a1["bck"], a1["slim"], a1["type"], a1["check_status"]) == ("UP", "1", "0", "3", "2", "L7OK")
    assert (bk["status"], bk["act"], bk["bck"], bk["slim"]) == ("UP", "0", "1", "")
    assert dis["status"] == "MAINT"
    assert (dead["status"], dead["check_status"]) == ("DOWN", "L4CON")
    assert [r["sid"] for r in (a1, bk, dis, dead)] == ["1", "2", "3", "4"]
    assert int(a1["lastchg"]) >= 0 and a1["pid"] == "1" and a1["iid"] == "2"  # directors by name: off, web

    frontend, backend = rows["web", "FRONTEND"], rows["web", "BACKEND"]
    assert (frontend["status"], frontend["type"], frontend["sid"]) == ("OPEN", "0", "0")
    assert (backend["status"], backend["type"], backend["act"], backend["bck"]) == ("UP", "1", "1", "1")
    assert backend["slim"] == ""  # some member has no capacity limit
    assert rows["off", "FRONTEND"]["status"] == "STOP" and rows["off", "FRONTEND"]["iid"] == "1"


def test_counters_follow_traffic(director):
    before = stats(director)
    for path in ("/", "/", "/status/404"):
        assert director.get(path)[0] in (200, 404)
    after = stats(director)

    def delta(key, field):
        return int(after[key][field]) - int(before[key][field])

    assert delta(("web", "a1"), "stot") == 3 and delta(("web", "a1"), "lbtot") == 3
    assert delta(("web", "a1"), "hrsp_2xx") == 2 and delta(("web", "a1"), "hrsp_4xx") == 1
    assert delta(("web", "BACKEND"), "stot") == 3
    assert delta(("web", "FRONTEND"), "req_tot") == 3 and delta(("web", "FRONTEND"), "hrsp_2xx") == 2
    assert after["web", "a1"]["scur"] == "0" and int(after["web", "a1"]["smax"]) >= 1
