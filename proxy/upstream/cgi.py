"""CGI/1.1 for FastCGI backends: the params of a request, and the head of a CGI response.

Pure apart from `stat()` calls under the document root (path-info split, like x0/nginx).
"""
from __future__ import annotations

import functools
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from proxy.errors import ProtocolError
from proxy.headers import TOKEN
from proxy.memo import remember
from proxy.upstream import fastcgi_records as fr
from proxy.upstream.base import BODY_METHODS, MAX_HEAD, UpstreamRequest

# Not forwarded as HTTP_*: httpoxy, and the two that become CONTENT_*.
_SKIPPED_HEADERS = frozenset({b"proxy", b"content-type", b"content-length"})
# Header names map to HTTP_<NAME> with '-' -> '_'; a name that already holds '_' (or any
# non-token byte) could impersonate another header (X_Forwarded_For), so it is dropped, as
# nginx does by default.
_FORWARDABLE_NAME = re.compile(rb"^[A-Za-z0-9-]+$")
_TOKEN = re.compile(rb"^" + TOKEN + rb"$")
# Header lines found valid, as (lower-case name, value): bounded (proxy.memo).
_KNOWN_LINES: dict[bytes, tuple[bytes, bytes]] = {}
_KNOWN_LINES_KEPT = 1024
_KNOWN_LINE_LENGTH = 256
_FORBIDDEN_PATH_BYTE = re.compile(rb"[\r\n\0]")
PERCENT = ord("%")  # looked for as an int: see proxy.response_head.LF
STAT_CACHE_TTL = 1.0
STAT_CACHE_SIZE = 4096
HEADER_KEY_CACHE_SIZE = 1024
_header_keys: dict[bytes, bytes | None] = {}  # header name as received -> HTTP_* name, None: not sent


class BadRequestPath(ValueError):
    """The request path or query cannot be turned into CGI params safely (answer 400)."""


class ParamGroup(NamedTuple):
    """Params that go together, and the same as FastCGI name-value pairs. The groups the
    caches below share are never changed: `pairs` is read, not copied."""

    pairs: Sequence[tuple[bytes, bytes]]
    encoded: bytes


def build_params(request: UpstreamRequest, *, server_software: str, health_check: bool = False) -> list[tuple[bytes, bytes]]:
    """The FastCGI PARAMS of `request`, in the spirit of nginx's fastcgi_params and x0.

    `health_check` (SPEC §8): SCRIPT_NAME is the path as is, SCRIPT_FILENAME the configured
    one only when set, no path-info split.
    """
    return [pair for group in param_groups(request, server_software, health_check) for pair in group.pairs]


def encoded_params(request: UpstreamRequest, *, server_software: str, health_check: bool = False) -> bytes:
    """`build_params` as FastCGI name-value pairs, the content of the PARAMS stream."""
    return b"".join([group.encoded for group in param_groups(request, server_software, health_check)])


def param_groups(request: UpstreamRequest, server_software: str, health_check: bool) -> list[ParamGroup]:
    """The params of `request` in groups. What a listener, a Host and a method share (the
    server's params) and what a connection shares (the client's) are built and encoded once
    for the requests that repeat them (functools.lru_cache, bounded)."""
    target = request.target
    raw_path, _, query = target.partition(b"?")
    path = _decoded_path(raw_path, query)
    groups = [_server_group(server_software, _host(request), request.server, request.http_version, request.method,
                            request.https)]
    if request.client:
        groups.append(_client_group(request.client))
    if health_check:
        script = [(b"SCRIPT_NAME", path), (b"PATH_INFO", b"")]
        if request.script_filename:
            script.append((b"SCRIPT_FILENAME", os.fsencode(request.script_filename)))
        groups.append(_group(script))
    else:
        groups.append(_script_group(path, request.document_root, request.script_filename))
    groups.append(_group(_request_params(request, query)))
    return groups


def _group(pairs: list[tuple[bytes, bytes]]) -> ParamGroup:
    return ParamGroup(pairs, fr.encode_pairs(pairs))


