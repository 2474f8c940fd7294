"""Run a real `manage.py runproxy` for integration tests.

The database is a SQLite file per instance, copied from a template migrated once per test
session (migrating takes seconds; copying takes milliseconds). `DATABASE_URL` may point at
PostgreSQL instead (`Director(database_url=...)`).
"""
from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from tests.support.processes import REPO, Process
from tests.support.waiting import free_port, wait_for

_TEMPLATE: Path | None = None


def _template_db() -> Path:
    """A migrated SQLite database, made once per session."""
    global _TEMPLATE
    if _TEMPLATE is None or not _TEMPLATE.exists():
        directory = Path(tempfile.mkdtemp(prefix="director-template-"))
        path = directory / "template.sqlite3"
        env = base_env(directory, f"sqlite:///{path}")
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env,
                       check=True, timeout=120)
        _TEMPLATE = path
    return _TEMPLATE


def base_env(data_dir: Path, database_url: str) -> dict:
    env = dict(os.environ)
    env.update({
        "DIRECTOR_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "DJANGO_SECRET_KEY": "tests-only-secret",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("DIRECTOR_CONFIG", None)
    env.pop("REDIS_URL", None)
    return env


class Director:
    """A runproxy process with its own config, database and ports."""

    entry = ["manage.py"]  # what runs `runproxy`: a module that acts as manage.py

    def __init__(self, tmp_path: Path, config: str, *, extra_args=(), database_url: str | None = None, env=None):
        self.dir = Path(tmp_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.admin_port = free_port()
        self.config_path = self.dir / "director.toml"
        self.config_path.write_text(textwrap.dedent(config))
        if database_url is None:
            db = self.dir / "db.sqlite3"
            shutil.copy(_template_db(), db)
            database_url = f"sqlite:///{db}"
        self.env = base_env(self.dir, database_url)
        if env:
            self.env.update(env)
        self.extra_args = list(extra_args)
        self.listen_flags = True  # False: the config file names the listeners (reload tests)
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, wait: bool = True) -> "Director":
        listen = ["--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin_port}"]
        args = [sys.executable, *self.entry, "runproxy", "--config", self.config_path,
                *(listen if self.listen_flags else []), *self.extra_args]
        self.process = Process(args, self.dir / "runproxy.log", env=self.env)
        if wait:
            try:
                wait_for(lambda: self._up(), 30, what="runproxy to listen")
            except AssertionError:
                raise AssertionError("runproxy did not start:\n" + self.output()) from None
        return self

    def _up(self) -> bool:
        if not self.process.alive():
            raise AssertionError("runproxy exited:\n" + self.output())
        from tests.support.waiting import port_open

        return port_open("127.0.0.1", self.port) and port_open("127.0.0.1", self.admin_port)

    def stop(self) -> int:
        return self.process.stop() if self.process else 0

    def output(self) -> str:
        return self.process.output() if self.process else ""

    def manage(self, *args, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run another manage.py command against the same database (another process)."""
        return subprocess.run([sys.executable, "manage.py", *map(str, args)], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def shell(self, code: str) -> str:
        """Run Python in `manage.py shell` against this instance's database; returns stdout."""
        result = self.manage("shell", "--no-imports", "-c", textwrap.dedent(code))
        if result.returncode != 0:
            raise AssertionError(f"manage.py shell failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def request(self, method: str = "GET", path: str = "/", body: bytes | None = None, headers=None,
                timeout: float = 30, port: int | None = None):
        """(status, headers dict with lower-case names, body) of one request on a new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    def get(self, path: str = "/", **kwargs):
        return self.request("GET", path, **kwargs)
