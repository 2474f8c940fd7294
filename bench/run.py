"""Load benchmark: Director against HAProxy, nginx and daphne's own ceiling (`make bench`).

Every row runs the same wrk settings against its server after a warm-up; the table and the
ratios go to stdout and to bench/results/latest.md. Director rows that cannot run yet say
"unavailable: <reason>"; the exit status is non-zero only when the run itself broke.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import daphne  # noqa: E402

from bench import h2load, servers, slowreader, wrk  # noqa: E402
from bench.cpu import CpuTime, MachineCpu  # noqa: E402
from bench.hello_asgi import BODY  # noqa: E402
from bench.rss import PeakRss  # noqa: E402

RESULTS = REPO / "bench" / "results" / "latest.md"
WARMUP_SECONDS = 2.0
STEAL_NOTED = 0.02  # a row whose CPUs the hypervisor took this share of says so under the table
# What makes one row fail (or be unavailable) without stopping the others.
ROW_ERRORS = (servers.ServerError, wrk.WrkError, subprocess.SubprocessError, OSError)


@dataclass
class Row:
    key: str
    label: str
    result: wrk.WrkResult | None = None
    peak_mb: float | None = None
    cpu_us_per_request: float | None = None  # the server's utime+stime / requests served
    machine_us_per_request: float | None = None  # every CPU's busy time / requests served
    stolen_share: float = 0.0  # of all CPU time during the run, what the hypervisor took
    problem: str = ""  # "unavailable: ..." or "failed: ..."; empty when measured
    note: str = ""


@dataclass(frozen=True)
class RowSpec:
    key: str
    label: str
    start: Callable[[], servers.Server]
    optional: bool = False  # a Director row: may be unavailable without failing the run
    stop_after: bool = True  # False for a server other rows still need
    http2: bool = False  # measured with h2load (HTTP/2 over TLS) instead of wrk


def _load(spec: RowSpec, url: str, settings: wrk.WrkSettings, row: Row, duration: float | None = None) -> wrk.WrkResult:
    """One run of the row's load generator; h2load's mean time per request goes in the note."""
    if not spec.http2:
        return wrk.run(url, settings, duration=duration)
    result, mean = h2load.run(url, settings, duration=duration)
    row.note = f"HTTP/2 (h2load, one stream per connection): mean time per request {mean}, no percentiles"
    return result


def with_h2load(start: Callable[[], servers.Server]) -> Callable[[], servers.Server]:
    """`start`, for a row measured with h2load: unavailable (not failed) without it."""
    def checked() -> servers.Server:
        if h2load.binary() is None:
            raise servers.ServerError(f"h2load not found: install the Debian package {h2load.PACKAGE}")
        return start()
    return checked


def measure(spec: RowSpec, settings: wrk.WrkSettings) -> Row:
    """Start the row's server, check it answers BODY, warm up, then run wrk sampling RSS."""
    row = Row(spec.key, spec.label)
    word = "unavailable" if spec.optional else "failed"
    print(f"-- {spec.label}", flush=True)
    try:
        server = spec.start()
    except ROW_ERRORS as exc:
        row.problem = f"{word}: {exc}"
        print(f"   {row.problem}", flush=True)
        return row
    try:
        body = server.wait_ok()
        if body != BODY:
            row.note = f"body differs from the backend's: {body[:60]!r}"
        _load(spec, server.url, settings, row, duration=WARMUP_SECONDS)
        with PeakRss(server.pid) as rss, CpuTime(server.pid) as cpu, MachineCpu() as machine:
            row.result = _load(spec, server.url, settings, row)
        row.peak_mb = rss.peak_mb
        if row.result.requests:
            row.cpu_us_per_request = cpu.seconds / row.result.requests * 1e6
            row.machine_us_per_request = machine.seconds / row.result.requests * 1e6
        row.stolen_share = machine.stolen_share
        print(f"   {row.result.requests_per_sec:,.0f} req/s, p99 {_ms(row.result.p99_ms)} ms, "
              f"{row.cpu_us_per_request or 0:.1f} µs CPU/request", flush=True)
    except ROW_ERRORS as exc:
        row.problem = f"{word}: {exc}"
        print(f"   {row.problem}", flush=True)
    finally:
        if spec.stop_after:
            server.stop()
    return row


