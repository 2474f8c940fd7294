"""Traffic that runs through an operation (reload, shutdown, failover) and counts failures.

`wrk_through(url, connections, seconds)` runs wrk in the background (keep-alive connections,
as production clients hold them); `ConnectProbe` opens a new connection every `interval`
seconds, which is what finds a moment when a listener refuses or resets connections.
"""
from __future__ import annotations

import contextlib
import http.client
import subprocess
import threading
import time

from bench.wrk import WrkResult, parse
from tests.support.processes import require_binary


class WrkRun:
    def __init__(self, url: str, connections: int, seconds: float):
        self.seconds = seconds
        binary = require_binary("wrk", "wrk")
        # --timeout: a response slower than this counts as a socket error; the assertion is
        # "no request failed", not a latency bound (a 2-CPU machine starting a worker is slow)
        self.process = subprocess.Popen([binary, "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                                         "--latency", url],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self) -> WrkResult:
        output, _ = self.process.communicate(timeout=self.seconds + 60)
        assert self.process.returncode == 0, output
        return parse(output)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@contextlib.contextmanager
def wrk_through(url: str, connections: int, seconds: float):
    run = WrkRun(url, connections, seconds)
    try:
        yield run
    finally:
        run.stop()


class ConnectProbe(threading.Thread):
    """GET `path` on a new connection every `interval` s; `failures` lists what went wrong."""

    def __init__(self, port: int, path: str = "/", interval: float = 0.02, host: str = "127.0.0.1"):
        super().__init__(daemon=True, name="connect-probe")
        self.host, self.port, self.path, self.interval = host, port, path, interval
        self.failures: list[str] = []
        self.failed_at: list[float] = []  # time.monotonic() of each failure's attempt
        self.attempts = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            self.attempts += 1
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                conn.request("GET", self.path, headers={"Connection": "close"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self._failed(started, f"status {response.status}")
            except OSError as exc:
                self._failed(started, f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _failed(self, started: float, what: str) -> None:
        self.failed_at.append(started)
        self.failures.append(f"{time.strftime('%X')} {what}")

    def failures_except_around(self, moment: float, margin: float = 0.1) -> list[str]:
        """Failures of attempts that did not start within `margin` s of `moment` (a SIGKILL
        takes the connections its process had accepted with it)."""
        return [f for f, t in zip(self.failures, self.failed_at) if abs(t - moment) > margin]

    def stop(self) -> list[str]:
        self._halt.set()
        self.join(15)
        return self.failures


@contextlib.contextmanager
def probing(port: int, path: str = "/", interval: float = 0.02):
    probe = ConnectProbe(port, path, interval)
    probe.start()
    try:
        yield probe
    finally:
        probe.stop()
