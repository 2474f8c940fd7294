"""The service tests again on PostgreSQL (row locks there are real `SELECT … FOR UPDATE`).

When the suite already runs on PostgreSQL (DATABASE_URL=postgres://…) the modules below ran
on it directly and this re-run is skipped.
"""
import os
import subprocess
import sys

import pytest

from tests.support.processes import REPO
from tests.support.waiting import port_open

MODULES = ["tests/integration/test_services.py", "tests/integration/test_services_concurrency.py",
           "tests/integration/test_services_sync.py", "tests/integration/test_services_sync_routes.py",
           "tests/integration/test_api_routes.py", "tests/integration/test_api_backends_bulk.py",
           "tests/integration/test_health_history.py"]
PG_HOST, PG_PORT = "127.0.0.1", 5432


def test_service_tests_pass_on_postgresql(tmp_path):
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("the suite itself runs on PostgreSQL")
    if not port_open(PG_HOST, PG_PORT):
        message = f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # pytest-django creates (and drops) test_<name>; the pid keeps parallel runs apart.
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@{PG_HOST}:{PG_PORT}/director_svc_{os.getpid()}",
           "DIRECTOR_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", *MODULES],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]
