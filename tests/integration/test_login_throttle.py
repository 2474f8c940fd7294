"""Admin login throttling (balancer.login_throttle) through Django's test client: blocked per
client IP and per username after MAX_FAILURES failures, without checking the password; reset
on success; the count slides over the last WINDOW_S seconds, across the end of a counting
window too. Parallel attempts against a real server: test_login_throttle_parallel.py."""
from __future__ import annotations

import logging

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.cache.backends.locmem import LocMemCache

from balancer.login_throttle import MAX_FAILURES, THROTTLE, WINDOW_S

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/"
PASSWORD = "right-horse-battery"
IP_A, IP_B = "192.0.2.1", "198.51.100.7"
BLOCKED_TEXT = "Too many failed login attempts; try again in"
WRONG_CREDENTIALS_TEXT = "Please enter the correct username and password"


class Clock:
    """A settable wall clock for the throttle's windows."""

    def __init__(self):
        self.now = 1000.0 * WINDOW_S  # the start of a counting window

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """A fake clock, and counts in a private store (the default cache may be a shared Redis)."""
    fake = Clock()
    monkeypatch.setattr(THROTTLE, "clock", fake)
    store = LocMemCache("login-throttle-tests", {})  # shares its storage with same-named ones
    store.clear()
    monkeypatch.setattr(THROTTLE, "store", store)
    return fake


@pytest.fixture(autouse=True)
def admins(django_user_model):
    for name in ("admin", "other"):
        django_user_model.objects.create_superuser(name, f"{name}@example.org", PASSWORD)


def attempt(client, username: str, password: str, ip: str = IP_A):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip)


def logged_in(client) -> bool:
    return SESSION_KEY in client.session


def fail(client, times: int, username: str = "admin", ip: str = IP_A) -> None:
    for _ in range(times):
        response = attempt(client, username, "wrong", ip)
        assert response.status_code == 200 and WRONG_CREDENTIALS_TEXT in response.content.decode()


def assert_blocked(response, seconds: int | None = None) -> None:
    body = response.content.decode()
    assert response.status_code == 429, (response.status_code, body[:300])
    assert BLOCKED_TEXT in body and 'name="password"' in body  # the login form again, with the error
    wait = int(response["Retry-After"])
    assert 0 < wait <= 2 * WINDOW_S and f"try again in {wait} s" in body
    if seconds is not None:
        assert wait == seconds


def test_sixth_attempt_is_refused_even_with_the_right_password(client):
    fail(client, MAX_FAILURES)
    # 6 attempts at the start of a window: the next one fits once the window is over and
    # 6 x (1 - x/300) + 1 <= 5 in the next, i.e. x = 100 s into it
    assert_blocked(attempt(client, "admin", PASSWORD), seconds=WINDOW_S + 100)
    assert not logged_in(client)


def test_blocked_attempts_do_not_check_the_password(client, monkeypatch):
    fail(client, MAX_FAILURES)
    checked = []
    monkeypatch.setattr("django.contrib.auth.authenticate", lambda *a, **k: checked.append(k))
    monkeypatch.setattr("django.contrib.auth.forms.authenticate", lambda *a, **k: checked.append(k))
    assert_blocked(attempt(client, "admin", PASSWORD))
    assert checked == []


def test_limits_apply_per_ip_and_per_username(client):
    fail(client, MAX_FAILURES, username="admin", ip=IP_A)
    assert_blocked(attempt(client, "other", PASSWORD, ip=IP_A))  # same IP, another user
    assert_blocked(attempt(client, "admin", PASSWORD, ip=IP_B))  # same user, another IP
    assert_blocked(attempt(client, "ADMIN", PASSWORD, ip=IP_B))  # usernames count case-insensitively
    response = attempt(client, "other", PASSWORD, ip=IP_B)  # neither: unaffected
    assert response.status_code == 302 and logged_in(client)


def test_success_resets_the_count(client):
    fail(client, MAX_FAILURES - 1)
    assert attempt(client, "admin", PASSWORD).status_code == 302
    client.logout()
    fail(client, MAX_FAILURES - 1)  # would block at the 5th failure if the earlier ones still counted
    assert attempt(client, "admin", PASSWORD).status_code == 302


def test_the_count_slides_into_the_next_window(client, clock):
    clock.now = 10 * WINDOW_S + 100  # 100 s into a window
    fail(client, MAX_FAILURES)
    # 6 attempts here; in the next window 6 x (1 - x/300) + 1 <= 5 from x = 100 s
    assert_blocked(attempt(client, "admin", PASSWORD), seconds=WINDOW_S - 100 + 100)
    clock.now += WINDOW_S - 1  # 99 s into the next window: 1 + 6 x 201/300 = 5.02
    assert_blocked(attempt(client, "admin", PASSWORD), seconds=51)  # 2 + 6 x (1 - x/300) <= 5: x = 150
    clock.now += 51
    assert attempt(client, "admin", PASSWORD).status_code == 302


def test_a_burst_across_the_end_of_a_window_is_held_to_the_limit(client, clock):
    clock.now = 11 * WINDOW_S - 1  # the last second of a window
    fail(client, 3)
    clock.now += 2  # 1 s into the next: the 3 still count, at 299/300
    fail(client, MAX_FAILURES - 3)
    assert_blocked(attempt(client, "admin", PASSWORD), seconds=199)  # 4 + 3 x (1 - x/300) <= 5: x = 200
    assert not logged_in(client)


def test_incomplete_forms_do_not_count(client):
    for _ in range(MAX_FAILURES * 2):
        assert client.post(LOGIN, {"username": "admin"}, REMOTE_ADDR=IP_A).status_code == 200
    assert attempt(client, "admin", PASSWORD).status_code == 302


class _UnreachableStore:
    """A cache whose server is down (as Redis behind REDIS_URL can be)."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return fail


def test_an_unreachable_cache_leaves_logins_working_and_says_so(client, monkeypatch, caplog):
    monkeypatch.setattr(THROTTLE, "store", _UnreachableStore())
    with caplog.at_level(logging.WARNING, logger="director.admin"):
        fail(client, MAX_FAILURES + 1)
        assert attempt(client, "admin", PASSWORD).status_code == 302 and logged_in(client)
    assert "login throttling is off while its cache fails" in caplog.text
