"""The admin login throttle holds under parallel attempts (SPEC §13): of 50 simultaneous wrong
passwords from one address against a real runproxy, at most MAX_FAILURES are checked (answered
with the form saying the login failed); every other one is refused with 429 unchecked."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from balancer.login_throttle import MAX_FAILURES
from tests.support.admin_login import admin_login
from tests.support.director import Director

ATTEMPTS = 50
CONFIG = '[directors.app]\nbackends = { a1 = "http://127.0.0.1:1" }\n'


def test_parallel_wrong_passwords_are_checked_at_most_the_allowed_number_of_times(tmp_path):
    director = Director(tmp_path, CONFIG).start()
    try:
        with ThreadPoolExecutor(ATTEMPTS) as pool:
            statuses = Counter(pool.map(lambda i: admin_login(director, f"guess{i % 3}", "wrong"), range(ATTEMPTS)))
    finally:
        director.stop()
    assert set(statuses) <= {200, 429}, statuses
    assert 1 <= statuses[200] <= MAX_FAILURES, statuses
    assert statuses[429] == ATTEMPTS - statuses[200]
