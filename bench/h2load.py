"""Run h2load (nghttp2's HTTP/2 load generator) and read what `bench/run.py` reports for a
row: requests/s, requests done, errors. h2load prints no percentiles: p50 and p99 are None
(the table says n/a) and the mean time per request goes in the row's note."""
from __future__ import annotations

import re
import shutil
import subprocess

from bench.wrk import WrkError, WrkResult, WrkSettings

PACKAGE = "nghttp2-client"
_FINISHED = re.compile(r"^finished in [\d.]+s, ([\d.]+) req/s", re.M)
_REQUESTS = re.compile(r"^requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, \d+ failed, "
                       r"(\d+) errored, (\d+) timeout", re.M)
_STATUSES = re.compile(r"^status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
_MEAN = re.compile(r"^time for request:\s+\S+\s+\S+\s+(\S+)", re.M)
_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.M)


def binary() -> str | None:
    return shutil.which("h2load")


def parse(output: str) -> tuple[WrkResult, str]:
    """(result, mean time per request as h2load prints it) from h2load's report; WrkError
    when a figure is missing or the connection did not speak HTTP/2."""
    protocol = _PROTOCOL.search(output)
    if protocol is None or protocol.group(1) != "h2":
        raise WrkError(f"h2load did not speak HTTP/2 (ALPN: {protocol.group(1) if protocol else 'none'})")
    finished, requests, statuses = _FINISHED.search(output), _REQUESTS.search(output), _STATUSES.search(output)
    if finished is None or requests is None or statuses is None:
        raise WrkError(f"cannot read h2load output:\n{output}")
    done, errored, timeout = (int(n) for n in requests.groups())
    mean = _MEAN.search(output)
    result = WrkResult(requests_per_sec=float(finished.group(1)), p50_ms=None, p99_ms=None, requests=done,
                       non_2xx=sum(int(n) for n in statuses.groups()), socket_errors=(0, errored, 0, timeout))
    return result, mean.group(1) if mean else "?"


def run(url: str, settings: WrkSettings, duration: float | None = None) -> tuple[WrkResult, str]:
    """One h2load run against `url` with wrk's threads and connections, one stream at a time
    per connection (as many requests in flight as the HTTP/1.1 rows)."""
    found = binary()
    if found is None:
        raise WrkError(f"h2load not found: install the Debian package {PACKAGE}")
    seconds = settings.duration if duration is None else duration
    args = [found, f"-t{settings.threads}", f"-c{settings.connections}", "-m1", f"-D{seconds:g}", url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise WrkError(f"h2load exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    return parse(done.stdout)
