"""The servers of the benchmark: generated configs in a work directory, foreground processes.

Every factory writes its config under `workdir`, starts the process in its own session (so
stopping kills the whole group: nginx/php-fpm workers, daphne children) and returns a
started `Server`. Ports are picked free at run time. Nothing is daemonised.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.processes import REPO, Process
from tests.support.waiting import free_port, port_open, wait_for

HOST = "127.0.0.1"
PHP_DIR = REPO / "bench" / "php"
PHP_SCRIPT = "hello.php"
DIRECTOR_NAME = "bench"
PHP_CHILDREN = 4
# nginx's cache of idle FastCGI connections. With fastcgi_keep_conn a php-fpm child stays bound
# to one connection while nginx keeps it, so requests on other connections wait (README, row 6).
NGINX_FASTCGI_KEEPALIVE = 8
START_TIMEOUT = 20.0
DIRECTOR_READY_TIMEOUT = 60.0

# Debian package of every external binary, for the "not installed" message.
BINARIES = {"nginx": "nginx", "haproxy": "haproxy", "wrk": "wrk", "php-fpm8.2": "php8.2-fpm", "caddy": "caddy"}

# The FastCGI params nginx sends (Debian's /etc/nginx/fastcgi_params), inlined so the config
# does not depend on the system's nginx directory.
NGINX_FASTCGI_PARAMS = {
    "QUERY_STRING": "$query_string", "REQUEST_METHOD": "$request_method",
    "CONTENT_TYPE": "$content_type", "CONTENT_LENGTH": "$content_length",
    "SCRIPT_NAME": "$fastcgi_script_name", "REQUEST_URI": "$request_uri",
    "DOCUMENT_URI": "$document_uri", "DOCUMENT_ROOT": "$document_root",
    "SERVER_PROTOCOL": "$server_protocol", "REQUEST_SCHEME": "$scheme",
    "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "nginx/$nginx_version",
    "REMOTE_ADDR": "$remote_addr", "REMOTE_PORT": "$remote_port",
    "SERVER_ADDR": "$server_addr", "SERVER_PORT": "$server_port", "SERVER_NAME": "$server_name",
    "SCRIPT_FILENAME": "$document_root$fastcgi_script_name",
}


class ServerError(RuntimeError):
    """A server did not start or did not answer; the message names the cause."""


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)


def missing_binaries() -> list[str]:
    """One line per missing binary, naming the Debian package that provides it."""
    return [f"{name} not found: install the Debian package {package} (apt-get install {package})"
            for name, package in BINARIES.items() if find_binary(name) is None]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


@dataclass
class Server:
    """One started process listening on HOST:port; `path` is what the benchmark requests."""

    name: str
    port: int
    process: Process
    path: str = "/"
    logs: list[Path] = field(default_factory=list)
    scheme: str = "http"  # "https": a TLS front (its test certificate is not verified)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}{self.path}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def failure(self) -> str:
        """The last line the server wrote (its output, then its own log files)."""
        texts = [self.process.output()] + [p.read_text(errors="replace") for p in self.logs if p.exists()]
        lines = [last_line(t) for t in texts if t.strip()]
        return f"{self.name}: " + (" | ".join(lines) if lines else "no output")

    def wait_listening(self, timeout: float = START_TIMEOUT) -> None:
        try:
            wait_for(lambda: not self.process.alive() or port_open(HOST, self.port), timeout,
                     what=f"{self.name} to listen on {self.port}")
        except AssertionError as exc:
            raise ServerError(f"{exc}; {self.failure()}") from None
        if not self.process.alive():
            raise ServerError(f"exited with status {self.process.proc.returncode}; {self.failure()}")

    def get(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """One GET of `url`: (status, body); status 0 when the connection failed."""
        context = ssl._create_unverified_context() if self.scheme == "https" else None
        try:
            with urllib.request.urlopen(self.url, timeout=timeout, context=context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def wait_ok(self, timeout: float = START_TIMEOUT) -> bytes:
        """Poll GET `url` until it answers 200; return the body."""
        answer: list[tuple[int, bytes]] = []

        def ok() -> bool:
            if not self.process.alive():
                return True
            answer[:] = [self.get()]
            return answer[0][0] == 200

        try:
            wait_for(ok, timeout, interval=0.1, what=f"a 200 from {self.url}")
        except AssertionError:
            status = answer[0][0] if answer else "none"
            raise ServerError(f"no 200 from {self.url} within {timeout:g}s (last status {status}); "
                              f"{self.failure()}") from None
        if not self.process.alive():
            raise ServerError(f"exited with status {self.process.proc.returncode}; {self.failure()}")
        return answer[0][1]

    def stop(self) -> None:
        self.process.stop()


def _start(workdir: Path, name: str, args: list, port: int, path: str = "/", env=None,
           logs: tuple[str, ...] = (), listen_timeout: float = START_TIMEOUT) -> Server:
    process = Process(args, workdir / f"{name}.out", env=env)
    server = Server(name, port, process, path, [workdir / log for log in logs])
    try:
        server.wait_listening(listen_timeout)
    except BaseException:
        server.stop()
        raise
    return server


# --- nginx -------------------------------------------------------------------------------

def _nginx(workdir: Path, name: str, server_block: str, http_extra: str = "") -> Server:
    """nginx in the foreground, one worker, no access log, every path under `workdir`."""
    port = free_port(HOST)
    prefix = workdir / name
    prefix.mkdir()
    temp_paths = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = f"""daemon off;
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
{temp_paths}
{http_extra}
    server {{
        listen {HOST}:{port};
{server_block}
    }}
}}
"""
    (prefix / "nginx.conf").write_text(config)
    args = [find_binary("nginx"), "-p", prefix, "-c", prefix / "nginx.conf", "-e", prefix / "error.log"]
    return _start(workdir, name, args, port, logs=(f"{name}/error.log",))


def nginx_backend(workdir: Path, body: bytes, static_root: Path | None = None) -> Server:
    """The one fast HTTP backend: `body` at every path, or files under `static_root`."""
    if static_root is not None:
        block = f"        root {static_root};\n        sendfile on;"
    else:
        text = body.decode("ascii")
        if any(c in text for c in "\"\\$\n"):
            raise ValueError("benchmark body must be plain text without quotes, $ or newlines")
        block = f'        location / {{ default_type text/plain; return 200 "{text}"; }}'
    return _nginx(workdir, "nginx-backend", block)


def nginx_proxy(workdir: Path, backend_port: int) -> Server:
    """nginx proxy_pass with a keep-alive upstream pool (no spooling of large bodies to disk)."""
    upstream = f"    upstream backend {{ server {HOST}:{backend_port}; keepalive 32; }}"
    block = """        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }"""
    return _nginx(workdir, "nginx-proxy", block, upstream)


def nginx_fastcgi(workdir: Path, fpm_port: int, root: Path = PHP_DIR) -> Server:
    """nginx fastcgi_pass with kept-alive FastCGI connections to php-fpm."""
    upstream = f"    upstream php {{ server {HOST}:{fpm_port}; keepalive {NGINX_FASTCGI_KEEPALIVE}; }}"
    params = "\n".join(f"            fastcgi_param {k} {v};" for k, v in NGINX_FASTCGI_PARAMS.items())
    block = f"""        root {root};
        location / {{
            fastcgi_pass php;
            fastcgi_keep_conn on;
{params}
        }}"""
    server = _nginx(workdir, "nginx-fastcgi", block, upstream)
    server.path = f"/{PHP_SCRIPT}"
    return server


# --- HAProxy, php-fpm, daphne --------------------------------------------------------------

def haproxy(workdir: Path, backend_port: int, tls: tuple[str, str] | None = None, alpn: str = "http/1.1") -> Server:
    """HAProxy, one thread, HTTP mode, server connections kept alive and reused; with `tls`
    (cert, key) it terminates TLS (1.2+, ALPN `alpn`: "h2,http/1.1" for HTTP/2) on its front."""
    port = free_port(HOST)
    bind = f"{HOST}:{port}"
    if tls is not None:
        pem = workdir / "haproxy-front.pem"
        pem.write_bytes(Path(tls[0]).read_bytes() + Path(tls[1]).read_bytes())
        bind += f" ssl crt {pem} ssl-min-ver TLSv1.2 alpn {alpn}"
    config = f"""global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend bench
    bind {bind}
    default_backend nginx

