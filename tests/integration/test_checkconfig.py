"""`manage.py checkconfig` as a real process: every error with its key path, exit status."""
import os
import subprocess
import sys

from tests.support.processes import REPO

BAD = """
[proxy]
workers = "two"
[directors.app]
queue_limit = -1
backends = { app1 = "ftp://x" }
[[routes]]
pass = "nope"
"""
BAD_PATHS = ["proxy.workers: ", "directors.app.queue_limit: ", "directors.app.backends.app1.url: ", "routes[0].pass: "]


def checkconfig(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, str(REPO / "manage.py"), "checkconfig", *map(str, args)],
                          cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_bad_config_lists_every_error_and_exits_1(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    result = checkconfig(path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: 4 errors"
    for prefix in BAD_PATHS:
        assert sum(line.startswith(prefix) for line in lines) == 1, (prefix, lines)
    assert "config OK" not in result.stdout


def test_good_config_reports_counts():
    result = checkconfig(REPO / "director.example.toml")
    assert (result.returncode, result.stdout.strip()) == (0, "config OK: 1 directors, 1 routes")


def test_default_path_from_environment_then_cwd(tmp_path):
    (tmp_path / "director.toml").write_text("[[routes]]\nhttp = '127.0.0.1:1'\n")
    env_file = tmp_path / "other.toml"
    env_file.write_text("[directors.a]\n[directors.b]\n")
    result = checkconfig(cwd=tmp_path, env={"DIRECTOR_CONFIG": ""})
    assert result.stdout.strip() == "config OK: 0 directors, 1 routes"
    result = checkconfig(cwd=tmp_path, env={"DIRECTOR_CONFIG": str(env_file)})
    assert result.stdout.strip() == "config OK: 2 directors, 0 routes"


def test_syntax_error_and_missing_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[proxy\n")
    result = checkconfig(path)
    assert result.returncode == 1 and "invalid TOML" in result.stderr and "line 1" in result.stderr
    result = checkconfig(tmp_path / "missing.toml")
    assert result.returncode == 1 and "cannot read config file" in result.stderr
