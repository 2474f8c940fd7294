"""`/metrics` through a real runproxy: Prometheus text format that prometheus_client parses,
per-backend request counters by class, load, queue and dropped while requests are held,
and health state with operator-disabled and offline backends."""
from __future__ import annotations

import concurrent.futures

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.waiting import free_port, wait_for

SLOW = "/slow?delay=1.5"


@pytest.fixture(scope="module")
def backends():
    with http_backend("m1") as m1, http_backend("held") as held, http_backend("off") as off:
        yield {"m1": m1, "held": held, "off": off}


@pytest.fixture(scope="module")
def director(backends, tmp_path_factory):
    k = backends
    config = f"""
        [directors.app]
        health_check_success_threshold = 1
        backends = {{ m1 = {{ url = "{k['m1'].url}", health_check_interval = 0.2 }}, \
dead = {{ url = "http://127.0.0.1:{free_port()}", health_check_interval = 0.2, role = "backup" }}, \
off = {{ url = "{k['off'].url}", health_check_interval = 0.2, enabled = false }} }}

        [directors.narrow]
        health_check_success_threshold = 1
        queue_limit = 1
        queue_timeout = 10
        backends = {{ held = {{ url = "{k['held'].url}", health_check_interval = 0.2, capacity = 1 }} }}

        [[routes]]
        host = "narrow"
        pass = "narrow"

        [[routes]]
        pass = "app"
    """
    d = Director(tmp_path_factory.mktemp("metrics"), config).start()
    try:
        for host in ("app", "narrow"):
            wait_for(lambda: d.get("/", headers={"Host": host})[0] == 200, 15, what=f"director {host} online")
        yield d
    finally:
        d.stop()


def scrape(d: Director) -> dict:
    """{(sample name, sorted label items): value} of one scrape."""
    status, headers, body = d.get("/metrics", port=d.admin_port)
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def scrape_until(d: Director, predicate, what: str) -> dict:
    def attempt():
        samples = scrape(d)
        return samples if predicate(samples) else None
    return wait_for(attempt, 10, what=what)


def value(samples: dict, name: str, **labels) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def test_requests_by_class_per_backend_and_director(director):
    before = scrape(director)
    for path in ("/", "/", "/", "/status/404", "/status/500"):
        director.get(path)
    after = scrape(director)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    m1 = {"director": "app", "backend": "m1"}
    assert delta("director_requests_total", **m1, **{"class": "2xx"}) == 3
    assert delta("director_requests_total", **m1, **{"class": "4xx"}) == 1
    assert delta("director_requests_total", **m1, **{"class": "5xx"}) == 1
    assert delta("director_requests_total", **m1, **{"class": "failed"}) == 0
    assert delta("director_responses_total", director="app", **{"class": "2xx"}) == 3
    assert delta("director_backend_dispatched_total", **m1) == 5
    assert value(after, "director_live_stats") == 1 and value(after, "director_database_up") == 1


def test_health_state_and_enabled(director):
    dead = ("director_backend_up", (("backend", "dead"), ("director", "app"), ("state", "offline")))
    checked = ("director_backend_last_check_timestamp_seconds", (("backend", "m1"), ("director", "app")))
    # stored facts (last check) are read at most once a second: they may lag the live state
    samples = scrape_until(director, lambda s: dead in s and checked in s, "dead offline, m1 checked")
    assert value(samples, "director_backend_up", director="app", backend="m1", state="online") == 1
    assert value(samples, "director_backend_up", director="app", backend="dead", state="offline") == 0
    off = [labels for name, labels in samples if name == "director_backend_up" and ("backend", "off") in labels]
    assert off == [(("backend", "off"), ("director", "app"), ("state", "disabled"))]
    assert value(samples, "director_backend_enabled", director="app", backend="off") == 0
    assert value(samples, "director_backend_enabled", director="app", backend="m1") == 1
    assert value(samples, "director_backend_last_check_timestamp_seconds", director="app", backend="m1") > 0
    assert value(samples, "director_enabled", director="app") == 1


def test_load_queue_and_dropped_while_requests_are_held(director):
    narrow = {"director": "narrow"}
    before = scrape(director)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        held = pool.submit(director.get, SLOW, headers={"Host": "narrow"})
        scrape_until(director, lambda s: value(s, "director_backend_load", backend="held", **narrow) == 1, "load 1")
        queued = pool.submit(director.get, SLOW, headers={"Host": "narrow"})
        samples = scrape_until(director, lambda s: value(s, "director_queue_length", **narrow) == 1, "one queued")
        assert value(samples, "director_load", **narrow) == 1
        assert director.get("/", headers={"Host": "narrow"})[0] == 503  # queue_limit 1: refused
        assert held.result()[0] == 200 and queued.result()[0] == 200
    after = scrape(director)
    assert value(after, "director_backend_load", backend="held", **narrow) == 0
    assert value(after, "director_queue_length", **narrow) == 0
    assert value(after, "director_queue_length_max", **narrow) >= 1
    assert value(after, "director_backend_load_max", backend="held", **narrow) == 1
    assert value(after, "director_backend_capacity", backend="held", **narrow) == 1
    assert value(after, "director_dropped_total", **narrow) - value(before, "director_dropped_total", **narrow) == 1
    assert value(after, "director_queued_total", **narrow) - value(before, "director_queued_total", **narrow) == 1


def test_health_check_count_and_duration(director):
    m1 = {"director": "app", "backend": "m1"}
    count_key = ("director_health_check_duration_seconds_count", tuple(sorted(m1.items())))
    first = scrape_until(director, lambda s: s.get(count_key),
                         "a timed check of m1")
    count = value(first, "director_health_check_duration_seconds_count", **m1)
    assert 0 < value(first, "director_health_check_duration_seconds_sum", **m1) / count < 1  # loopback checks
    # a histogram: cumulative buckets up to +Inf, which counts every check
    assert value(first, "director_health_check_duration_seconds_bucket", le="+Inf", **m1) == count
    assert value(first, "director_health_check_duration_seconds_bucket", le="1.0", **m1) == count
    assert value(first, "director_health_check_duration_seconds_bucket", le="0.001", **m1) <= count
    later = scrape_until(director, lambda s: value(s, "director_health_checks_total", **m1)
                         > value(first, "director_health_checks_total", **m1), "more checks of m1")
    assert value(later, "director_health_checks_total", **m1) >= 2
