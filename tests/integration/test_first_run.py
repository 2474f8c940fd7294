"""What a newcomer meets first (SPEC §2, §13): `make run`'s sequence answers the very first
request, the README's API tour works on its configuration, `/` on the management listener
leads to the status page or the login, a wrong DATABASE_URL is one line and exit 1, and
`runproxy --version` names Director."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import Client

from director_site.version import VERSION
from tests.support.director import Director
from tests.support.processes import REPO, Process, python_args
from tests.support.waiting import free_port, wait_for

DEMO_PORTS = ("3001", "3002")


@contextmanager
def make_run(tmp_path: Path):
    """What `make run` does, on free ports: the demo backends, `waitlisten` for them, then
    runproxy with director.example.toml. Yields the Director and the demo ports."""
    ports = {old: str(free_port()) for old in DEMO_PORTS}
    config = (REPO / "director.example.toml").read_text()
    for old, new in ports.items():
        config = config.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    director = Director(tmp_path, config)
    demo = Process(python_args("manage.py", "demobackends", *[f"--listen=127.0.0.1:{p}" for p in ports.values()]),
                   tmp_path / "demo.log", env=director.env)
    try:
        waited = director.manage("waitlisten", *[f"127.0.0.1:{p}" for p in ports.values()], "--timeout", "30")
        assert waited.returncode == 0, waited.stderr
        director.start()
        yield director, ports
    finally:
        director.stop()
        demo.stop()


def test_make_run_starts_the_proxy_once_the_demo_backends_answer():
    recipe = re.search(r"^run:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M).group(1)
    steps = [re.search(r"manage\.py (\w+)", line).group(1) for line in recipe.splitlines() if "manage.py" in line]
    assert steps[-3:] == ["demobackends", "waitlisten", "runproxy"], recipe
    assert all(f"127.0.0.1:{port}" in recipe for port in DEMO_PORTS)


def test_the_demo_backends_are_online_at_the_first_check_and_never_refused(tmp_path):
    with make_run(tmp_path) as (director, _):
        wait_for(lambda: director.get("/")[0] == 200, 10, interval=0.02, what="the first 200")
        log = director.output()
    online = [line for line in log.splitlines() if "is now online" in line]
    assert len(online) == 2 and "offline" not in log, log


def test_the_readme_api_tour_works_on_the_make_run_configuration(tmp_path):
    readme = (REPO / "README.md").read_text()
    tour = re.search(r"### API quick tour\n+```sh\n(.*?)```", readme, re.S).group(1)
    with make_run(tmp_path) as (director, ports):
        for old, new in {**ports, "8080": str(director.port), "8081": str(director.admin_port)}.items():
            tour = tour.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        script = "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; }\n" + tour
        env = {**director.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        result = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert '"action":"backend.create"' in result.stdout and '"backend_name":"web3"' in result.stdout


def test_waitlisten_names_what_does_not_answer():
    port = free_port()
    result = manage("waitlisten", f"127.0.0.1:{port}", "--timeout", "0.3")
    assert result.returncode == 1 and f"not accepting connections after 0.3s: 127.0.0.1:{port}" in result.stderr


def manage(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.django_db
def test_the_root_leads_to_the_status_page_or_the_login(admin_client):
    anonymous = Client().get("/", follow=True)
    assert anonymous.redirect_chain[0] == ("/status/", 302)
    assert anonymous.request["PATH_INFO"] == "/admin/login/" and anonymous.status_code == 200
    assert admin_client.get("/", follow=True).request["PATH_INFO"] == "/status/"


@pytest.mark.parametrize("url, fragment", [
    ("mysql://db.example/director", "unsupported scheme 'mysql'"),
    ("postgres://director@db.example:port/director", "Port could not be cast"),
    ("sqlite://db.sqlite3", "use sqlite:///ABSOLUTE/PATH"),
])
def test_a_wrong_database_url_is_one_line_and_exit_1(url, fragment):
    result = manage("runproxy", DATABASE_URL=url)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("runproxy: DATABASE_URL: ") and fragment in result.stderr


def test_runproxy_version_is_directors():
    result = manage("runproxy", "--version")
    assert result.returncode == 0 and result.stdout.startswith(f"Director {VERSION} (Python "), result.stdout
    assert "Django " in result.stdout and "Twisted " in result.stdout
