"""The access log through a real runproxy (SPEC §12): combined and JSON lines naming the
director, backend, status, bytes and request id of each request; a reload switches the
format; SIGUSR1 reopens the file after logrotate renamed it, in one process and under
`--workers 2`; an invalid format is a config error naming the key."""
from __future__ import annotations

import json
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.backends import http_backend
from tests.support.config_files import app_config, with_routes
from tests.support.director import Director
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import wait_for
from tests.support.workers import published

# nginx's combined, then: director backend request_time upstream_time request_id
COMBINED = re.compile(
    r'(?P<client>\S+) - - \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<target>\S+) (?P<protocol>[^"]+)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" '
    r'(?P<director>\S+) (?P<backend>\S+) (?P<request_time>\d+\.\d{3}) (?P<upstream_time>\d+\.\d{3}|-) '
    r'(?P<request_id>\S+)')
JSON_FIELDS = {"time", "client", "method", "target", "protocol", "status", "bytes_sent", "duration_ms", "director",
               "backend", "upstream_ms", "attempts", "request_id", "host", "user_agent", "referer"}


def logging_config(log: Path | str, backend_port: int, log_format: str = "combined") -> str:
    """Director "app" with backend a1 for hosts 127.0.0.1 and app.example; others get 404."""
    return (f'[proxy]\naccess_log = {json.dumps(str(log))}\naccess_log_format = "{log_format}"\n'
            + with_routes({"host": "127.0.0.1", "pass": "app"}, {"host": "app.example", "pass": "app"},
                          directors=f'[directors.app]\nhealth_check_success_threshold = 1\n'
                                    f'backends = {{ a1 = {{ url = "http://127.0.0.1:{backend_port}", '
                                    f'health_check_interval = 0.5 }} }}\n'))


def line_with(path: Path, needle: str) -> str:
    """The first line of the file holding `needle`, once written (the writer is a thread)."""
    def found():
        text = path.read_text() if path.exists() else ""
        return next((line for line in text.splitlines() if needle in line), None)
    return wait_for(found, 10, what=f"a line with {needle!r} in {path}")


def started(tmp_path: Path, config: str, **kwargs) -> Director:
    director = Director(tmp_path, config, **kwargs).start()
    wait_for(lambda: director.get("/")[0] == 200, 20, what="the backend online")
    return director


def test_combined_lines_name_director_backend_status_bytes_and_request_id(tmp_path):
    log = tmp_path / "access.log"
    with http_backend("a1") as a1:
        director = started(tmp_path, logging_config(log, a1.port))
        try:
            ok = director.request("POST", "/echo", body=b"x" * 1000,
                                  headers={"User-Agent": 'curl "quoted"', "Referer": "http://r.example/"})
            missing = director.request("GET", "/nope", headers={"Host": "nowhere.example"})
            director.request("GET", "/bytes?size=5000", headers={"Host": "app.example"})
            refused = director.request("TRACE", "/t", headers={"User-Agent": "refusing-agent"})  # the server's own 405
            posted, unrouted, sized, traced = (COMBINED.fullmatch(line_with(log, needle))
                                               for needle in ('"POST /echo', '"GET /nope', '"GET /bytes', '"TRACE /t'))
        finally:
            director.stop()
    assert posted["status"] == "200" and posted["bytes"] == "1000"
    assert (posted["director"], posted["backend"], posted["method"], posted["protocol"]) == ("app", "a1", "POST", "HTTP/1.1")
    assert posted["request_id"] == ok[1]["x-request-id"]
    assert posted["agent"] == r"curl \x22quoted\x22" and posted["referer"] == "http://r.example/"
    assert posted["client"] == "127.0.0.1" and posted["upstream_time"] != "-"
    assert float(posted["upstream_time"]) <= float(posted["request_time"]) < 10

    assert (unrouted["status"], unrouted["director"], unrouted["backend"], unrouted["upstream_time"]) == ("404", "-", "-", "-")
    assert unrouted["request_id"] == missing[1]["x-request-id"]
    assert int(unrouted["bytes"]) == len(missing[2])

    assert (sized["target"], sized["status"], sized["bytes"]) == ("/bytes?size=5000", "200", "5000")
    assert (traced["status"], traced["director"], traced["request_id"]) == ("405", "-", refused[1]["x-request-id"])
    assert traced["agent"] == "refusing-agent"  # a refused request's fields are logged too


def test_a_client_that_leaves_before_the_response_is_logged_as_499(tmp_path):
    log = tmp_path / "access.log"
    with http_backend("a1") as a1:
        director = started(tmp_path, logging_config(log, a1.port))
        try:
            with pytest.raises(TimeoutError):
                director.get("/slow?delay=3", timeout=0.5)  # closes the connection on the timeout
            line = COMBINED.fullmatch(line_with(log, '"GET /slow?delay=3'))
        finally:
            director.stop()
    assert (line["status"], line["director"], line["backend"], line["bytes"]) == ("499", "app", "a1", "0")
    assert line["upstream_time"] == "-"
    assert 0.4 < float(line["request_time"]) < 3


