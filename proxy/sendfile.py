"""X-Sendfile (SPEC §15): a backend names a local file, Director sends it.

When a director has `allow_x_sendfile`, a backend response carrying `X-Sendfile: PATH`
(an HTTP header, or a CGI header from a FastCGI backend) is answered with that file instead
of the backend's body, as a static file server would: 200 with the file's length, type,
Last-Modified and ETag; 304 for a matching If-None-Match / If-Modified-Since; 206 for one
byte range, 416 for an unsatisfiable one (several ranges get the whole file, 200). The
backend's body is read and thrown away first (up to DISCARD_LIMIT, so its connection can be
reused), and its slot is free before the file goes out. The file is read in FILE_CHUNK
pieces, each sent only when the client has taken the previous ones (the server's `send()`
waits), so memory stays bounded whatever the file's size.

PATH is absolute or relative to `x_sendfile_root`; after symlinks are resolved it must lie
inside that root. Outside, missing, not a regular file or unreadable: 404 and one warning.
Without `allow_x_sendfile` the header is one of proxy.headers.RESPONSE_DROP: it never
reaches a client, and the body is relayed as is.
"""
from __future__ import annotations

import logging
import mimetypes
import os
import stat
from email.utils import formatdate, parsedate_to_datetime
from typing import Callable

from proxy.errors import UpstreamError
from proxy.headers import HeaderRules
from proxy.responses import respond
from proxy.runtime import DirectorSettings
from proxy.upstream import UpstreamRequest, UpstreamResponse

log = logging.getLogger("director.proxy")

SENDFILE_HEADER = b"x-sendfile"
FILE_CHUNK = 128 * 1024
DISCARD_LIMIT = 1024 * 1024  # backend body bytes read and dropped; past this its connection is closed
DEFAULT_TYPE = b"application/octet-stream"
# The backend's fields that describe its own body, not the file (its Content-Type may stay: `_content_type`).
BODY_FIELDS = frozenset({b"content-length", b"content-type", b"content-range", b"content-encoding", b"etag",
                         b"last-modified", b"accept-ranges"})
# O_NONBLOCK: opening a FIFO must not wait for a writer (S_ISREG refuses it right after).
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class RangeNotSatisfiable(ValueError):
    """A Range the file cannot satisfy (416)."""


class SendfileRoot:
    """A director's X-Sendfile setting: the directory (symlinks resolved) files must lie in."""

    __slots__ = ("director_name", "configured", "root")

    def __init__(self, director_name: str, configured: str):
        self.director_name = director_name
        self.configured = configured
        self.root = os.path.realpath(configured)

    def resolve(self, value: bytes) -> str | None:
        """The real path X-Sendfile `value` names, or None when it lies outside the root."""
        name = os.fsdecode(value.strip())
        if not name or "\x00" in name:
            return None
        real = os.path.realpath(os.path.join(self.root, name))
        inside = self.root if self.root.endswith(os.sep) else self.root + os.sep
        return real if real.startswith(inside) else None

    async def answer(self, response: UpstreamResponse, first: bytes, value: bytes, request: UpstreamRequest,
                     send, rules: HeaderRules, *, backend_done: Callable[[], None]) -> int:
        """Answer the client with the file X-Sendfile `value` names; returns the status.
        The backend's body is discarded, `response` released and `backend_done()` called
        (the slot is free) before anything is sent."""
        await discard_body(response, first)
        backend_done()
        path = self.resolve(value)
        if path is None:
            return await self._not_found(send, value, f"resolves outside x_sendfile_root {self.root}")
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            return await self._not_found(send, value, "no such file")
        except OSError as exc:
            return await self._not_found(send, value, f"cannot be opened: {exc.strerror}")
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return await self._not_found(send, value, "is not a regular file")
            return await send_file(fd, info, path, response.headers, request, send, rules)
        finally:
            os.close(fd)

    async def _not_found(self, send, value: bytes, problem: str) -> int:
        log.warning("director %s: X-Sendfile %r %s: 404", self.director_name, os.fsdecode(value), problem)
        await respond(send, 404)
        return 404


def sendfile_root(director_name: str, settings: DirectorSettings, previous: SendfileRoot | None) -> SendfileRoot | None:
    """The director's SendfileRoot, None when X-Sendfile is not allowed. `previous` is kept
    while the setting stays the same (reloads are frequent; the problem is logged once)."""
    if not settings.allow_x_sendfile or not settings.x_sendfile_root:
        return None
    if previous is not None and previous.configured == settings.x_sendfile_root:
        return previous
    root = SendfileRoot(director_name, settings.x_sendfile_root)
    if not os.path.isdir(root.root):
        log.error("director %s: x_sendfile_root %s is not a directory: every X-Sendfile answer is 404",
                  director_name, settings.x_sendfile_root)
    return root


