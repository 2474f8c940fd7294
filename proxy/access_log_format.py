"""Access log line formats (SPEC §12): `combined` and `json`, each a function of one finished
`proxy.request_record.RequestRecord` returning one line with its newline.

combined: Apache/nginx combined, then `director backend request_time upstream_time
request_id` (seconds with millisecond precision, like nginx's $request_time; "-" for what
does not apply). As nginx does, `"` `\\` and bytes outside printable ASCII in the quoted
fields are written as \\xHH, so a client cannot forge a line.

json: one object per line with `time` (ISO 8601, UTC, milliseconds), `client`, `method`,
`target`, `protocol`, `status`, `bytes_sent`, `duration_ms`, `director`, `backend`,
`upstream_ms`, `attempts`, `request_id`, `host`, `user_agent`, `referer` (null where
nothing applies).
"""
from __future__ import annotations

import json
import re
import time

_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')
_time_cache: tuple[int, str] = (0, "")


def _escape(text: str) -> str:
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda m: "".join(f"\\x{b:02X}" for b in m.group().encode("latin-1", "replace")), text)


def _local_time(now: float) -> str:
    """`06/Dec/2026:20:55:01 +0000`, formatted once per second."""
    global _time_cache
    second = int(now)
    if _time_cache[0] != second:
        _time_cache = (second, time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second)))
    return _time_cache[1]


_iso_cache: tuple[int, str] = (0, "")


def _iso_time(now: float) -> str:
    """`2026-12-06T20:55:01.123+00:00` (UTC), the seconds formatted once per second."""
    global _iso_cache
    second = int(now)
    if _iso_cache[0] != second:
        _iso_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_iso_cache[1]}.{int((now - second) * 1000):03d}+00:00"


def _request_fields(scope: dict) -> tuple[str, str, str, str, str | None, str | None, str | None]:
    """(client, method, target, protocol, host, user agent, referer) of the request."""
    host = agent = referer = None
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"user-agent":
            agent = value.decode("latin-1")
        elif name == b"referer":
            referer = value.decode("latin-1")
    client = scope.get("client")
    query = scope.get("query_string")
    raw_path = scope.get("raw_path") or b""
    target = (raw_path + b"?" + query if query else raw_path).decode("latin-1")
    return (client[0] if client else "-", scope.get("method", "-"), target,
            "HTTP/" + scope.get("http_version", "1.1"), host, agent, referer)


def combined(record) -> str:
    client, method, target, protocol, _host, agent, referer = _request_fields(record.scope or {})
    upstream = f"{record.upstream_time:.3f}" if record.upstream_time is not None else "-"
    rid = record.request_id.decode("latin-1") if record.request_id is not None else "-"
    quoted: tuple[str, ...] = (method, target, protocol, referer or "-", agent or "-", rid)  # what a client may fill
    if _UNSAFE.search("".join(quoted)) is not None:
        quoted = tuple(_escape(text) for text in quoted)
    method, target, protocol, referer, agent, rid = quoted
    return (f'{client} - - [{_local_time(time.time())}] "{method} {target} {protocol}" '
            f'{record.status} {record.bytes_sent} "{referer}" "{agent}" '
            f'{record.director_name or "-"} {record.backend_name or "-"} {record.duration:.3f} {upstream} {rid}\n')


def json_line(record) -> str:
    client, method, target, protocol, host, agent, referer = _request_fields(record.scope or {})
    upstream = record.upstream_time
    return json.dumps({
        "time": _iso_time(time.time()),
        "client": client, "method": method, "target": target, "protocol": protocol,
        "status": record.status, "bytes_sent": record.bytes_sent,
        "duration_ms": round(record.duration * 1000, 3),
        "director": record.director_name, "backend": record.backend_name,
        "upstream_ms": round(upstream * 1000, 3) if upstream is not None else None,
        "attempts": record.attempts,
        "request_id": record.request_id.decode("latin-1") if record.request_id is not None else None,
        "host": host, "user_agent": agent, "referer": referer,
    }, separators=(",", ":")) + "\n"


FORMATS = {"combined": combined, "json": json_line}