def test_a_reload_switches_to_json_lines(tmp_path):
    log = tmp_path / "access.log"
    with http_backend("a1") as a1:
        director = started(tmp_path, logging_config(log, a1.port))
        try:
            director.config_path.write_text(logging_config(log, a1.port, "json"))
            os.kill(director.process.pid, signal.SIGHUP)
            wait_for(lambda: "applied" in director.output(), 20, what="the reload")
            response = director.request("GET", "/status/503", headers={"User-Agent": "probe/1", "Host": "app.example"})
            line = json.loads(line_with(log, '"target":"/status/503"'))
        finally:
            director.stop()
    assert set(line) == JSON_FIELDS
    assert (line["method"], line["target"], line["protocol"], line["status"]) == ("GET", "/status/503", "HTTP/1.1", 503)
    assert (line["director"], line["backend"], line["attempts"], line["host"]) == ("app", "a1", 1, "app.example")
    assert line["request_id"] == response[1]["x-request-id"] and line["user_agent"] == "probe/1"
    assert line["referer"] is None and line["client"] == "127.0.0.1"
    assert line["bytes_sent"] == len(response[2]) and 0 <= line["upstream_ms"] <= line["duration_ms"] < 10_000
    assert line["time"].endswith("+00:00")


def reopens_after_rename(director: Director, log: Path, processes: int = 1) -> None:
    """logrotate's way: rename, SIGUSR1, and new lines go to a new file at the old path
    once every serving process has reopened it (lines before that go to the renamed file)."""
    director.get("/?before")
    line_with(log, "/?before")
    rotated = log.with_name("access.log.1")
    log.rename(rotated)
    os.kill(director.process.pid, signal.SIGUSR1)
    wait_for(lambda: director.output().count(f"access log {log} reopened") == processes, 15,
             what=f"{processes} processes to reopen the log")
    director.get("/?after")
    line_with(log, "/?after")
    assert "/?after" not in rotated.read_text()
    assert "/?before" in rotated.read_text()
    assert director.process.alive()


def test_sigusr1_reopens_the_file_after_a_rename(tmp_path):
    log = tmp_path / "access.log"
    with http_backend("a1") as a1:
        director = started(tmp_path, logging_config(log, a1.port))
        try:
            reopens_after_rename(director, log)
        finally:
            director.stop()


def test_sigusr1_reopens_the_file_in_every_worker(tmp_path):
    log = tmp_path / "access.log"
    with postgres_database() as database, http_backend("a1") as a1:
        director = Director(tmp_path, logging_config(log, a1.port), database_url=database,
                            env={"REDIS_URL": redis_url()}, extra_args=["--workers", "2"])
        assert director.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
        director.start()
        try:
            wait_for(lambda: director.get("/")[0] == 200, 20, what="the backend online")
            # Both workers listen for SIGUSR1 once their loop runs, which is when they publish.
            wait_for(lambda: len(published(director)) == 2, 30, what="both workers running")
            reopens_after_rename(director, log, processes=2)
            # Each new connection may land on either worker: both must write to the new file.
            # Rounds of concurrent connections until both have served some (the kernel spreads
            # them, but a loaded machine can hand one worker a whole round).
            sent = []

            def both_served() -> bool:
                with ThreadPoolExecutor(10) as pool:
                    paths = [f"/?worker-probe-{len(sent) + n}" for n in range(10)]
                    list(pool.map(director.get, paths))
                sent.extend(paths)
                served = served_by_workers(director)
                return len(served) == 2 and all(served.values())
            wait_for(both_served, 30, interval=1.0, what="both workers to have served requests")
            for path in sent:
                line_with(log, f"{path} ")
            assert "worker-probe" not in log.with_name("access.log.1").read_text()
        finally:
            director.stop()


def test_sigusr1_without_an_access_log_is_harmless(tmp_path):
    with http_backend("a1") as a1:
        director = started(tmp_path, app_config(a1=a1.port))
        try:
            os.kill(director.process.pid, signal.SIGUSR1)
            assert director.get("/")[0] == 200
            assert director.process.alive()
        finally:
            director.stop()


def served_by_workers(director: Director) -> dict[int, int]:
    return {worker: sum(d["load"]["total"] for d in snapshot["directors"])
            for worker, snapshot in published(director).items()}


def test_stdout_gets_the_lines_with_dash(tmp_path):
    with http_backend("a1") as a1:
        director = started(tmp_path, logging_config("-", a1.port))
        try:
            rid = director.get("/?to-stdout")[1]["x-request-id"]
            wait_for(lambda: rid in director.output(), 10, what="the line on stdout")
        finally:
            director.stop()
    line = next(x for x in director.output().splitlines() if rid in x)
    assert COMBINED.fullmatch(line)["target"] == "/?to-stdout"


@pytest.mark.parametrize(("values", "key"), [
    ({"access_log_format": "apache"}, "proxy.access_log_format"),
    ({"access_log": "/no/such/directory/access.log"}, "proxy.access_log"),
    ({"access_log": 5}, "proxy.access_log"),
])
def test_invalid_access_log_settings_are_config_errors_naming_the_key(tmp_path, values, key):
    director = Director(tmp_path, app_config(proxy=values, a1=1))
    checked = director.manage("checkconfig", director.config_path)
    assert checked.returncode == 1 and key in checked.stdout + checked.stderr, checked
    director.start(wait=False)
    assert director.process.proc.wait(60) == 1
    assert key in director.output()
