"""A TLS listener under `runproxy --workers 2` (PostgreSQL and Redis): every worker serves
it, HTTP/1.1 and HTTP/2, and a reload (SIGHUP to the supervisor) replaces the workers,
which then present the new certificate."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

from tests.integration.test_proxy_tls_listener import https_get, peer_names
from tests.integration.test_workers import served_by_workers, worker_pids
from tests.support.backends import http_backend
from tests.support.certs import make_certs, make_leaf
from tests.support.config_files import app_config
from tests.support.director import Director
from tests.support.processes import require_binary
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import free_port, wait_for
from tests.support.workers import every_worker_sees


def test_two_workers_serve_tls_and_reload_the_certificate(tmp_path):
    made = make_certs(tmp_path / "certs")
    other = make_leaf(tmp_path / "certs", "other", ["other.test"])
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(made.localhost[0], cert)
    shutil.copy(made.localhost[1], key)
    tls_port = free_port()
    with postgres_database() as database, http_backend("b1") as backend:
        config = app_config(proxy={"tls_certificates": [{"cert": str(cert), "key": str(key)}]}, b1=backend.port)
        director = Director(tmp_path / "proxy", config, database_url=database, env={"REDIS_URL": redis_url()},
                            extra_args=["--workers", "2", "--listen", f"tls://127.0.0.1:{tls_port}"])
        assert director.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
        director.start()
        try:
            wait_for(lambda: len(worker_pids(director.process.pid)) == 2, 20, what="two workers")
            wait_for(lambda: every_worker_sees(director, 2, {"b1": "online"}), 30,
                     what="every worker to see the backend online")
            assert all(https_get(tls_port)[2] == b"b1" for _ in range(30))
            curl = require_binary("curl", "curl")
            h2 = subprocess.run([curl, "--http2", "-k", "-sS", "-w", r"\n%{http_version}",
                                 f"https://127.0.0.1:{tls_port}/"], capture_output=True, timeout=30)
            assert h2.stdout == b"b1\n2", h2.stderr
            wait_for(lambda: len([n for n in served_by_workers(director).values() if n]) == 2, 20,
                     what="requests served by both workers")
            shutil.copy(other[0], cert)
            shutil.copy(other[1], key)
            os.kill(director.process.pid, signal.SIGHUP)
            wait_for(lambda: all(peer_names(tls_port, "x") == ("other.test",) for _ in range(6)), 60,
                     what="every worker presenting the new certificate")
            assert https_get(tls_port)[2] == b"b1"
        finally:
            director.stop()
