"""Shared fixtures. Keep this file small: test-specific helpers live in their modules."""
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """SQLite tests use a private file database, not shared-cache memory.

    Threads of `transaction=True` tests then get real SQLite locking (busy timeout,
    BEGIN IMMEDIATE) instead of "table is locked" errors, as in production.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("sqlite3"):
        yield
        return
    directory = Path(tempfile.mkdtemp(prefix="director-testdb-"))
    database.setdefault("TEST", {})["NAME"] = str(directory / "test.sqlite3")
    yield
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Tests create users; the production hasher is deliberately slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