@functools.lru_cache(maxsize=1024)
def _server_group(server_software: str, host: str, server: tuple[str, int] | None, http_version: str, method: str,
                  https: bool) -> ParamGroup:
    pairs = [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", server_software.encode()),
        (b"SERVER_NAME", _server_name(host, server)),
        (b"SERVER_PROTOCOL", f"HTTP/{http_version}".encode()),
        (b"REQUEST_METHOD", method.encode()),
        (b"REDIRECT_STATUS", b"200"),
    ]
    if server:
        pairs += _address_params(server, b"SERVER_ADDR", b"SERVER_PORT")
    if https:
        pairs.append((b"HTTPS", b"on"))
    return _group(pairs)


@functools.lru_cache(maxsize=1024)
def _client_group(client: tuple[str, int]) -> ParamGroup:
    return _group(_address_params(client, b"REMOTE_ADDR", b"REMOTE_PORT"))


def _decoded_path(raw_path: bytes, query: bytes) -> bytes:
    if not raw_path.startswith(b"/"):
        raise BadRequestPath(f"request path {raw_path[:100]!r} does not start with '/'")
    path = unquote_to_bytes(raw_path) if PERCENT in raw_path else raw_path
    found = _FORBIDDEN_PATH_BYTE.search(path) or _FORBIDDEN_PATH_BYTE.search(query)
    if found:
        raise BadRequestPath(f"request path or query contains {found.group()!r}")
    return path


def _address_params(address: tuple[str, int], host_key: bytes, port_key: bytes) -> list[tuple[bytes, bytes]]:
    return [(host_key, address[0].encode()), (port_key, str(address[1]).encode())]


def _host(request: UpstreamRequest) -> str:
    return request.host or next((v.decode("latin-1") for n, v in request.headers if n == b"host"), "")


def _server_name(host: str, server: tuple[str, int] | None) -> bytes:
    """The Host without its port (else the listener's address, else this machine's name)."""
    if not host:
        return (server[0] if server else socket.gethostname()).encode("utf-8", "replace")
    if host.startswith("["):
        name = host[:host.find("]") + 1] or host
    else:
        name, sep, port = host.rpartition(":")
        if not (sep and port.isdigit()):
            name = host
    return name.encode("utf-8", "replace")


@functools.lru_cache(maxsize=256)
def _root(document_root: str) -> tuple[bytes, bytes]:
    """DOCUMENT_ROOT, and the same without its trailing slash (b"" for "/")."""
    root = os.fsencode(document_root.rstrip("/") or "/")
    return root, root.rstrip(b"/")


# Script params by (path, document root, script filename), for STAT_CACHE_TTL seconds: a
# script found once costs no lookup for the requests that follow. A path whose script was
# not found is looked up again every time, as StatCache does. Bounded (proxy.memo).
_SCRIPT_GROUPS: dict[tuple[bytes, str | None, str | None], tuple[ParamGroup, float]] = {}


def _script_group(path: bytes, document_root: str | None, script_filename: str | None) -> ParamGroup:
    key = (path, document_root, script_filename)
    now = time.monotonic()
    cached = _SCRIPT_GROUPS.get(key)
    if cached is not None and cached[1] > now:
        return cached[0]
    params, found = _script_params(path, document_root, script_filename)
    group = _group(params)
    if found:
        remember(_SCRIPT_GROUPS, key, (group, now + STAT_CACHE_TTL), STAT_CACHE_SIZE)
    return group


