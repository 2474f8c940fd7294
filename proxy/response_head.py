"""An HTTP/1.x response head as bytes, built in one pass from the ASGI message.

Twisted writes a response by filing every field into a `Headers` object (a name lookup,
a case conversion and a line-break scan per field, several more lookups for framing) and
then walking it again to build the head. A proxied response's fields are already checked
(proxy.upstream.http_parser refuses names that are not tokens and values with controls), so
the traffic plane builds its head directly; what it writes is what Twisted wrote: names in
Title-Case (with the conventional spellings below), line breaks in a value folded to
spaces, and the same framing rules (`chunked`).
"""
from __future__ import annotations

from twisted.web.http import RESPONSES

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
    """`content-type` -> `Content-Type` (remembered for the names seen most)."""
    spelled = _NAMES.get(name)
    if spelled is None:
        spelled = b"-".join([word.capitalize() for word in name.split(b"-")])
        spelled = _SPELLINGS.get(spelled, spelled)
        if len(_NAMES) < _NAMES_KEPT:
            _NAMES[name] = spelled
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
        if len(_STATUS_LINES) < _NAMES_KEPT:  # versions are two; statuses are 100-599 from apps
            _STATUS_LINES[(version, status)] = line
    return line


def add_field(head: list[bytes], name: bytes, value: bytes) -> None:
    """Append one `Name: value` line to the head being built."""
    spelled = _NAMES.get(name) or field_name(name)
    if LF in value or CR in value:
        value = field_value(value)
    head += (spelled, SEPARATOR, value, CRLF)
