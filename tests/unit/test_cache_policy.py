"""The cache's pure rules (proxy.cache_policy): key patterns, storability, freshness, Vary and
conditional requests."""
from __future__ import annotations

import pytest

from proxy import cache_policy as policy

LM = b"Sun, 06 Nov 1994 08:49:37 GMT"


def key(pattern: str, scheme=b"https", host=b"example.org", path=b"/a/b", query=b"x=1") -> bytes:
    return policy.make_key(policy.compile_key(pattern), scheme, host, path, query)


@pytest.mark.parametrize("pattern,expected", [
    ("%h#%r#%q", b"example.org#/a/b#x=1"),
    ("%s://%h%r?%q", b"https://example.org/a/b?x=1"),
    ("100%% %r", b"100% /a/b"),
    ("%x%r%y", b"%x/a/b%y"),  # unknown placeholders are kept as written
    ("%r%", b"/a/b%"),  # so is a trailing percent sign
    ("fixed", b"fixed"),
    ("%%h", b"%h"),
])
def test_key_patterns(pattern, expected):
    assert key(pattern) == expected


def test_key_patterns_with_non_ascii_literals():
    assert key("ä%r") == "ä".encode() + b"/a/b"


@pytest.mark.parametrize("status,headers,ok", [
    (200, [], True),
    (203, [], True), (204, [], True), (301, [], True), (404, [], True),
    (302, [], False), (500, [], False), (206, [], False), (304, [], False),
    (200, [(b"set-cookie", b"a=1")], False),
    (200, [(b"cache-control", b"public, no-store")], False),
    (200, [(b"cache-control", b"No-Cache")], False),
    (200, [(b"cache-control", b'no-cache="set-cookie2"')], False),
    (200, [(b"cache-control", b"private")], False),
    (200, [(b"cache-control", b"public, max-age=10")], True),
    (200, [(b"pragma", b"no-cache")], False),
    (200, [(b"vary", b"*")], False),
    (200, [(b"vary", b"accept, *")], False),
    (200, [(b"vary", b"accept-encoding")], True),
    (200, [(b"content-length", b"1001")], False),
    (200, [(b"content-length", b"1000")], True),
])
def test_storable(status, headers, ok):
    assert policy.storable(status, headers, max_body=1000) is ok


@pytest.mark.parametrize("cache_control,expected", [
    (None, 20.0),
    (b"max-age=5", 5.0),
    (b"max-age=5, s-maxage=7", 7.0),
    (b"s-maxage=7, max-age=5", 7.0),
    (b"max-age=0", 0.0),
    (b'max-age="9"', 9.0),
    (b"max-age=soon", 20.0),
    (b"public", 20.0),
])
def test_lifetime(cache_control, expected):
    headers = [(b"cache-control", cache_control)] if cache_control is not None else []
    assert policy.lifetime(headers, 20.0) == expected


def test_vary_names_are_sorted_and_lower_case():
    headers = [(b"vary", b"User-Agent, Accept-Encoding"), (b"vary", b"accept-encoding")]
    assert policy.vary_names(headers) == (b"accept-encoding", b"user-agent")
    assert policy.vary_names([]) == ()
    assert policy.vary_names([(b"vary", b"*")]) is None


def test_variant_joins_repeated_fields_and_marks_absent_ones_empty():
    request = [(b"accept", b"a"), (b"accept", b"b"), (b"host", b"x")]
    assert policy.variant(request, (b"accept", b"user-agent")) == (b"a, b", b"")
    assert policy.variant(request, ()) == ()


@pytest.mark.parametrize("request_headers,etag,modified,expected", [
    ([(b"if-none-match", b'"v1"')], b'"v1"', None, True),
    ([(b"if-none-match", b'"v0", W/"v1"')], b'"v1"', None, True),  # weak comparison
    ([(b"if-none-match", b'"V1"')], b'"v1"', None, False),  # entity tags are case-sensitive
    ([(b"if-none-match", b"*")], b'"v1"', None, True),
    ([(b"if-none-match", b'"v2"')], b'"v1"', LM, False),
    ([(b"if-none-match", b'"v2"'), (b"if-modified-since", LM)], b'"v1"', LM, False),  # If-None-Match decides
    ([(b"if-none-match", b'"v1"')], None, LM, False),
    ([(b"if-modified-since", LM)], None, LM, True),
    ([(b"if-modified-since", b"Mon, 07 Nov 1994 08:49:37 GMT")], None, LM, True),
    ([(b"if-modified-since", b"Sat, 05 Nov 1994 08:49:37 GMT")], None, LM, False),
    ([(b"if-modified-since", b"garbage")], None, LM, False),
    ([(b"if-modified-since", LM)], None, None, False),
    ([], b'"v1"', LM, False),
])
def test_not_modified(request_headers, etag, modified, expected):
    assert policy.not_modified(request_headers, etag, modified) is expected


def test_the_updater_drops_conditionals_and_range_and_stored_heads_lose_framing_and_age():
    headers = [(b"if-none-match", b"x"), (b"if-range", b"y"), (b"if-match", b"z"), (b"if-modified-since", LM),
               (b"if-unmodified-since", LM), (b"range", b"bytes=0-1"), (b"accept", b"*/*")]
    assert policy.for_update(headers) == [(b"accept", b"*/*")]
    response = [(b"content-length", b"3"), (b"age", b"4"), (b"etag", b'"e"'), (b"x-cache-lookup", b"hit"),
                (b"x-director-cache", b"shadow")]  # the last two: another cache's, behind us
    assert policy.stored_headers(response) == [(b"etag", b'"e"')]
    assert policy.initial_age(response) == 4.0 and policy.initial_age([]) == 0.0


def test_head_size_counts_names_values_and_overhead():
    assert policy.head_size([(b"etag", b"abc")]) == policy.HEAD_OVERHEAD + 4 + 3 + policy.FIELD_OVERHEAD