backend nginx
    server backend {HOST}:{backend_port}
"""
    name = ("haproxy-h2" if "h2" in alpn else "haproxy-tls") if tls else "haproxy"
    path = workdir / f"{name}.cfg"
    path.write_text(config)
    server = _start(workdir, name, [find_binary("haproxy"), "-db", "-f", path], port)
    server.scheme = "https" if tls else "http"
    return server


def caddy(workdir: Path, backend_port: int) -> Server:
    """Caddy's reverse_proxy on one OS thread of Go code (GOMAXPROCS=1), no admin API, no TLS."""
    port = free_port(HOST)
    path = workdir / "Caddyfile"
    path.write_text(f"""{{
    admin off
    auto_https off
}}

http://{HOST}:{port} {{
    reverse_proxy {HOST}:{backend_port}
}}
""")
    env = dict(os.environ, GOMAXPROCS="1", HOME=str(workdir), XDG_DATA_HOME=str(workdir), XDG_CONFIG_HOME=str(workdir))
    args = [find_binary("caddy"), "run", "--config", path, "--adapter", "caddyfile"]
    return _start(workdir, "caddy", args, port, env=env)


def php_fpm(workdir: Path, name: str = "php-fpm") -> Server:
    """One static php-fpm8.2 pool of PHP_CHILDREN children on a loopback TCP port, in the foreground."""
    port = free_port(HOST)
    config = f"""[global]
pid = {workdir}/{name}.pid
error_log = {workdir}/{name}.log
daemonize = no

[bench]
listen = {HOST}:{port}
pm = static
pm.max_children = {PHP_CHILDREN}
"""
    path = workdir / f"{name}.conf"
    path.write_text(config)
    args = [find_binary("php-fpm8.2"), "-F", "-y", path]
    if os.geteuid() == 0:
        args.append("-R")  # allow the pool to run as root (no pool user configured)
    return _start(workdir, name, args, port, logs=(f"{name}.log",))


