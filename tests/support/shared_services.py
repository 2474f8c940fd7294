"""PostgreSQL and Redis for tests about shared state: skipped locally when absent, a failure
in CI (CI=true) where they always run."""
from __future__ import annotations

import contextlib
import os
import uuid
from urllib.parse import urlsplit

import pytest

from tests.support.waiting import port_open

POSTGRES_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _require(host: str, port: int, what: str) -> None:
    if port_open(host, port):
        return
    message = f"{what} not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    parts = urlsplit(url)
    _require(parts.hostname or "127.0.0.1", parts.port or 6379, "Redis")
    return url


@contextlib.contextmanager
def postgres_database():
    """A fresh, empty PostgreSQL database for the duration; yields its URL."""
    import psycopg

    parts = urlsplit(POSTGRES_ADMIN)
    _require(parts.hostname, parts.port, "PostgreSQL")
    name = f"director_shared_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
