"""The access log's pieces: line formats (escaping, fields), request ids, and the writer:
lines leave the event loop without waiting for the disk, and a destination that takes
nothing (a FIFO nobody reads) costs dropped lines, never a blocked loop."""
from __future__ import annotations

import asyncio
import json
import os
import re
import time

from proxy import access_log as access_log_module
from proxy.access_log import AccessLog
from proxy.access_log_format import combined, json_line
from proxy.request_record import RequestRecord, choose_request_id, new_request_id
from tests.support.waiting import async_wait_for


def finished_record(**headers: str) -> RequestRecord:
    scope = {"method": "GET", "raw_path": b'/a"b\\c', "query_string": b"q=1", "http_version": "1.1",
             "client": ["192.0.2.7", 40000],
             "headers": [(name.replace("_", "-").encode(), value.encode("latin-1")) for name, value in headers.items()]}
    record = RequestRecord(scope)
    record.request_id = b"f" * 32
    record.attempts = 1
    record.upstream_time = 0.0123
    record.finish(200, 10, 1234)
    return record


def test_combined_escapes_what_a_client_controls():
    line = combined(finished_record(user_agent='evil"\x01agent\\', referer="caf\xe9"))
    assert line.endswith("\n") and line.count("\n") == 1
    assert '"GET /a\\x22b\\x5Cc?q=1 HTTP/1.1" 200 1234 "caf\\xE9" "evil\\x22\\x01agent\\x5C"' in line
    assert line.startswith("192.0.2.7 - - [")
    assert re.search(r" - - \S+ 0\.012 f{32}\n$", line)  # no director or backend here: "-"


def test_json_lines_hold_every_field():
    line = json_line(finished_record(host="shop.example", user_agent="ua"))
    fields = json.loads(line)
    assert fields["target"] == '/a"b\\c?q=1' and fields["status"] == 200 and fields["bytes_sent"] == 1234
    assert fields["upstream_ms"] == 12.3 and fields["attempts"] == 1 and fields["request_id"] == "f" * 32
    assert (fields["host"], fields["user_agent"], fields["referer"], fields["director"]) == ("shop.example", "ua", None, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", fields["time"])


def test_request_ids():
    generated = {new_request_id() for _ in range(1000)}
    assert len(generated) == 1000 and all(re.fullmatch(rb"[0-9a-f]{32}", rid) for rid in generated)
    assert choose_request_id(b"edge-1", trusted=True) == b"edge-1"
    assert choose_request_id(b"edge-1", trusted=False) != b"edge-1"
    for invalid in (b"", b"x" * 201, b"a b", b"tab\t", b"\xe9"):
        assert choose_request_id(invalid, trusted=True) != invalid
    assert choose_request_id(b"~" * 200, trusted=True) == b"~" * 200


def test_lines_reach_the_file_and_reopen_follows_a_rename(tmp_path):
    path = tmp_path / "access.log"

    async def scenario():
        log = AccessLog(str(path), "combined")
        log.write(finished_record())
        await async_wait_for(lambda: path.exists() and path.read_text().count("\n") == 1, 5, what="the first line")
        path.rename(tmp_path / "access.log.1")
        log.reopen()
        log.write(finished_record())
        log.close()

    asyncio.run(scenario())
    assert path.read_text().count("\n") == 1 and (tmp_path / "access.log.1").read_text().count("\n") == 1


def test_a_rotation_missed_while_starting_is_caught_up_and_an_unmoved_file_is_kept(tmp_path, caplog):
    """SIGUSR1 is ignored while a process starts: once it listens, reopen_if_moved() finds
    a path that names another file (or none) and opens it; the same file is kept."""
    path, rotated = tmp_path / "access.log", tmp_path / "access.log.1"

    async def scenario():
        log = AccessLog(str(path), "combined")
        log.reopen_if_moved()  # nothing moved: still the same file
        log.write(finished_record())
        await async_wait_for(lambda: path.exists() and path.read_text().count("\n") == 1, 5, what="the first line")
        path.rename(rotated)
        log.reopen_if_moved()
        log.write(finished_record())
        log.close()

    caplog.set_level("INFO", logger="director.proxy")
    asyncio.run(scenario())
    assert path.read_text().count("\n") == 1 and rotated.read_text().count("\n") == 1
    assert [r.getMessage() for r in caplog.records].count(f"access log {path} reopened") == 1


def test_a_destination_that_takes_nothing_drops_lines_and_never_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(access_log_module, "MAX_BACKLOG", 256 * 1024)
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # nobody reads: the pipe fills (64 KiB)
    slowest = 0.0

    async def flood(log: AccessLog) -> None:
        nonlocal slowest
        for _ in range(200):
            started = time.monotonic()
            for _ in range(100):
                log.write(finished_record())
            await asyncio.sleep(0)  # the lines of this turn go to the writer
            slowest = max(slowest, time.monotonic() - started)

    try:
        log = AccessLog(str(fifo), "combined")
        asyncio.run(flood(log))
        assert log.dropped > 0  # ~2.6 MB of lines against a 64 KiB pipe and a 256 KiB backlog
        assert slowest < 0.5, slowest  # a turn's lines cost microseconds; a blocked write would hang here
        received = b""
        while len(received) < 64 * 1024:  # the writer was waiting on the full pipe, not on the loop
            try:
                received += os.read(reader, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
        assert received.startswith(b"192.0.2.7 - - [")
        log.close(wait=None)
    finally:
        os.close(reader)
