"""Header rules: hop-by-hop both ways, X-Forwarded-* with trusted proxies, Via."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import headers as header_module
from proxy.headers import FIELD_LINE, OWS, HeaderRules, TrustedProxies, field_of_line


def as_dict(headers):
    out = {}
    for name, value in headers:
        out.setdefault(name, []).append(value)
    return out


def test_request_hop_by_hop_and_connection_tokens_removed():
    rules = HeaderRules("edge")
    headers = [(b"host", b"shop"), (b"connection", b"keep-alive, X-Secret"), (b"x-secret", b"1"),
               (b"keep-alive", b"timeout=5"), (b"te", b"trailers"), (b"transfer-encoding", b"chunked"),
               (b"upgrade", b"websocket"), (b"proxy-connection", b"x"), (b"trailer", b"x"),
               (b"content-length", b"3"), (b"expect", b"100-continue"), (b"x-app", b"ok")]
    out, host, https = rules.request(headers, "10.0.0.9", "http", "1.1")
    d = as_dict(out)
    assert host == b"shop" and not https
    for gone in (b"connection", b"x-secret", b"keep-alive", b"te", b"transfer-encoding", b"upgrade",
                 b"proxy-connection", b"trailer", b"content-length", b"expect"):
        assert gone not in d
    assert d[b"x-app"] == [b"ok"]
    assert d[b"via"] == [b"1.1 edge"]
    assert d[b"x-forwarded-for"] == [b"10.0.0.9"]
    assert d[b"x-forwarded-proto"] == [b"http"]
    assert d[b"x-forwarded-host"] == [b"shop"]


def test_untrusted_peer_forwarded_headers_replaced():
    rules = HeaderRules("d", TrustedProxies(["192.0.2.0/24"]))
    headers = [(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https"),
               (b"x-forwarded-host", b"evil")]
    out, _, https = rules.request(headers, "10.0.0.9", "http", "1.1")
    d = as_dict(out)
    assert d[b"x-forwarded-for"] == [b"10.0.0.9"]
    assert d[b"x-forwarded-proto"] == [b"http"] and not https
    assert d[b"x-forwarded-host"] == [b"h"]


def test_trusted_peer_forwarded_headers_kept_and_appended():
    rules = HeaderRules("d", TrustedProxies(["192.0.2.0/24"]))
    headers = [(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-for", b"5.6.7.8"),
               (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"shop"), (b"via", b"1.1 cdn")]
    out, _, https = rules.request(headers, "192.0.2.7", "http", "1.0")
    d = as_dict(out)
    assert d[b"x-forwarded-for"] == [b"1.2.3.4, 5.6.7.8, 192.0.2.7"]
    assert d[b"x-forwarded-proto"] == [b"https"] and https
    assert d[b"x-forwarded-host"] == [b"shop"]
    assert d[b"via"] == [b"1.1 cdn, 1.0 d"]


@pytest.mark.parametrize("version, via", [("1.0", b"1.0 d"), ("1.1", b"1.1 d"), ("2", b"2 d")])
def test_via_names_the_protocol_the_request_came_with(version, via):
    out, _, _ = HeaderRules("d").request([(b"host", b"h")], "10.0.0.1", "https", version)
    assert as_dict(out)[b"via"] == [via]


def test_response_hop_by_hop_removed_and_via_added():
    rules = HeaderRules("d")
    out = rules.response([(b"content-type", b"text/plain"), (b"connection", b"close, x-internal"),
                          (b"x-internal", b"1"), (b"keep-alive", b"5"), (b"upgrade", b"h2c"),
                          (b"via", b"1.0 app"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")])
    d = as_dict(out)
    assert d == {b"content-type": [b"text/plain"], b"set-cookie": [b"a=1", b"b=2"], b"via": [b"1.0 app, 1.1 d"]}


def test_connection_tokens_are_a_case_insensitive_list_in_any_position():
    from proxy.headers import connection_tokens

    assert connection_tokens([b"close, foo"]) == connection_tokens([b"Foo ,CLOSE"]) == {b"close", b"foo"}
    assert connection_tokens([b"close,foo", b" ,keep-alive\t"]) == {b"close", b"foo", b"keep-alive"}
    assert connection_tokens([]) == frozenset()


def test_connection_cannot_name_host_away():
    out, host, _ = HeaderRules("d").request(
        [(b"host", b"shop"), (b"connection", b"host, cookie"), (b"cookie", b"a=1")], "10.0.0.9", "http", "1.1")
    assert host == b"shop" and (b"host", b"shop") in out
    assert b"cookie" not in as_dict(out)


def test_a_plain_keep_alive_does_not_hide_a_later_connection_field_naming_one():
    """`Connection: keep-alive` alone names no field (and costs no look at the others), but
    a second Connection field still removes what it names, both ways."""
    rules = HeaderRules("d")
    out, _, _ = rules.request([(b"host", b"shop"), (b"connection", b"keep-alive"), (b"x-secret", b"1"),
                               (b"connection", b"X-Secret"), (b"accept", b"*/*")], "10.0.0.9", "http", "1.1")
    assert b"x-secret" not in as_dict(out) and as_dict(out)[b"accept"] == [b"*/*"]
    out = rules.response([(b"connection", b"Keep-Alive"), (b"x-internal", b"1"), (b"connection", b"x-internal"),
                          (b"content-type", b"text/plain")])
    assert as_dict(out) == {b"content-type": [b"text/plain"], b"via": [b"1.1 d"]}
    out = rules.response([(b"connection", b"close"), (b"x-kept", b"1")])
    assert as_dict(out) == {b"x-kept": [b"1"], b"via": [b"1.1 d"]}


_LINE_BYTES = st.sampled_from([b"a", b"Z", b"-", b":", b" ", b"\t", b"\r", b"\n", b"\x00", b"\x7f", b"\x80", b"(", b"1"])


@settings(database=None, max_examples=500)
@given(st.lists(_LINE_BYTES, max_size=12).map(b"".join))
def test_a_field_line_is_split_exactly_when_the_rule_accepts_it_and_again_the_same(line):
    expected = None
    if FIELD_LINE.fullmatch(line):
        name, _, value = line.partition(b":")
        expected = (name.lower(), value.strip(OWS))
    assert field_of_line(line) == expected
    assert (header_module.KNOWN_FIELD_LINES.get(line) or field_of_line(line)) == expected


def test_known_field_lines_stay_bounded_and_long_lines_are_not_kept():
    for number in range(3 * header_module._KNOWN_FIELD_LINES_KEPT):
        assert field_of_line(b"X-Request-Id: %d" % number) == (b"x-request-id", b"%d" % number)
        assert len(header_module.KNOWN_FIELD_LINES) <= header_module._KNOWN_FIELD_LINES_KEPT
    long_line = b"Cookie: " + b"c" * header_module._KNOWN_FIELD_LINE_LENGTH
    assert field_of_line(long_line) == (b"cookie", b"c" * header_module._KNOWN_FIELD_LINE_LENGTH)
    assert long_line not in header_module.KNOWN_FIELD_LINES
