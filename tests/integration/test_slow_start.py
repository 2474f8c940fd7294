"""Slow start (SPEC §15) through a real runproxy: of two rr backends, one goes offline (its
server stops) and comes back; with slow_start = 10 its share of a steady request stream,
counted in 1 s windows from its return, rises from almost nothing to about half."""
from __future__ import annotations

import http.client
import time

from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.waiting import wait_for

SLOW_START = 10
WINDOWS = 13  # seconds of traffic after the backend's server is back


def shares(director, port: int, since: float) -> list[float]:
    """The share of backend "back" in each 1 s window after `since` (monotonic), from
    sequential requests on one keep-alive connection for WINDOWS seconds."""
    counts = [[0, 0] for _ in range(WINDOWS)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while (elapsed := time.monotonic() - since) < WINDOWS:
            conn.request("GET", "/", headers={"Host": "ramp"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            window = counts[int(elapsed)]
            window[0] += 1
            window[1] += response.getheader("x-backend") == "back"
    finally:
        conn.close()
    # A window with few requests (a second in which the loaded machine paused) speaks of no
    # share: None. Most windows must speak.
    result = [back / total if total >= 10 else None for total, back in counts]
    assert sum(share is not None for share in result) >= WINDOWS - 3, counts
    return result


def mean(result: list, first: int, end: int) -> float:
    """The mean share of the windows first..end-1 that speak (at least one must)."""
    shares = [share for share in result[first:end] if share is not None]
    assert shares, result
    return sum(shares) / len(shares)


def test_a_returning_backend_ramps_up_linearly(tmp_path):
    with http_backend("steady") as steady, http_backend("back") as back:
        port = back.port
        config = f"""
            [directors.ramp]
            slow_start = {SLOW_START}
            health_check_success_threshold = 1
            health_check_failure_threshold = 1
            backends = {{ steady = {{ url = "{steady.url}", health_check_interval = 0.2 }}, back = {{ url = "{back.url}", health_check_interval = 0.2 }} }}

            [[routes]]
            host = "ramp"
            pass = "ramp"
        """
        director = Director(tmp_path, config).start()
        try:
            seen = lambda: {director.get(headers={"Host": "ramp"})[1]["x-backend"] for _ in range(6)}  # noqa: E731
            wait_for(lambda: seen() == {"steady", "back"}, 20, what="both backends online")
            back.stop()
            wait_for(lambda: "director ramp: backend back is now offline" in director.output(), 10,
                     what="the stopped backend offline")
            with http_backend("back", port=port):
                result = shares(director, director.port, time.monotonic())
        finally:
            director.stop()
    print("share of the returning backend per second:", " ".join("-" if s is None else f"{s:.2f}" for s in result))
    assert mean(result, 0, 2) < 0.2
    early, middle, late = mean(result, 0, 3), mean(result, 4, 7), mean(result, 8, 10)
    assert early < middle < late, result
    assert 0.35 <= mean(result, 11, 13) <= 0.65, result  # the ramp is over: rr halves again