def row_specs(workdir: Path, stack: contextlib.ExitStack) -> list[RowSpec]:
    """The rows in order; shared servers start once and stop with `stack`."""
    shared: dict[str, servers.Server] = {}

    def once(name: str, start: Callable[[], servers.Server]) -> servers.Server:
        if name not in shared:
            shared[name] = start()
            stack.callback(shared[name].stop)
        return shared[name]

    def backend() -> servers.Server:
        return once("backend", lambda: servers.nginx_backend(workdir, BODY))

    def fpm(owner: str) -> servers.Server:
        """A php-fpm pool per front (nginx keeps FastCGI connections that hold its children)."""
        return once(f"php-fpm-{owner}", lambda: servers.php_fpm(workdir, f"php-fpm-{owner}"))

    made: list[tuple[str, str]] = []

    def certificate() -> tuple[str, str]:
        if not made:
            made.append(servers.test_certificate(workdir))
        return made[0]

    return [
        RowSpec("direct", "direct → nginx backend", backend, stop_after=False),
        RowSpec("haproxy", "HAProxy → nginx", lambda: servers.haproxy(workdir, backend().port)),
        RowSpec("nginx", "nginx proxy_pass → nginx", lambda: servers.nginx_proxy(workdir, backend().port)),
        RowSpec("caddy", "Caddy reverse_proxy (GOMAXPROCS=1) → nginx",
                lambda: servers.caddy(workdir, backend().port)),
        RowSpec("director", "Director (1 worker) → nginx",
                lambda: servers.director_http(workdir, backend().port), optional=True),
        RowSpec("director-2", "Director (2 workers, Redis) → nginx",
                lambda: servers.director_http(workdir, backend().port, workers=2), optional=True),
        RowSpec("daphne", "daphne hello-world (ceiling)", lambda: servers.daphne_hello(workdir)),
        RowSpec("nginx-fastcgi", "nginx fastcgi_pass → php-fpm",
                lambda: servers.nginx_fastcgi(workdir, fpm("nginx").port)),
        RowSpec("director-fastcgi", "Director (1 worker) → php-fpm",
                lambda: servers.director_fastcgi(workdir, fpm("director").port), optional=True),
        RowSpec("director-fastcgi-2", "Director (2 workers, Redis) → php-fpm",
                lambda: servers.director_fastcgi(workdir, fpm("director").port, workers=2), optional=True),
        RowSpec("haproxy-tls", "HAProxy, TLS front (HTTP/1.1 keep-alive) → nginx",
                lambda: servers.haproxy(workdir, backend().port, tls=certificate())),
        RowSpec("director-tls", "Director (1 worker), TLS front (HTTP/1.1 keep-alive) → nginx",
                lambda: servers.director_https(workdir, backend().port, certificate()), optional=True),
        RowSpec("haproxy-h2", "HAProxy, TLS front (HTTP/2) → nginx",
                with_h2load(lambda: servers.haproxy(workdir, backend().port, tls=certificate(), alpn="h2,http/1.1")),
                optional=True, http2=True),
        RowSpec("director-h2", "Director (1 worker), TLS front (HTTP/2) → nginx",
                with_h2load(lambda: servers.director_https(workdir, backend().port, certificate(), name="director-h2")),
                optional=True, http2=True),
        RowSpec("director-cached", "Director (1 worker), cache hit → nginx",
                lambda: servers.director_cached(workdir, backend().port), optional=True),
        RowSpec("director-logged", "Director (1 worker, access log to a file) → nginx",
                lambda: servers.director_http(workdir, backend().port, access_log=True), optional=True),
        RowSpec("director-buckets", "Director (1 worker, two buckets, route into one) → nginx",
                lambda: servers.director_buckets(workdir, backend().port), optional=True),
    ]


# --- report ---------------------------------------------------------------------------------

