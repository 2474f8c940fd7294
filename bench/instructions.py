"""Instructions per proxied request, counted by callgrind (`make instructions`).

CPU time per request moves by tens of per cent between runs on a shared VM; the number of
instructions a request costs does not, so it is how a change of a few per cent is told from
noise. Director (one worker) runs under `valgrind --tool=callgrind` with the nginx backend
of `make bench` (or php-fpm with `--php`); after a warm-up, N sequential GETs on one
kept-alive connection are counted, then an idle window of the same length, which is
subtracted (timers, health checks and the status publisher run in both). `--connections C`
sends them on C connections at once instead (with C above a backend's capacity, requests
wait in the director's queue).

Prints `instructions per request: 358.2k (requests 2,331M, idle 507M, N=5000)`.
"""
from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import servers  # noqa: E402
from bench.hello_asgi import BODY  # noqa: E402

WARM_UP = 300
VALGRIND_PATIENCE = 6.0  # start-up under callgrind is this many times slower
# What a browser sends besides Host (`--browser`): the header rules and the head reader
# see ten fields instead of one.
BROWSER_FIELDS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.5", "Accept-Encoding": "gzip, deflate, br", "Referer": "http://bench/",
    "Cookie": "a=1; b=2", "Cache-Control": "no-cache", "Upgrade-Insecure-Requests": "1", "Connection": "keep-alive",
}


def requests(port: int, path: str, count: int, fields: dict) -> None:
    """`count` GETs of `path` on one connection, each read to its end; any other status than
    200 stops the measurement (a backend gone offline would count 503s)."""
    connection = http.client.HTTPConnection(servers.HOST, port, timeout=60)
    try:
        for _ in range(count):
            connection.request("GET", path, headers={"Host": "bench", **fields})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"instructions: GET {path} answered {response.status}")
    finally:
        connection.close()


def concurrent_requests(port: int, path: str, count: int, fields: dict, connections: int) -> None:
    """`count` GETs spread over `connections` connections sending at the same time."""
    if connections == 1:
        requests(port, path, count, fields)
        return
    shares = [count // connections + (i < count % connections) for i in range(connections)]
    with ThreadPoolExecutor(connections) as pool:
        for done in [pool.submit(requests, port, path, share, fields) for share in shares]:
            done.result()


def total_instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"instructions: no total in {dump}")


def dump(pid: int, workdir: Path, label: str) -> Path:
    """Write callgrind's counts since the last zeroing to a new file, zero them, return it."""
    before = set(workdir.glob(f"callgrind.{pid}.*"))
    subprocess.run(["callgrind_control", "--dump=" + label, str(pid)], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "--zero", str(pid)], check=True, capture_output=True)
    (new,) = set(workdir.glob(f"callgrind.{pid}.*")) - before
    return new


def measure(workdir: Path, count: int, php: bool, fields: dict, connections: int = 1) -> str:
    wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/callgrind.%p")
    started: list[servers.Server] = []
    try:
        if php:
            fpm = servers.php_fpm(workdir)
            started.append(fpm)
            config = servers.fastcgi_config(fpm.port)
            path = f"/{servers.PHP_SCRIPT}"
        else:
            backend = servers.nginx_backend(workdir, BODY)
            started.append(backend)
            config = servers.director_config(f"http://{servers.HOST}:{backend.port}")
            path = "/"
        proxy = servers.director(workdir, "director-callgrind", config, path, wrapper=wrapper,
                                 patience=VALGRIND_PATIENCE)
        started.append(proxy)
        requests(proxy.port, path, WARM_UP, fields)
        subprocess.run(["callgrind_control", "--zero", str(proxy.pid)], check=True, capture_output=True)
        began = time.monotonic()
        concurrent_requests(proxy.port, path, count, fields, connections)
        busy = dump(proxy.pid, workdir, "requests")
        time.sleep(time.monotonic() - began)
        idle = dump(proxy.pid, workdir, "idle")
    finally:
        for server in reversed(started):
            server.stop()
    busy_total, idle_total = total_instructions(busy), total_instructions(idle)
    per_request = (busy_total - idle_total) / count
    return (f"instructions per request: {per_request / 1000:.1f}k "
            f"(requests {busy_total / 1e6:,.0f}M, idle {idle_total / 1e6:,.0f}M, N={count}"
            + (f", {connections} connections)" if connections > 1 else ")"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=5000, help="requests counted (default 5000)")
    parser.add_argument("--php", action="store_true", help="through php-fpm (FastCGI) instead of nginx")
    parser.add_argument("--browser", action="store_true", help="send ten browser-like request fields")
    parser.add_argument("--connections", type=int, default=1, help="connections sending at once (default 1)")
    args = parser.parse_args(argv)
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    missing = [name for name in ("valgrind", "callgrind_control", "php-fpm8.2" if args.php else "nginx")
               if servers.find_binary(name) is None]
    if missing:
        print(f"instructions: not installed: {', '.join(missing)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="director-instructions-") as workdir:
        print(measure(Path(workdir), args.requests, args.php, BROWSER_FIELDS if args.browser else {},
                      args.connections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