def requested_file(headers) -> bytes | None:
    """The value of the backend's X-Sendfile header, or None."""
    for name, value in headers:
        if name == SENDFILE_HEADER:
            return value
    return None


async def discard_body(response: UpstreamResponse, first: bytes) -> None:
    """Read the backend's body to its end and drop it, then release the response (its
    connection goes back to the pool). A body longer than DISCARD_LIMIT, or one that
    breaks, closes the connection instead: the file is sent all the same."""
    discarded = len(first)
    try:
        while discarded <= DISCARD_LIMIT:
            chunk = await response.read()
            if not chunk:
                break
            discarded += len(chunk)
    except UpstreamError as err:
        log.debug("X-Sendfile: backend body dropped: %s", err.reason)
    response.release()


async def send_file(fd: int, info: os.stat_result, path: str, backend_headers, request: UpstreamRequest, send,
                    rules: HeaderRules) -> int:
    """Send the open file `fd` (`info` its fstat) as the answer to `request`."""
    size = info.st_size
    etag = b'"%x-%x"' % (info.st_mtime_ns, size)
    modified = formatdate(info.st_mtime, usegmt=True).encode("ascii")
    headers = [(name, value) for name, value in rules.response(backend_headers) if name not in BODY_FIELDS]
    headers += [(b"last-modified", modified), (b"etag", etag)]
    request_headers = request.headers
    if request.method in ("GET", "HEAD") and not_modified(request_headers, etag, int(info.st_mtime)):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return 304
    headers += [(b"content-type", _content_type(backend_headers, path)), (b"accept-ranges", b"bytes")]
    status, start, length = 200, 0, size
    wanted = _header(request_headers, b"range") if request.method == "GET" else None
    if wanted is not None and _if_range_holds(request_headers, etag, modified):
        try:
            chosen = single_range(wanted, size)
        except RangeNotSatisfiable:
            await respond(send, 416, [(b"content-range", b"bytes */%d" % size)])
            return 416
        if chosen is not None:
            start, end = chosen
            status, length = 206, end - start + 1
            headers.append((b"content-range", b"bytes %d-%d/%d" % (start, end, size)))
    headers.append((b"content-length", b"%d" % length))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if request.method == "HEAD":
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return status
    await _stream(fd, start, length, path, send)
    return status


async def _stream(fd: int, offset: int, length: int, path: str, send) -> None:
    remaining = length
    while remaining > 0:
        chunk = os.pread(fd, min(FILE_CHUNK, remaining), offset)
        if not chunk:
            # The file shrank after its length went out: end the connection, not the response.
            raise OSError(f"X-Sendfile {path}: file ended {remaining} bytes early")
        offset += len(chunk)
        remaining -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
    if not length:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _content_type(backend_headers, path: str) -> bytes:
    """The backend's Content-Type when it sent one (the application knows what it serves),
    else the type the file name suggests, else application/octet-stream."""
    given = _header(backend_headers, b"content-type")
    if given:
        return given
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed.encode("ascii") if guessed else DEFAULT_TYPE


def _header(headers, wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name == wanted:
            return value
    return None


def not_modified(request_headers, etag: bytes, mtime: int) -> bool:
    """RFC 9110 13.1.2/13.1.3 for GET and HEAD: If-None-Match (weak comparison) decides when
    present, else If-Modified-Since against the file's modification time in seconds."""
    none_match = _header(request_headers, b"if-none-match")
    if none_match is not None:
        tags = {_opaque(tag) for tag in none_match.split(b",")}
        return b"*" in tags or _opaque(etag) in tags
    since = _header(request_headers, b"if-modified-since")
    if since is None:
        return False
    when = _http_date(since)
    return when is not None and mtime <= when


def _if_range_holds(request_headers, etag: bytes, modified: bytes) -> bool:
    """No If-Range, or one naming this very version (strong comparison): the Range applies."""
    condition = _header(request_headers, b"if-range")
    if condition is None:
        return True
    condition = condition.strip()
    return condition == etag if condition.startswith((b'"', b"W/")) else condition == modified


def _opaque(tag: bytes) -> bytes:
    tag = tag.strip()
    return tag[2:] if tag.startswith(b"W/") else tag


def _http_date(value: bytes) -> int | None:
    try:
        return int(parsedate_to_datetime(value.decode("latin-1")).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def single_range(value: bytes, size: int) -> tuple[int, int] | None:
    """(first, last) byte positions of a `Range: bytes=...` value with one range, None to
    send the whole file (another unit, a malformed value, several ranges, an empty file).
    RangeNotSatisfiable when it starts beyond the file."""
    unit, sep, spec = value.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes" or b"," in spec or not size:
        return None
    first_text, dash, last_text = spec.strip().partition(b"-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text.isdigit() or first_text == b"") or not (last_text.isdigit() or last_text == b""):
        return None
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0:
            raise RangeNotSatisfiable(value)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable(value)
    return first, min(int(last_text), size - 1) if last_text else size - 1