RATIOS = (
    ("Director / HAProxy (req/s)", "director", "haproxy", "requests_per_sec"),
    ("Director / nginx proxy_pass (req/s)", "director", "nginx", "requests_per_sec"),
    ("Director / Caddy (req/s; SPEC §14: >= 1.0)", "director", "caddy", "requests_per_sec"),
    ("Director / HAProxy (CPU per request; SPEC §14: <= 3.0)", "director", "haproxy", "cpu_us_per_request"),
    ("Director / daphne-hello (req/s)", "director", "daphne", "requests_per_sec"),
    ("Director 2 workers / 1 worker (req/s; SPEC §14: >= 1.6)", "director-2", "director", "requests_per_sec"),
    ("Director access log on / off (req/s; at most 10 % off)", "director-logged", "director", "requests_per_sec"),
    ("Director access log on / off (CPU per request)", "director-logged", "director", "cpu_us_per_request"),
    ("Director buckets on / off (req/s)", "director-buckets", "director", "requests_per_sec"),
    ("Director buckets on / off (CPU per request)", "director-buckets", "director", "cpu_us_per_request"),
    ("Director cache hit / Director proxied (CPU per request)", "director-cached", "director", "cpu_us_per_request"),
    ("Director cache hit / HAProxy proxied (req/s)", "director-cached", "haproxy", "requests_per_sec"),
    ("Director p99 / daphne-hello p99", "director", "daphne", "p99_ms"),
    ("TLS front: Director / HAProxy (req/s)", "director-tls", "haproxy-tls", "requests_per_sec"),
    ("TLS front: Director / HAProxy (CPU per request)", "director-tls", "haproxy-tls", "cpu_us_per_request"),
    ("TLS front: Director TLS / Director plain (req/s)", "director-tls", "director", "requests_per_sec"),
    ("HTTP/2: Director / HAProxy (req/s)", "director-h2", "haproxy-h2", "requests_per_sec"),
    ("HTTP/2: Director / HAProxy (CPU per request)", "director-h2", "haproxy-h2", "cpu_us_per_request"),
    ("Director HTTP/2 / HTTP/1.1, both over TLS (CPU per request)", "director-h2", "director-tls", "cpu_us_per_request"),
    ("php: Director / nginx fastcgi_pass (req/s; SPEC §14: >= 0.45)", "director-fastcgi", "nginx-fastcgi", "requests_per_sec"),
    ("php: Director 2 workers / nginx fastcgi_pass (req/s)", "director-fastcgi-2", "nginx-fastcgi", "requests_per_sec"),
)


def _figure(row: Row, attribute: str) -> float | None:
    if row.result is None:
        return None
    return row.cpu_us_per_request if attribute == "cpu_us_per_request" else getattr(row.result, attribute)


def ratio(rows: dict[str, Row], top: str, bottom: str, attribute: str) -> str:
    if top not in rows or bottom not in rows:  # --only left a row out
        return "n/a"
    a, b = _figure(rows[top], attribute), _figure(rows[bottom], attribute)
    if a is None or not b:
        return "n/a"
    return f"{a / b:.2f}"


