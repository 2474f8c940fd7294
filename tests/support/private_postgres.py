"""A PostgreSQL server of the test's own, to stop and start (never the machine's).

`private_postgres()` runs initdb into a temporary directory and starts a server on a free
loopback port with trust authentication; `stop()` and `start()` take it away and bring it
back with its data. As root the server runs as the `postgres` user (PostgreSQL refuses
root). Skips locally without PostgreSQL's binaries; fails in CI, where they must exist.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.waiting import free_port, port_open, wait_for


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        message = "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return Path(found[-1]).parent


class PrivatePostgres:
    def __init__(self, directory: Path):
        self.bin = _binaries()
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args) -> None:
        command = [str(self.bin / tool), *map(str, args)]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=self.directory)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory} -c fsync=off"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", self.directory / "postgres.log", "-w", "start")
        wait_for(lambda: port_open("127.0.0.1", self.port), 30, what="the private PostgreSQL to listen")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def private_postgres():
    directory = Path(tempfile.mkdtemp(prefix="director-pg-"))
    server = None
    try:
        server = PrivatePostgres(directory)
        server.start()
        yield server
    finally:
        if server is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                server.stop()
        shutil.rmtree(directory, ignore_errors=True)