def _script_params(path: bytes, document_root: str | None,
                   script_filename: str | None) -> tuple[list[tuple[bytes, bytes]], bool]:
    """DOCUMENT_ROOT, SCRIPT_NAME, PATH_INFO, SCRIPT_FILENAME, PATH_TRANSLATED as they apply;
    and False when a document root was searched for the script and none was found."""
    if not document_root:
        if script_filename:
            filename = os.fsencode(script_filename)
            return [(b"SCRIPT_NAME", b"/" + os.path.basename(filename)), (b"PATH_INFO", path),
                    (b"SCRIPT_FILENAME", filename)], True
        return [(b"SCRIPT_NAME", path), (b"PATH_INFO", b"")], True
    root, base = _root(document_root)
    if b"/.." in path and b"/../" in path + b"/":
        raise BadRequestPath("request path contains a '..' segment")
    found = True
    if script_filename:
        filename = os.fsencode(script_filename)
        script_name = filename[len(base):] if filename.startswith(base + b"/") else b"/" + os.path.basename(filename)
        path_info = path
    else:
        script_name, path_info, found = _split(root, path, _stat_mode)
        filename = base + script_name
    params = [(b"DOCUMENT_ROOT", root), (b"SCRIPT_NAME", script_name), (b"PATH_INFO", path_info),
              (b"SCRIPT_FILENAME", filename)]
    if path_info:
        params.append((b"PATH_TRANSLATED", base + path_info))
    return params, found


class StatCache:
    """st_mode of paths under document roots. A found file or directory is remembered for
    `ttl` seconds of `clock`, so a hot script costs no stat() per request; a missing path is
    looked up every time. At `size` entries the cache starts over."""

    def __init__(self, ttl: float = STAT_CACHE_TTL, size: int = STAT_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl, self.size, self.clock = ttl, size, clock
        self._modes: dict[bytes, tuple[int, float]] = {}  # path -> (st_mode, expiry)

    def mode(self, path: bytes) -> int | None:
        """st_mode of `path`, None when it does not exist (or cannot be looked up)."""
        now = self.clock()
        cached = self._modes.get(path)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            self._modes.pop(path, None)
            return None
        remember(self._modes, path, (mode, now + self.ttl), self.size)
        return mode


_stat_mode = StatCache().mode


def split_path_info(root: bytes, path: bytes,
                    stat_mode: Callable[[bytes], int | None] = _stat_mode) -> tuple[bytes, bytes]:
    """(SCRIPT_NAME, PATH_INFO): the first prefix of `path` that is a regular file under
    `root` is the script; when none is, the whole path is (and the backend answers 404)."""
    script_name, path_info, _ = _split(root, path, stat_mode)
    return script_name, path_info


def _split(root: bytes, path: bytes, stat_mode: Callable[[bytes], int | None]) -> tuple[bytes, bytes, bool]:
    """split_path_info, and whether a script was found."""
    base = root.rstrip(b"/")
    end = 0
    while True:
        end = path.find(b"/", end + 1)
        prefix = path if end < 0 else path[:end]
        mode = stat_mode(base + prefix)
        if mode is None:
            break
        if stat.S_ISREG(mode):
            return prefix, path[len(prefix):], True
        if end < 0 or not stat.S_ISDIR(mode):
            break
    return path, b"", False


def _http_key(name: bytes) -> bytes | None:
    """HTTP_<NAME> for a header name not in `_header_keys` yet (then it is), None for one
    that is not forwarded."""
    lower = name.lower()
    key = None if lower in _SKIPPED_HEADERS or not _FORWARDABLE_NAME.match(lower) else \
        b"HTTP_" + lower.upper().replace(b"-", b"_")
    return remember(_header_keys, name, key, HEADER_KEY_CACHE_SIZE)


def _request_params(request: UpstreamRequest, query: bytes) -> list[tuple[bytes, bytes]]:
    """REQUEST_URI, QUERY_STRING, CONTENT_* and the HTTP_* params of the headers."""
    params = [(b"REQUEST_URI", request.target), (b"QUERY_STRING", query)]
    merged: dict[bytes, bytes] = {}
    content_type = None
    known = _header_keys
    for name, value in request.headers:  # this runs per field: the cache is read here
        key = known.get(name, b"")
        if key == b"":  # a name not seen yet
            key = _http_key(name)
        if key is None:
            if name == b"content-type" and content_type is None:
                content_type = value
            continue
        if key in merged:
            merged[key] += (b"; " if key == b"HTTP_COOKIE" else b", ") + value
        else:
            merged[key] = value
    if content_type is not None:
        params.append((b"CONTENT_TYPE", content_type))
    body_length = request.body.length
    if body_length > 0 or request.method in BODY_METHODS:
        params.append((b"CONTENT_LENGTH", str(body_length).encode()))
    params += merged.items()
    return params


class CGIHead:
    """The parsed head of a CGI response: status, reason, lower-case headers."""

    __slots__ = ("status", "reason", "headers", "content_length")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], content_length: int | None):
        self.status, self.reason, self.headers, self.content_length = status, reason, headers, content_length