def daphne_hello(workdir: Path) -> Server:
    """daphne serving bench/hello_asgi.py: the ceiling of the server Director runs on."""
    port = free_port(HOST)
    args = [sys.executable, "-m", "daphne", "-b", HOST, "-p", port, "-v", "0",
            "bench.hello_asgi:application"]
    return _start(workdir, "daphne-hello", args, port)


# --- Director ------------------------------------------------------------------------------

RUNPROXY = REPO / "balancer" / "management" / "commands" / "runproxy.py"
FASTCGI_UPSTREAM = REPO / "proxy" / "upstream" / "fastcgi.py"


def _toml_table(values: dict) -> str:
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())


def director_config(backend_url: str, director: dict | None = None, route: dict | None = None,
                    capacity: int = 0, health_check_interval: float = 2) -> str:
    """A config with the static director `bench` (one backend) and a route `/` passing to it."""
    return f"""[directors.{DIRECTOR_NAME}]
{_toml_table(director or {})}
backends = {{ b1 = {{ url = {json.dumps(backend_url)}, capacity = {capacity}, health_check_interval = {health_check_interval:g} }} }}

[[routes]]
path = "/"
pass = {json.dumps(DIRECTOR_NAME)}
{_toml_table(route or {})}
"""


def director(workdir: Path, name: str, config: str, path: str = "/", workers: int = 1,
             tls: tuple[str, str] | None = None, wrapper: tuple[str, ...] = (), patience: float = 1.0) -> Server:
    """`manage.py migrate`, then `runproxy` (health monitor on) with `config`; `workers` > 1
    needs Redis (REDIS_URL, default 127.0.0.1:6379); with `tls` (cert, key) the traffic
    listener is `tls://`. `wrapper` runs it under another program (valgrind), which
    `patience` times longer start-up timeouts allow for.

    Returns once a GET of `path` through it answers 200, i.e. the backend is online.
    """
    if not RUNPROXY.exists():
        raise ServerError(f"the runproxy command does not exist yet ({RUNPROXY.relative_to(REPO)})")
    home = workdir / name
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DIRECTOR_CONFIG")}
    env.update(DATABASE_URL=f"sqlite:///{home}/bench.sqlite3", DIRECTOR_DATA_DIR=str(home),
               PYTHONUNBUFFERED="1")
    if workers > 1:
        env["REDIS_URL"] = _reachable_redis()
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if migrate.returncode != 0:
        raise ServerError(f"manage.py migrate failed: {last_line(migrate.stderr + migrate.stdout)}")
    if tls is not None:
        config = f"[proxy]\ntls_certificates = [{{ cert = {json.dumps(tls[0])}, key = {json.dumps(tls[1])} }}]\n\n{config}"
    (home / "director.toml").write_text(config)
    port, admin_port = free_port(HOST), free_port(HOST)
    listen = f"tls://{HOST}:{port}" if tls else f"{HOST}:{port}"
    args = [*wrapper, sys.executable, "manage.py", "runproxy", "--config", home / "director.toml",
            "--listen", listen, "--admin-listen", f"{HOST}:{admin_port}", "--workers", str(workers)]
    server = _start(workdir, name, args, port, path, env=env, listen_timeout=START_TIMEOUT * patience)
    server.scheme = "https" if tls else "http"
    try:
        server.wait_ok(DIRECTOR_READY_TIMEOUT * patience)
    except BaseException:
        server.stop()
        raise
    return server


