"""Two nodes starting at the same moment against one PostgreSQL both sync their config file
(SPEC §11 "Two nodes starting at the same moment both start"): real processes, separate
connections, a fresh database; afterwards everything exists once and only one of them wrote."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.director import base_env
from tests.support.processes import REPO
from tests.support.shared_services import postgres_database

DIRECTORS = 6
CONFIG = "".join(
    f'[directors.d{i}]\nbackends = {{ a = "http://127.0.0.1:{3000 + i}", b = "http://127.0.0.1:{4000 + i}" }}\n'
    f'[[routes]]\nhost = "d{i}.example.com"\npass = "d{i}"\n'
    for i in range(DIRECTORS)
) + '[directors.pool]\ndynamic = true\n[[routes]]\npath = "/"\npass = "pool"\n'

# Connect and load first, then wait for the go file: both syncs start within a millisecond.
SYNC = textwrap.dedent("""
    import os, time
    from django.db import connection
    from balancer.config import load_config
    from balancer.sync import sync_config
    connection.ensure_connection()
    config = load_config({config!r})
    while not os.path.exists({go!r}):
        time.sleep(0.001)
    sync_config(config)
    print("synced")
""")

COUNT = textwrap.dedent("""
    from balancer.models import AuditRecord, Backend, Director, Route
    print(Director.objects.count(), Backend.objects.count(), Route.objects.filter(mutable=False).count(),
          AuditRecord.objects.filter(action="director.create").count(),
          AuditRecord.objects.filter(action="route.create").count())
""")


def manage(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_two_nodes_syncing_at_once_both_succeed(tmp_path):
    config = tmp_path / "director.toml"
    config.write_text(CONFIG)
    go = tmp_path / "go"
    with postgres_database() as url:
        env = base_env(tmp_path, url)
        migrated = manage(env, "migrate", "--noinput", "-v", "0")
        assert migrated.returncode == 0, migrated.stderr
        code = SYNC.format(config=str(config), go=str(go))
        nodes = [subprocess.Popen([sys.executable, "manage.py", "shell", "--no-imports", "-c", code], cwd=REPO,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        try:
            go.touch()
            results = [node.communicate(timeout=120) for node in nodes]
        finally:
            for node in nodes:
                if node.poll() is None:
                    node.kill()
                    node.wait()
        for node, (stdout, stderr) in zip(nodes, results):
            assert node.returncode == 0 and stdout.strip() == "synced", stderr
            assert "Traceback" not in stderr, stderr
        counted = manage(env, "shell", "--no-imports", "-c", COUNT)
        assert counted.returncode == 0, counted.stderr
        directors, backends, routes, director_creates, route_creates = map(int, counted.stdout.split())
        assert (directors, backends, routes) == (DIRECTORS + 1, 2 * DIRECTORS, DIRECTORS + 1)
        assert (director_creates, route_creates) == (DIRECTORS + 1, DIRECTORS + 1)  # one node wrote, once
