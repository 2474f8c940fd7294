"""Two runproxy processes sharing PostgreSQL and Redis (SPEC §2: several processes or
nodes): a change made through one reaches the other's data plane within a second, and a
health transition decided by the one monitor is applied by the proxy that runs none; failed
admin logins counted by one process block the next attempt on the other."""
import time

import pytest

from balancer.login_throttle import CACHE_PREFIX, MAX_FAILURES
from tests.support.admin_login import admin_login
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.live_api import BACKENDS, CONFIG, LiveApi
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import wait_for


@pytest.fixture
def pair(tmp_path):
    redis = redis_url()
    with postgres_database() as database, http_backend("one") as one, http_backend("two") as two:
        env = {"REDIS_URL": redis}
        monitor = Director(tmp_path / "a", CONFIG, database_url=database, env=env)
        migrated = monitor.manage("migrate", "--noinput", "-v", "0", timeout=120)
        assert migrated.returncode == 0, migrated.stderr
        monitor.start()
        plain = Director(tmp_path / "b", CONFIG, database_url=database, env=env,
                         extra_args=["--no-health-monitor"]).start()
        try:
            yield LiveApi(monitor), plain, one, two
        finally:
            plain.stop()
            monitor.stop()


def test_change_through_one_process_reaches_the_other(pair):
    api, plain, one, two = pair
    for backend in (one, two):
        api.add_backend(backend)
        api.wait_online(backend.name)
    wait_for(lambda: {plain.get("/")[2] for _ in range(4)} == {b"one", b"two"}, 5,
             what="the other process balancing over both backends")
    started = time.monotonic()
    api.call("POST", f"{BACKENDS}one/disable", expect=200)
    wait_for(lambda: all(plain.get("/")[2] == b"two" for _ in range(4)), 3, interval=0.01,
             what="the disable to reach the other process")
    assert time.monotonic() - started < 1.5  # within a second, plus the probing requests
    assert "Redis" not in plain.output()


def test_health_transition_from_the_monitor_reaches_the_other_process(pair):
    api, plain, one, two = pair
    for backend in (one, two):
        api.add_backend(backend)
        api.wait_online(backend.name)
    wait_for(lambda: {plain.get("/")[2] for _ in range(4)} == {b"one", b"two"}, 5, what="both in use")
    two.stop()  # the monitor (other process) finds it offline; this proxy must follow
    # No request goes to this proxy meanwhile, so only the monitor's verdict can tell it.
    started = time.monotonic()
    wait_for(lambda: 'director_backend_up{backend="two",director="pool",state="offline"} 0.0' in metrics(plain),
             5, what="this proxy's live view of two: offline")
    assert time.monotonic() - started < 3  # check interval 0.2 s + verdict + push
    assert 'director_requests_total{backend="two",class="failed",director="pool"} 0.0' in metrics(plain)
    assert [plain.get("/")[2] for _ in range(6)] == [b"one"] * 6


def metrics(director: Director) -> str:
    return director.get("/metrics", port=director.admin_port)[2].decode()


@pytest.fixture
def clean_login_counts():
    """Throttle counts of 127.0.0.1 live in the shared Redis: none before, none left after."""
    import redis

    client = redis.Redis.from_url(redis_url())

    def clear():
        for key in client.scan_iter(f"director:*:{CACHE_PREFIX}*"):
            client.delete(key)
    clear()
    yield
    clear()


def test_failed_logins_on_one_process_block_the_other(pair, clean_login_counts):
    api, plain, _, _ = pair
    statuses = [admin_login(api.director, "nobody", "wrong") for _ in range(MAX_FAILURES)]
    assert statuses == [200] * MAX_FAILURES  # the form again, saying the login failed
    assert admin_login(plain, "nobody", "wrong") == 429