def _reachable_redis() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or HOST, parts.port or 6379), timeout=2).close()
    except OSError as exc:
        raise ServerError(f"--workers needs Redis, none at {url}: {exc}") from None
    return url


def director_http(workdir: Path, backend_port: int, workers: int = 1, access_log: bool = False) -> Server:
    """`access_log`: with `[proxy] access_log` to a file in the row's directory (combined)."""
    name = f"director-http-{workers}" + ("-logged" if access_log else "")
    config = director_config(f"http://{HOST}:{backend_port}")
    if access_log:
        config = f'[proxy]\naccess_log = {json.dumps(str(workdir / name / "access.log"))}\n\n' + config
    return director(workdir, name, config, workers=workers)


BUCKETS_CAPACITY = 256


def director_buckets(workdir: Path, backend_port: int) -> Server:
    """The 1-worker row's director with two buckets (SPEC §15) and its route putting every
    request in one of them: each request takes and gives back a token on its way. The
    backend has a capacity (BUCKETS_CAPACITY, above wrk's connections: nobody waits), since
    without one the root is unlimited and no token is counted."""
    config = director_config(f"http://{HOST}:{backend_port}", route={"bucket": "gold"}, capacity=BUCKETS_CAPACITY)
    config += f"""
[directors.{DIRECTOR_NAME}.buckets]
gold = {{ rate = 0.75, ceil = 1.0 }}
bronze = {{ rate = 0.25 }}
"""
    return director(workdir, "director-buckets", config)


def director_cached(workdir: Path, backend_port: int) -> Server:
    """The response cache on (SPEC §15), fresh for an hour: wrk's one URL is a hit after the first."""
    settings = {"cache_enabled": True, "cache_default_ttl": 3600}
    return director(workdir, "director-cached", director_config(f"http://{HOST}:{backend_port}", settings))


def director_https(workdir: Path, backend_port: int, tls: tuple[str, str], name: str = "director-https") -> Server:
    """A TLS listener: ALPN offers h2 and http/1.1, so one config serves both TLS rows."""
    return director(workdir, name, director_config(f"http://{HOST}:{backend_port}"), tls=tls)


def test_certificate(workdir: Path) -> tuple[str, str]:
    """(cert, key) for 127.0.0.1 and localhost, made here (EC P-256, as the tests make them)."""
    from tests.support.certs import make_certs

    return make_certs(workdir / "certs").localhost


def fastcgi_config(fpm_port: int, root: Path = PHP_DIR) -> str:
    """The bench director on php-fpm at `fpm_port`, health-checked with the bench script."""
    health = {"health_check_request_path": f"/{PHP_SCRIPT}",
              "health_check_fcgi_script_filename": str(root / PHP_SCRIPT)}
    # capacity = pm.max_children, for the node whatever the number of workers: php-fpm ties
    # a child to each open connection, so more concurrent requests than children only wait in
    # its backlog; Director queues them instead.
    return director_config(f"fastcgi://{HOST}:{fpm_port}", health, {"document_root": str(root)},
                           capacity=PHP_CHILDREN)


def director_fastcgi(workdir: Path, fpm_port: int, root: Path = PHP_DIR, workers: int = 1) -> Server:
    if not FASTCGI_UPSTREAM.exists():
        raise ServerError(f"FastCGI support has not landed yet ({FASTCGI_UPSTREAM.relative_to(REPO)})")
    return director(workdir, f"director-fastcgi-{workers}", fastcgi_config(fpm_port, root), f"/{PHP_SCRIPT}",
                    workers=workers)
