"""Run wrk and read requests/s, p50, p99 and errors from its `--latency` report."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

# wrk prints durations with these units (src/units.c: time units).
_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS_PER_SEC = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True)
class WrkSettings:
    threads: int = 2
    connections: int = 32
    duration: float = 10.0

    def args(self, duration: float | None = None) -> list[str]:
        seconds = self.duration if duration is None else duration
        return [f"-t{self.threads}", f"-c{self.connections}", f"-d{seconds:g}s", "--latency"]


@dataclass(frozen=True)
class WrkResult:
    requests_per_sec: float
    p50_ms: float | None  # None: the load generator reports no percentiles (h2load)
    p99_ms: float | None
    requests: int
    non_2xx: int  # wrk counts statuses above 399 here ("Non-2xx or 3xx responses")
    socket_errors: tuple[int, int, int, int] = (0, 0, 0, 0)  # connect, read, write, timeout

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors)

    def describe_errors(self) -> str:
        connect, read, write, timeout = self.socket_errors
        return (f"{self.non_2xx} responses >= 400; socket errors: connect {connect}, read {read}, "
                f"write {write}, timeout {timeout}")


class WrkError(RuntimeError):
    pass


def parse(output: str) -> WrkResult:
    """WrkResult from the text wrk prints with `--latency`; WrkError when a figure is missing."""
    percentiles = {int(p): float(v) * _TIME_UNITS_MS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    rate = _REQUESTS_PER_SEC.search(output)
    requests = _REQUESTS.search(output)
    if rate is None or requests is None or set(percentiles) != {50, 99}:
        raise WrkError(f"cannot read wrk output:\n{output}")
    sockets = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests_per_sec=float(rate.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=tuple(int(n) for n in sockets.groups()) if sockets else (0, 0, 0, 0),
    )


def run(url: str, settings: WrkSettings, duration: float | None = None) -> WrkResult:
    """One wrk run against `url`; `duration` overrides the settings' (used for warm-up)."""
    binary = shutil.which("wrk") or "wrk"
    seconds = settings.duration if duration is None else duration
    done = subprocess.run([binary, *settings.args(duration), url], capture_output=True, text=True,
                          timeout=seconds + 60)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return parse(done.stdout)
