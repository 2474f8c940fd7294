"""Header rules of SPEC §7: hop-by-hop removal both ways, X-Forwarded-*, Via.

Names are lower-case bytes (ASGI gives them so). Everything here runs once per request, so
the common case (no Connection tokens, untrusted peer) takes the fewest steps.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from proxy.memo import remember
from proxy.request_record import choose_request_id

# A field name or method (RFC 9110 5.6.2 token), as a regular expression fragment.
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
OWS = b" \t"  # optional whitespace around a field value (RFC 9110 5.6.3)
# The characters a field value must not hold, as a regular expression class body: the
# controls but HTAB (RFC 9110 5.5), so CR and LF too; and a field value made of the others.
FIELD_CONTROLS = rb"\x00-\x08\x0a-\x1f\x7f"
FIELD_VALUE = rb"[^" + FIELD_CONTROLS + rb"]*"
FIELD = TOKEN + rb":" + FIELD_VALUE  # one field line without its CRLF, as a fragment
FIELD_LINE = re.compile(FIELD)  # ... and compiled, for fullmatch
# Field lines found valid, as (lower-case name, value without OWS): the lines of a head
# mostly repeat from one message to the next (a backend's Server and Content-Type, a
# client's Host and User-Agent), so each is checked and split once. Short lines only;
# bounded (proxy.memo).
KNOWN_FIELD_LINES: dict[bytes, tuple[bytes, bytes]] = {}
_KNOWN_FIELD_LINES_KEPT = 4096
_KNOWN_FIELD_LINE_LENGTH = 256


def field_of_line(line: bytes) -> tuple[bytes, bytes] | None:
    """(lower-case name, value without OWS) of a field line (no CRLF), None when it is not
    one (FIELD_LINE). Callers look in KNOWN_FIELD_LINES first, inline."""
    if FIELD_LINE.fullmatch(line) is None:
        return None
    name, _, value = line.partition(b":")
    field = (name.lower(), value.strip(OWS))
    if len(line) <= _KNOWN_FIELD_LINE_LENGTH:
        remember(KNOWN_FIELD_LINES, line, field, _KNOWN_FIELD_LINES_KEPT)
    return field

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade",
})
# Also never forwarded upstream: framing is redone by the upstream client, the body is
# already complete (Expect answered by us), forwarding headers are rebuilt below.
# X-Request-ID is set by Director (SPEC §12): the client's is kept only from a trusted proxy.
REQUEST_DROP = HOP_BY_HOP | {b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                             b"via", b"x-request-id"}
# The server adds the request's own X-Request-ID; X-Sendfile is for Director (proxy.sendfile).
RESPONSE_DROP = HOP_BY_HOP | {b"via", b"x-request-id", b"x-sendfile"}


# Never removed because a Connection header names it: the backend needs the Host the
# client addressed (RFC 9110 7.6.1 lets a client name any field; nginx ignores the list).
NOT_NOMINABLE = frozenset({b"host"})


_NO_TOKENS: frozenset = frozenset()
_COMMON_CONNECTION = {value: frozenset({value.lower()}) for value in (b"keep-alive", b"Keep-Alive", b"close", b"Close")}
# Connection values that nominate no field to remove (their one option is hop-by-hop itself):
# the usual `keep-alive` or `close` costs no look at the other fields.
_NOMINATES_NOTHING = frozenset(_COMMON_CONNECTION)


def connection_tokens(values) -> frozenset:
    """The lower-case options of Connection header `values` (RFC 9110 7.6.1): a
    comma-separated token list, any case, any order, empty elements ignored. The one
    parser for Connection, front and back (`close, foo` closes like `close`)."""
    if not values:
        return _NO_TOKENS
    if type(values) is list and len(values) == 1:  # noqa: E721 - the common case, answered from a table
        common = _COMMON_CONNECTION.get(values[0])
        if common is not None:
            return common
    tokens = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip(b" \t").lower()
            if token:
                tokens.add(token)
    return frozenset(tokens)


def _named_connection_tokens(headers) -> frozenset:
    return connection_tokens([value for name, value in headers if name == b"connection"])


class TrustedProxies:
    """Peers whose X-Forwarded-* headers are kept (SPEC §3 trusted_proxies)."""

    def __init__(self, networks=()):
        self.networks = tuple(ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in networks)
        self.contains = lru_cache(maxsize=4096)(self._contains) if self.networks else (lambda ip: False)

    def _contains(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.networks)


class HeaderRules:
    """Builds upstream request headers and client response headers."""

    def __init__(self, pseudonym: str = "director", trusted: TrustedProxies | None = None):
        self.pseudonym = pseudonym.encode("ascii")
        self.trusted = trusted or TrustedProxies()
        self.via_11 = b"1.1 " + self.pseudonym
        self.via_10 = b"1.0 " + self.pseudonym
        self.via_2 = b"2 " + self.pseudonym  # the request came over HTTP/2 (RFC 9110 7.6.3)

    def request(self, headers, client_ip: str, scheme: str, http_version: str, record=None) -> tuple[list, bytes, bool]:
        """(upstream headers, host, https) for the client's ASGI headers. The request id
        (SPEC §12) is the one `record` (a proxy.request_record.RequestRecord) holds, else
        chosen here and stored in it."""
        tokens = None
        out = []
        host = b""
        xff = xfp = xfh = via = rid = None
        for name, value in headers:
            if name in REQUEST_DROP:
                if name == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                elif name == b"x-forwarded-proto":
                    xfp = value
                elif name == b"x-forwarded-host":
                    xfh = value
                elif name == b"via":
                    via = value if via is None else via + b", " + value
                elif name == b"x-request-id":
                    rid = value
                elif name == b"connection" and value not in _NOMINATES_NOTHING:
                    tokens = _named_connection_tokens(headers) - NOT_NOMINABLE
                continue
            if name == b"host":
                host = value
            out.append((name, value))
        if tokens:
            out = [(n, v) for n, v in out if n not in tokens]
        client = client_ip.encode("ascii") if client_ip else b"unknown"
        trusted = self.trusted.contains(client_ip) if client_ip else False
        if trusted and xff:
            out.append((b"x-forwarded-for", xff + b", " + client))
        else:
            out.append((b"x-forwarded-for", client))
        proto = xfp.strip().lower() if (trusted and xfp) else scheme.encode("ascii")
        out.append((b"x-forwarded-proto", proto))
        out.append((b"x-forwarded-host", xfh if (trusted and xfh) else host))
        own_via = self.via_11 if http_version == "1.1" else self.via_2 if http_version == "2" else self.via_10
        out.append((b"via", via + b", " + own_via if via else own_via))
        request_id = record.request_id if record is not None else None
        if request_id is None:
            request_id = choose_request_id(rid, trusted)
            if record is not None:
                record.request_id = request_id
        out.append((b"x-request-id", request_id))
        return out, host, proto == b"https"

    def request_id(self, headers, client_ip: str) -> bytes:
        """The request id of a request that goes to no backend (404)."""
        client_value = None
        for name, value in headers:
            if name == b"x-request-id":
                client_value = value
        trusted = self.trusted.contains(client_ip) if client_ip else False
        return choose_request_id(client_value, trusted)

    def response(self, headers) -> list:
        """Client response headers from the backend's."""
        out = []
        via = None
        tokens = None
        for name, value in headers:
            if name in RESPONSE_DROP:
                if name == b"via":
                    via = value if via is None else via + b", " + value
                elif name == b"connection" and value not in _NOMINATES_NOTHING:
                    tokens = _named_connection_tokens(headers)
                continue
            out.append((name, value))
        if tokens:
            out = [(n, v) for n, v in out if n not in tokens]
        out.append((b"via", via + b", " + self.via_11 if via else self.via_11))
        return out


def cookie_value(headers, name: bytes, *, any_case: bool = False) -> bytes | None:
    """The value of cookie `name` in the Cookie header(s), quotes removed; None when absent
    or empty. Names compare exactly, as RFC 6265 has it, or with `any_case` (a lower-case
    `name`) regardless of case, as `backend_from = "cookie:NAME"` always has."""
    for field, value in headers:
        if field != b"cookie":
            continue
        for pair in value.split(b";"):
            key, sep, found = pair.partition(b"=")
            key = key.strip()
            if sep and (key.lower() if any_case else key) == name:
                found = found.strip().strip(b'"')
                return found or None
    return None