class CGIHeadParser:
    """Collects STDOUT bytes until the blank line that ends the CGI header block.

    `feed()` returns the CGIHead once complete (the bytes after it are in `.rest`), else
    None; `finish()` is called at end of output and raises when the head never ended.
    """

    __slots__ = ("_buffer", "_scan", "rest")

    def __init__(self):
        self._buffer = bytearray()
        self._scan = 0
        self.rest = b""

    @property
    def started(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes) -> CGIHead | None:
        self._buffer += data
        buffer = self._buffer
        if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":  # no headers at all
            end = buffer.index(b"\n") + 1
            return self._complete(b"", end)
        while True:
            newline = buffer.find(b"\n", self._scan)
            if newline < 0:
                break
            after = newline + 1
            if buffer[after:after + 1] == b"\n":
                return self._complete(bytes(buffer[:newline]), after + 1)
            if buffer[after:after + 2] == b"\r\n":
                return self._complete(bytes(buffer[:newline]), after + 2)
            if after + 2 > len(buffer):  # cannot tell yet whether a blank line follows
                break
            self._scan = after
        if len(buffer) > MAX_HEAD:
            raise ProtocolError(f"CGI response headers exceed {MAX_HEAD // 1024} KiB")
        return None

    def finish(self) -> None:
        raise ProtocolError("CGI response ended before the blank line after its headers"
                            if self._buffer else "CGI response without any output")

    def _complete(self, block: bytes, end: int) -> CGIHead:
        if end > MAX_HEAD:
            raise ProtocolError(f"CGI response headers exceed {MAX_HEAD // 1024} KiB")
        self.rest = bytes(self._buffer[end:])
        self._buffer.clear()
        return parse_head(block)


def parse_head(block: bytes) -> CGIHead:
    """The CGIHead of a header block (lines separated by LF or CRLF, no blank line)."""
    status = reason = None
    headers: list[tuple[bytes, bytes]] = []
    lengths = set()
    has_location = False
    known = _KNOWN_LINES
    for line in block.split(b"\n") if block else ():
        name, value = known.get(line) or _field_of_line(line)
        if name == b"status":
            status, reason = _parse_status(value)
            continue
        if name == b"transfer-encoding":  # framing is ours; a CGI body is never encoded
            continue
        if name == b"content-length":
            if not value.isdigit():
                raise ProtocolError(f"invalid Content-Length {value[:40]!r} from the application")
            lengths.add(int(value))
            if len(lengths) > 1:
                raise ProtocolError("conflicting Content-Length headers from the application")
            if any(n == b"content-length" for n, _ in headers):
                continue
        has_location |= name == b"location"
        headers.append((name, value))
    if status is None:
        status, reason = (302, b"Found") if has_location else (200, b"OK")
    return CGIHead(status, reason, headers, lengths.pop() if lengths else None)


def _field_of_line(line: bytes) -> tuple[bytes, bytes]:
    """(lower-case name, value) of a CGI header line (its LF gone, a CR before it allowed);
    remembered: an application sends the same few (Content-type, X-Powered-By)."""
    text = line[:-1] if line.endswith(b"\r") else line
    name, colon, value = text.partition(b":")
    if not colon or not _TOKEN.match(name):
        raise ProtocolError(f"malformed CGI header line {text[:80]!r}")
    field = (name.lower(), value.strip(b" \t"))
    if len(line) <= _KNOWN_LINE_LENGTH:
        remember(_KNOWN_LINES, line, field, _KNOWN_LINES_KEPT)
    return field


def _parse_status(value: bytes) -> tuple[int, bytes]:
    code, _, reason = value.partition(b" ")
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 599:
        raise ProtocolError(f"invalid CGI Status {value[:40]!r}")
    return int(code), reason.strip()
