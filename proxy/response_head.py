"""An HTTP/1.x response head as bytes, built in one pass from the ASGI message, and the
traffic request's part that builds and writes it (`RawHeadMixin`).

Twisted writes a response by filing every field into a `Headers` object (a name lookup,
a case conversion and a line-break scan per field, several more lookups for framing) and
then walking it again to build the head. A proxied response's fields are already checked
(proxy.upstream.http_parser refuses names that are not tokens and values with controls), so
the traffic plane builds its head directly; what it writes is what Twisted wrote: names in
Title-Case (with the conventional spellings below), line breaks in a value folded to
spaces, and the same framing rules (`chunked`). On an HTTP/2 stream the same pass builds
the head's field list for the HEADERS frame instead (`h2_field`), so h2 need not lower-case,
strip and filter every field again (its outbound normalisation is off, see proxy.server_h2).
"""
from __future__ import annotations

from twisted.web.http import RESPONSES

from proxy.headers import HOP_BY_HOP, OWS
from proxy.memo import remember

NO_BODY_STATUSES = frozenset({204, 304})
CRLF = b"\r\n"
# Bytes are looked for as ints: `b"\n" in value` first tries the operand as an int, which
# raises (and formats) a TypeError inside CPython before the search: about 10x the cost.
LF, CR = ord("\n"), ord("\r")
SEPARATOR = b": "
# Names whose usual spelling is not plain Title-Case.
_SPELLINGS = {b"Content-Md5": b"Content-MD5", b"Dnt": b"DNT", b"Etag": b"ETag", b"P3p": b"P3P", b"Te": b"TE",
              b"Www-Authenticate": b"WWW-Authenticate", b"X-Xss-Protection": b"X-XSS-Protection"}
_NAMES: dict[bytes, bytes] = {}
_NAMES_KEPT = 2048  # distinct names remembered: a backend inventing names cannot grow this


def field_name(name: bytes) -> bytes:
    """`content-type` -> `Content-Type` (remembered: proxy.memo)."""
    spelled = _NAMES.get(name)
    if spelled is None:
        spelled = b"-".join([word.capitalize() for word in name.split(b"-")])
        spelled = remember(_NAMES, name, _SPELLINGS.get(spelled, spelled), _NAMES_KEPT)
    return spelled


def field_value(value: bytes) -> bytes:
    """A value never carries a line break onto the wire (header injection): folded to spaces."""
    if LF in value or CR in value:
        return b" ".join(value.splitlines())
    return value


_STATUS_LINES: dict[tuple[bytes, int], bytes] = {}


def status_line(version: bytes, status: int) -> bytes:
    line = _STATUS_LINES.get((version, status))
    if line is None:
        line = b"%s %d %s\r\n" % (version, status, RESPONSES.get(status, b"Unknown Status"))
        remember(_STATUS_LINES, (version, status), line, _NAMES_KEPT)  # versions are two, statuses 100-599
    return line


# Whole field lines, by (name, value): a backend sends the same few (Server, Content-Type,
# Connection, a fixed Content-Length) in every response. Short values only, bounded
# (proxy.memo).
_LINES: dict[tuple[bytes, bytes], bytes] = {}
_LINES_KEPT = 2048
_LINE_VALUE_KEPT = 256


def field_line(name: bytes, value: bytes) -> bytes:
    """`Name: value` CRLF as the head carries it (see field_name and field_value)."""
    key = (name, value)
    line = _LINES.get(key)
    if line is None:
        line = b"%s: %s\r\n" % (field_name(name), field_value(value))
        if len(value) <= _LINE_VALUE_KEPT:
            remember(_LINES, key, line, _LINES_KEPT)
    return line


def _add_line(head: list[bytes], name: bytes, value: bytes) -> None:
    head.append(field_line(name, value))


def h2_field(fields: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
    """Append one field as HTTP/2 sends it (RFC 9113 8.2): a lower-case name, a value
    without surrounding whitespace or line breaks; connection-specific fields are left out."""
    name = name.lower()
    if name in HOP_BY_HOP:  # connection-specific fields are malformed in HTTP/2 (RFC 9113 8.2.2)
        return
    if LF in value or CR in value:
        value = field_value(value)
    fields.append((name, value.strip(OWS)))


# A first body chunk up to this size goes to the connection joined to the head (the
# transport would join them for its send() anyway); a larger one is not copied.
HEAD_WITH_BODY = 16 * 1024


def _no_body(data) -> None:
    """`write` of a response that has no body (HEAD, 204, 304)."""


class RawHeadMixin:
    """For proxy.server_protocol.TrafficRequest (before RequestMixin and Twisted's Request):
    the head is built by `start_response` and written with the first body bytes, so a
    failure before them can still be answered cleanly. On an HTTP/1.x channel it is bytes;
    on an HTTP/2 stream (`writes_raw_head` False) a field list, which the stream sends as
    HEADERS (`write_fields`)."""

    _head: bytes | None = None  # HTTP/1.x: built by start_response, written with the first body bytes
    _fields: list | None = None  # HTTP/2: the same, as (name, value) fields

    def start_response(self, message):
        self.response_starts()
        status = message["status"]
        self.code = status
        raw = self.channel.writes_raw_head
        head: list = [status_line(self.clientproto, status)] if raw else []
        lines = _LINES
        declared = None
        has_server = False
        for name, value in message.get("headers", ()):
            lower = name.lower()
            if lower == b"content-length":
                declared = int(value)
            elif lower == b"server":
                has_server = True
            if raw:  # field_line, its usual case inline: this runs for every field
                head.append(lines.get((lower, value)) or field_line(lower, value))
            else:
                h2_field(head, lower, value)
        add = _add_line if raw else h2_field
        for name, values in self.extra_response_fields():  # Connection: close, if closing
            for value in values:
                add(head, name, value)
        server_field = self.channel.factory.server.server_field
        if server_field and not has_server:
            add(head, b"server", server_field)
        no_body = self.body_rule(status, declared)
        if not raw:
            for name, value in self.own_fields():
                h2_field(head, name, value)
            self._fields = head
            return
        for name, value in self.own_fields():
            head += (name, SEPARATOR, value, CRLF)  # spelled as given (X-Request-ID)
        if not no_body and declared is None and self.clientproto == b"HTTP/1.1":
            head.append(b"Transfer-Encoding: chunked\r\n")
            self.chunked = 1
        head.append(CRLF)
        self._head = b"".join(head)

    def write(self, data):
        """Twisted's Request.write, with the head built by start_response."""
        head, fields = self._head, self._fields
        if head is None and fields is None:
            super().write(data)
            return
        if self.finished:
            raise RuntimeError("Request.write called on a request after Request.finish was called.")
        if self.lost:
            return
        self._head = self._fields = None
        self.startedWriting = 1
        channel = self.channel
        if self.method == b"HEAD" or self.code in NO_BODY_STATUSES:
            self.write = _no_body  # as Twisted: these responses never carry body bytes
            data = b""
        elif data:
            self.sentLength += len(data)
            if self.chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
        if fields is not None:
            channel.write_fields(b"%d" % self.code, fields)
        elif len(data) <= HEAD_WITH_BODY:
            channel.write(head + data if data else head)  # the usual whole small response: one write
            return
        else:
            channel.write(head)
        if data:
            channel.write(data)

    def respond_error(self, status: int, *, close: bool = False):
        self._head, self._fields, self.chunked = None, None, 0  # a head not yet written is replaced
        super().respond_error(status, close=close)  # type: ignore[misc]  # RequestMixin follows in the MRO
