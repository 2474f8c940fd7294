"""Request metrics through a real runproxy (SPEC §13): response-time histograms by director,
backend and status class, upstream response times, body bytes by director in /metrics, and
bin/bout/rtime/ttime in /haproxy/stats.csv."""
from __future__ import annotations

import pytest

from tests.integration.test_haproxy_csv import stats
from tests.integration.test_metrics import scrape, scrape_until, value
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.waiting import wait_for

DURATION = "director_request_duration_seconds"
UPSTREAM = "director_upstream_response_seconds"


@pytest.fixture(scope="module")
def director(tmp_path_factory):
    with http_backend("b1") as b1:
        config = f"""
            [directors.app]
            health_check_success_threshold = 1
            backends = {{ b1 = {{ url = "{b1.url}", health_check_interval = 0.3 }} }}

            [directors.off]
            enabled = false
            backends = {{ x = {{ url = "{b1.url}", health_check_interval = 0.3 }} }}

            [[routes]]
            host = "off"
            pass = "off"

            [[routes]]
            pass = "app"
        """
        d = Director(tmp_path_factory.mktemp("request-metrics"), config).start()
        try:
            wait_for(lambda: d.get("/")[0] == 200, 20, what="director app online")
            yield d
        finally:
            d.stop()


def bucket(samples: dict, name: str, le: str, **labels) -> float:
    return samples.get((f"{name}_bucket", tuple(sorted({**labels, "le": le}.items()))), 0.0)


def test_a_slow_backend_lands_in_the_right_buckets(director):
    """A backend that takes 0.3 s: above the 0.25 s bucket (it cannot be faster than its sleep)
    and within 0.5 s (0.2 s of margin for a loaded machine)."""
    labels = {"director": "app", "backend": "b1", "class": "2xx"}
    before = scrape(director)
    status, _, _ = director.get("/slow?delay=0.3")
    assert status == 200
    after = scrape_until(director, lambda s: value(s, f"{DURATION}_count", **labels)
                         > before.get((f"{DURATION}_count", tuple(sorted(labels.items()))), 0), "the request counted")

    def delta(name, le, **where):
        return bucket(after, name, le, **where) - bucket(before, name, le, **where)

    assert delta(DURATION, "0.25", **labels) == 0
    assert delta(DURATION, "0.5", **labels) == 1
    assert delta(DURATION, "+Inf", **labels) == 1
    backend = {"director": "app", "backend": "b1"}
    assert delta(UPSTREAM, "0.25", **backend) == 0 and delta(UPSTREAM, "0.5", **backend) == 1
    added = value(after, f"{DURATION}_sum", **labels) - before.get((f"{DURATION}_sum", tuple(sorted(labels.items()))), 0)
    assert 0.3 <= added < 0.5


def test_the_directors_own_answers_have_an_empty_backend(director):
    labels = {"director": "off", "backend": "", "class": "5xx"}
    assert director.get("/", headers={"Host": "off"})[0] == 503
    samples = scrape_until(director, lambda s: bucket(s, DURATION, "0.1", **labels) >= 1, "the 503 counted")
    assert value(samples, f"{DURATION}_count", **labels) >= 1


def test_byte_counters_match_the_bytes_of_the_bodies(director):
    before = scrape(director)
    status, _, body = director.request("POST", "/echo", body=b"z" * 12345)
    assert status == 200 and len(body) == 12345
    status, _, body = director.get("/bytes?size=70000&framing=chunked")
    assert status == 200 and len(body) == 70000

    def received(s):
        return value(s, "director_bytes_received_total", director="app")

    after = scrape_until(director, lambda s: received(s) > received(before), "the bytes counted")
    assert received(after) - received(before) == 12345
    assert value(after, "director_bytes_sent_total", director="app") - value(
        before, "director_bytes_sent_total", director="app") == 12345 + 70000


def test_haproxy_csv_has_bytes_and_times(director):
    before = stats(director)
    assert director.request("POST", "/echo", body=b"q" * 4000)[0] == 200
    assert director.get("/slow?delay=0.05")[0] == 200
    after = stats(director)

    def delta(row, field):
        return int(after["app", row][field]) - int(before["app", row][field])

    for row in ("FRONTEND", "b1", "BACKEND"):
        assert delta(row, "bin") == 4000, row
        assert delta(row, "bout") == 4000 + len(b"b1"), row  # /slow answers the backend's name
    server = after["app", "b1"]
    assert int(server["rtime"]) >= 0 and int(server["ttime"]) >= int(server["rtime"])
    assert after["app", "BACKEND"]["ttime"] != "" and after["app", "FRONTEND"]["rtime"] == ""