def workers_ceiling(rows: dict[str, Row], many: str = "director-2", one: str = "director", workers: int = 2,
                    cpus: int | None = None) -> str:
    """The most `workers` workers could serve over one worker on this machine, from the
    `many` row's figures: all CPUs busy at its machine CPU per request, and no worker past
    one CPU at its own. The load generator and the backend share the CPUs: on a machine
    with as many CPUs as workers, the faster a worker, the lower this ceiling."""
    if many not in rows or one not in rows:
        return "n/a"
    row, single = rows[many], rows[one]
    if not (row.machine_us_per_request and row.cpu_us_per_request and single.result is not None
            and single.result.requests_per_sec):
        return "n/a"
    cpus = cpus or os.cpu_count() or 1
    most = min(cpus / row.machine_us_per_request, workers / row.cpu_us_per_request) * 1e6
    return f"{most / single.result.requests_per_sec:.2f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    lines = ["| row | req/s | p50 ms | p99 ms | CPU µs/request | machine CPU µs/request | errors | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for number, row in enumerate(rows, 1):
        label = f"{number}. {row.label}"
        if row.result is None:
            problem = row.problem.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {label} | {problem} | | | | | | |")
            continue
        r = row.result
        cpu, machine = (f"{value:.1f}" if value is not None else "n/a"
                        for value in (row.cpu_us_per_request, row.machine_us_per_request))
        lines.append(f"| {label} | {r.requests_per_sec:,.0f} | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | {cpu} "
                     f"| {machine} | {r.errors} | {row.peak_mb:.1f} |")
    by_key = {row.key: row for row in rows}
    lines += ["", "| ratio | value |", "|---|---:|"]
    for label, *keys in RATIOS:
        lines.append(f"| {label} | {ratio(by_key, *keys)} |")
        if keys[0] == "director-2":  # what the machine allows that ratio (see workers_ceiling)
            lines.append(f"| Director 2 workers / 1 worker: this machine's ceiling | {workers_ceiling(by_key)} |")
    notes = [f"- row {n}: {row.note}" for n, row in enumerate(rows, 1) if row.note]
    notes += [f"- row {n}: the hypervisor took {row.stolen_share:.0%} of the CPUs' time (steal)"
              for n, row in enumerate(rows, 1) if row.stolen_share >= STEAL_NOTED]
    notes += [f"- row {n} errors: {row.result.describe_errors()}"
              for n, row in enumerate(rows, 1) if row.result is not None and row.result.errors]
    return "\n".join(lines + ([""] + notes if notes else []))


def _version(args: list) -> str:
    """First line a binary prints for its version flag (nginx writes it to stderr)."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def header(settings: wrk.WrkSettings) -> str:
    versions = ", ".join([
        _version([servers.find_binary("nginx"), "-v"]),
        _version([servers.find_binary("haproxy"), "-v"]).split(" - ")[0],
        _version([servers.find_binary("php-fpm8.2"), "-v"]).split(" (")[0],
        "Caddy " + _version([servers.find_binary("caddy"), "version"]).split(" ")[0],
        f"daphne {daphne.__version__}", f"Python {platform.python_version()}",
    ])
    return (f"# Director benchmark, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n\n"
            f"wrk {' '.join(settings.args())} (after {WARMUP_SECONDS:g} s warm-up), "
            f"{os.cpu_count()} CPUs, {platform.machine()}; {versions}\n")


# --- entry point ----------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--slow-reader", action="store_true",
                        help="instead of the table: stream a 1 GiB body to a slow client, report RSS growth")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    parser.add_argument("--only", metavar="KEY[,KEY]", help="run only these rows (keys: direct, haproxy, "
                        "director, director-cached, director-buckets, ...); results are printed, latest.md is left alone")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.connections < args.threads or args.duration <= 0:
        parser.error("need threads >= 1, connections >= threads and duration > 0")
    return args


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = servers.missing_binaries()
    if missing:
        print("bench: cannot run:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    settings = wrk.WrkSettings(args.threads, args.connections, args.duration)
    workdir = Path(tempfile.mkdtemp(prefix="director-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            if args.slow_reader:
                return slowreader.main(workdir, stack)
            specs = row_specs(workdir, stack)
            if args.only:
                wanted = set(args.only.split(","))
                unknown = wanted - {spec.key for spec in specs}
                if unknown:
                    print(f"bench: no such row: {', '.join(sorted(unknown))}", file=sys.stderr)
                    return 2
                specs = [spec for spec in specs if spec.key in wanted]
            rows = [measure(spec, settings) for spec in specs]
        report = f"{header(settings)}\n{table(rows)}\n"
        print("\n" + report)
        if not args.only:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(report)
            print(f"written to {RESULTS.relative_to(REPO)}")
        return 1 if any(row.problem.startswith("failed") for row in rows) else 0
    except servers.ServerError as exc:  # a shared server (backend, php-fpm) did not start
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted, servers stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"bench: configs and logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
