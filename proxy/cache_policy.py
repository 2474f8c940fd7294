"""What the response cache (SPEC §15) stores and for how long: the key, the Vary variant,
storability, freshness, and conditional requests against a stored object. Pure functions
over ASGI-style headers (lower-case byte names); proxy.cache holds the objects and
proxy.cache_flow puts both on the request path.
"""
from __future__ import annotations

from email.utils import parsedate_to_datetime

# Request headers the updater does not send up: conditionals would make the answer a 304 or
# 412, Range a 206 — none of them the whole object to store. (Range goes with If-Range: a
# Range whose If-Range was dropped could splice parts of two versions.) Its client gets the
# whole 200.
UPDATE_DROPS = frozenset({b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range",
                          b"range"})
STORABLE_STATUS = frozenset({200, 203, 204, 301, 404})
# Sent with a 304 (RFC 9110 15.4.5), taken from the stored object.
NOT_MODIFIED_HEADERS = frozenset({b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary",
                                  b"last-modified"})
# Set by this cache on what it answers: a backend's own (another cache behind us) are dropped.
OWN_HEADERS = frozenset({b"x-cache-lookup", b"x-director-cache"})
# Not stored with the object: framing is redone when it is served, Age is recomputed.
NOT_STORED = frozenset({b"content-length", b"age"}) | OWN_HEADERS
HEAD_OVERHEAD = 256  # bytes counted per object besides its headers and body (key, bookkeeping)
FIELD_OVERHEAD = 16  # bytes counted per stored header besides its name and value
_PLACEHOLDERS = {"s": 0, "h": 1, "r": 2, "q": 3}


def compile_key(pattern: str) -> tuple:
    """The parts of a cache_key pattern: literal bytes, or 0..3 for %s %h %r %q. `%%` is a
    percent sign; any other `%x` (and a trailing `%`) is kept literally."""
    parts: list = []
    literal = bytearray()
    raw = pattern.encode("utf-8")
    i = 0
    while i < len(raw):
        char = raw[i:i + 1]
        following = raw[i + 1:i + 2].decode("latin-1")
        if char == b"%" and following == "%":
            literal += b"%"
            i += 2
        elif char == b"%" and following in _PLACEHOLDERS:
            if literal:
                parts.append(bytes(literal))
                literal.clear()
            parts.append(_PLACEHOLDERS[following])
            i += 2
        else:
            literal += char
            i += 1
    if literal:
        parts.append(bytes(literal))
    return tuple(parts)


def make_key(parts: tuple, scheme: bytes, host: bytes, path: bytes, query: bytes) -> bytes:
    """The key of one request from compiled pattern `parts` (compile_key)."""
    values = (scheme, host, path, query)
    return b"".join(values[part] if type(part) is int else part for part in parts)  # noqa: E721


def _values(headers, name: bytes) -> list[bytes]:
    return [value for field, value in headers if field == name]


def _tokens(headers, name: bytes, lower: bool = True) -> list[bytes]:
    """Comma-separated elements of every `name` field, stripped (and lower-cased)."""
    out = []
    for value in _values(headers, name):
        for token in value.split(b","):
            token = token.strip()
            if token:
                out.append(token.lower() if lower else token)
    return out


def vary_names(headers) -> tuple[bytes, ...] | None:
    """The request header names a response varies on (sorted, lower-case); None for
    `Vary: *` (such a response is never stored)."""
    names = _tokens(headers, b"vary")
    if b"*" in names:
        return None
    return tuple(sorted(set(names)))


def variant(request_headers, names: tuple[bytes, ...]) -> tuple:
    """The values of the request headers `names` (several fields of a name joined by ", ")."""
    if not names:
        return ()
    return tuple(b", ".join(_values(request_headers, name)) for name in names)


def storable(status: int, headers, max_body: int) -> bool:
    """Whether a response may be stored at all, judged from its head: status, Set-Cookie,
    Cache-Control no-store/no-cache/private, Pragma: no-cache, Vary: *, and a
    Content-Length over `max_body`."""
    if status not in STORABLE_STATUS:
        return False
    for name, value in headers:
        if name == b"set-cookie":
            return False
        if name == b"content-length" and value.isdigit() and int(value) > max_body:
            return False
    for directive in _tokens(headers, b"cache-control"):
        name = directive.partition(b"=")[0].strip()
        if name in (b"no-store", b"no-cache", b"private"):
            return False
    if b"no-cache" in _tokens(headers, b"pragma"):
        return False
    return vary_names(headers) is not None


def lifetime(headers, default: float) -> float:
    """Seconds a stored response stays fresh: `s-maxage`, else `max-age`, else `default`."""
    found: dict[bytes, float] = {}
    for directive in _tokens(headers, b"cache-control"):
        name, _, value = directive.partition(b"=")
        name = name.strip()
        if name in (b"s-maxage", b"max-age"):
            value = value.strip().strip(b'"')
            if value.isdigit():
                found.setdefault(name, float(value))
    return found.get(b"s-maxage", found.get(b"max-age", default))


def initial_age(headers) -> float:
    """The response's own Age (seconds it spent in caches before us), 0 without one."""
    for value in _values(headers, b"age"):
        value = value.strip()
        if value.isdigit():
            return float(value)
    return 0.0


def stored_headers(headers) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name not in NOT_STORED]


def head_size(headers) -> int:
    """A fair estimate of the memory a stored head takes."""
    return HEAD_OVERHEAD + sum(len(name) + len(value) + FIELD_OVERHEAD for name, value in headers)


def for_update(headers) -> list[tuple[bytes, bytes]]:
    """The updater's request headers (UPDATE_DROPS removed)."""
    return [(name, value) for name, value in headers if name not in UPDATE_DROPS]


def not_modified(request_headers, etag: bytes | None, last_modified: bytes | None) -> bool:
    """True when a GET/HEAD with these headers gets a 304 for an object with these
    validators: If-None-Match (weak comparison, `*`) decides when present, else
    If-Modified-Since against Last-Modified."""
    if_none_match = _tokens(request_headers, b"if-none-match", lower=False)  # entity tags are case-sensitive
    if if_none_match:
        if etag is None:
            return False
        mine = _opaque(etag)
        return any(tag == b"*" or _opaque(tag) == mine for tag in if_none_match)
    since = _values(request_headers, b"if-modified-since")
    if not since or last_modified is None:
        return False
    since_at, modified_at = _http_date(since[-1]), _http_date(last_modified)
    return since_at is not None and modified_at is not None and modified_at <= since_at


def _opaque(tag: bytes) -> bytes:
    """The opaque part of an entity tag (weak comparison ignores W/; case of W/ as sent)."""
    tag = tag.strip()
    if tag[:2] in (b"W/", b"w/"):
        tag = tag[2:]
    return tag


def _http_date(value: bytes) -> float | None:
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def header(headers, name: bytes) -> bytes | None:
    """The last value of one header, or None."""
    found = None
    for field, value in headers:
        if field == name:
            found = value
    return found
