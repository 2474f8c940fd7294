"""CGI params from an UpstreamRequest, and the CGI response head parser."""
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balancer.health.probe import build_request
from proxy.errors import ProtocolError
from proxy.upstream.base import RequestBody, UpstreamRequest
from proxy.upstream.cgi import MAX_HEAD, BadRequestPath, CGIHeadParser, StatCache, build_params, split_path_info
from tests.support.waiting import wait_for


def params(**kwargs) -> dict[bytes, bytes]:
    kwargs.setdefault("method", "GET")
    kwargs.setdefault("target", b"/index.php")
    kwargs.setdefault("headers", [(b"host", b"example.org:8080")])
    pairs = build_params(UpstreamRequest(**kwargs), server_software="Director/1")
    names = [n for n, _ in pairs]
    assert len(names) == len(set(names)), "a param is sent twice"
    return dict(pairs)


def test_fixed_and_request_params():
    p = params(target=b"/a%20b.php?x=%41&y", client=("192.0.2.1", 5555), server=("127.0.0.1", 8080),
               http_version="1.0", https=True)
    assert p[b"GATEWAY_INTERFACE"] == b"CGI/1.1"
    assert p[b"SERVER_SOFTWARE"] == b"Director/1"
    assert p[b"SERVER_NAME"] == b"example.org"
    assert (p[b"SERVER_ADDR"], p[b"SERVER_PORT"]) == (b"127.0.0.1", b"8080")
    assert (p[b"REMOTE_ADDR"], p[b"REMOTE_PORT"]) == (b"192.0.2.1", b"5555")
    assert p[b"SERVER_PROTOCOL"] == b"HTTP/1.0"
    assert p[b"REQUEST_METHOD"] == b"GET"
    assert p[b"REQUEST_URI"] == b"/a%20b.php?x=%41&y"
    assert p[b"QUERY_STRING"] == b"x=%41&y"
    assert p[b"HTTPS"] == b"on"
    assert p[b"REDIRECT_STATUS"] == b"200"
    assert p[b"HTTP_HOST"] == b"example.org:8080"


def test_plain_backend_gets_whole_path_as_script_name():
    p = params(target=b"/app/x%2Fy?q")
    assert (p[b"SCRIPT_NAME"], p[b"PATH_INFO"]) == (b"/app/x/y", b"")
    assert b"SCRIPT_FILENAME" not in p and b"DOCUMENT_ROOT" not in p and b"HTTPS" not in p


@pytest.mark.parametrize("host, expected", [
    ("example.org", b"example.org"), ("[::1]:8080", b"[::1]"), ("[::1]", b"[::1]"), ("10.0.0.1:80", b"10.0.0.1"),
])
def test_server_name_drops_the_port(host, expected):
    assert params(host=host)[b"SERVER_NAME"] == expected


def test_server_name_falls_back_to_server_address():
    assert params(headers=[], server=("::1", 80))[b"SERVER_NAME"] == b"::1"


def test_headers_become_http_params_except_proxy_and_content():
    p = params(method="POST", body=RequestBody(b"abc"), headers=[
        (b"host", b"h"), (b"proxy", b"http://evil"), (b"content-type", b"text/plain"),
        (b"content-length", b"999"), (b"x-forwarded-for", b"1.2.3.4"), (b"x_forwarded_for", b"6.6.6.6"),
        (b"accept", b"a"), (b"accept", b"b"), (b"cookie", b"a=1"), (b"cookie", b"b=2"),
    ])
    assert b"HTTP_PROXY" not in p and b"HTTP_CONTENT_TYPE" not in p and b"HTTP_CONTENT_LENGTH" not in p
    assert p[b"CONTENT_TYPE"] == b"text/plain" and p[b"CONTENT_LENGTH"] == b"3"
    assert p[b"HTTP_X_FORWARDED_FOR"] == b"1.2.3.4"
    assert p[b"HTTP_ACCEPT"] == b"a, b" and p[b"HTTP_COOKIE"] == b"a=1; b=2"


@pytest.mark.parametrize("method, body, expected", [
    ("GET", b"", None), ("POST", b"", b"0"), ("PUT", b"xy", b"2"), ("DELETE", b"xyz", b"3"),
])
def test_content_length_is_the_exact_body_length(method, body, expected):
    assert params(method=method, body=RequestBody(body)).get(b"CONTENT_LENGTH") == expected


@pytest.mark.parametrize("target", [b"/a%0d.php", b"/a%0A", b"/a%00.php", b"/x?a\nb", b"/x?\r", b"relative", b"*"])
def test_cr_lf_nul_and_non_origin_paths_are_rejected(target):
    with pytest.raises(BadRequestPath):
        params(target=target)


@pytest.fixture
def docroot(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "index.php").write_text("<?php")
    (tmp_path / "top.php").write_text("<?php")
    return tmp_path


def test_path_info_split_at_first_file(docroot):
    p = params(target=b"/app/index.php/users/7?x", document_root=str(docroot) + "/")
    assert p[b"DOCUMENT_ROOT"] == str(docroot).encode()
    assert p[b"SCRIPT_NAME"] == b"/app/index.php"
    assert p[b"PATH_INFO"] == b"/users/7"
    assert p[b"SCRIPT_FILENAME"] == str(docroot).encode() + b"/app/index.php"
    assert p[b"PATH_TRANSLATED"] == str(docroot).encode() + b"/users/7"


def test_exact_script_has_empty_path_info(docroot):
    p = params(target=b"/top%2Ephp", document_root=str(docroot))
    assert (p[b"SCRIPT_NAME"], p[b"PATH_INFO"]) == (b"/top.php", b"")
    assert b"PATH_TRANSLATED" not in p


@pytest.mark.parametrize("target", [b"/missing.php/x", b"/app/", b"/app/nope.php", b"/top.php.bak"])
def test_no_file_means_whole_path_is_the_script(docroot, target):
    p = params(target=target, document_root=str(docroot))
    assert (p[b"SCRIPT_NAME"], p[b"PATH_INFO"]) == (target, b"")
    assert p[b"SCRIPT_FILENAME"] == str(docroot).encode() + target


@pytest.mark.parametrize("target", [b"/../etc/passwd", b"/app/%2e%2e/%2E%2E/etc/passwd", b"/a/..", b"/..%2fx"])
def test_dot_dot_segments_never_escape_the_document_root(docroot, target):
    with pytest.raises(BadRequestPath):
        params(target=target, document_root=str(docroot))


def test_front_controller_inside_document_root(docroot):
    p = params(target=b"/users/7?x=1", document_root=str(docroot), script_filename=str(docroot / "app/index.php"))
    assert p[b"SCRIPT_FILENAME"] == str(docroot / "app/index.php").encode()
    assert p[b"SCRIPT_NAME"] == b"/app/index.php"
    assert p[b"PATH_INFO"] == b"/users/7"


def test_front_controller_outside_document_root():
    p = params(target=b"/users", script_filename="/srv/other/front.php")
    assert (p[b"SCRIPT_NAME"], p[b"PATH_INFO"], p[b"SCRIPT_FILENAME"]) == (b"/front.php", b"/users", b"/srv/other/front.php")
    assert b"DOCUMENT_ROOT" not in p


def test_health_check_params():
    request = build_request(request_path="/health/ping", host_header="app.example", director="app", backend="php1", script_filename="/srv/www/index.php")
    p = dict(build_params(request, server_software="Director", health_check=True))
    assert p[b"REQUEST_METHOD"] == b"GET" and p[b"SCRIPT_NAME"] == b"/health/ping" and p[b"PATH_INFO"] == b""
    assert p[b"SCRIPT_FILENAME"] == b"/srv/www/index.php"
    assert p[b"HTTP_HOST"] == b"app.example" and p[b"HTTP_X_DIRECTOR_HEALTH_CHECK"] == b"yes"
    assert p[b"HTTP_X_DIRECTOR"] == b"app" and p[b"HTTP_X_DIRECTOR_BACKEND"] == b"php1"
    assert b"CONTENT_LENGTH" not in p
    plain = dict(build_params(build_request(request_path="/", host_header="h", director="d", backend="b"), server_software="D", health_check=True))
    assert b"SCRIPT_FILENAME" not in plain and plain[b"SCRIPT_NAME"] == b"/"


# --- CGI response head ---------------------------------------------------------------------

def head_of(raw: bytes):
    parser = CGIHeadParser()
    head = parser.feed(raw)
    assert head is not None
    return head, parser.rest


@pytest.mark.parametrize("raw, status, reason", [
    (b"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n", 404, b"Not Found"),
    (b"Status: 203\n\n", 203, b""),
    (b"Location: /elsewhere\r\n\r\n", 302, b"Found"),
    (b"Content-Type: text/plain\n\n", 200, b"OK"),
    (b"Location: /x\r\nStatus: 301 Moved\r\n\r\n", 301, b"Moved"),
    (b"\r\nbody", 200, b"OK"),
])
def test_status_rules(raw, status, reason):
    head, _ = head_of(raw)
    assert (head.status, head.reason) == (status, reason)
    assert all(name != b"status" for name, _ in head.headers)


def test_headers_lower_case_and_body_after_blank_line():
    head, rest = head_of(b"X-Foo:  bar \r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nhello\r\n\r\n")
    assert head.headers == [(b"x-foo", b"bar"), (b"content-type", b"text/plain")]
    assert rest == b"hello\r\n\r\n"


@settings(database=None)
@given(st.binary(max_size=40), st.lists(st.integers(min_value=1, max_value=30), max_size=20))
def test_head_found_whatever_the_split(body, sizes):
    raw = b"Status: 201 Created\r\nA: b\nC: d\r\n\r\n" + body
    parser, head, pos = CGIHeadParser(), None, 0
    for size in [*sizes, len(raw)]:
        if head is None:
            head = parser.feed(raw[pos:pos + size])
            pos += size
    assert head.status == 201 and head.headers == [(b"a", b"b"), (b"c", b"d")]
    assert parser.rest + raw[pos:] == body


def test_content_length_exposed_and_conflicts_rejected():
    head, _ = head_of(b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n")
    assert head.content_length == 5 and head.headers == [(b"content-length", b"5")]
    for bad in (b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", b"Content-Length: -1\r\n\r\n", b"Content-Length: x\r\n\r\n"):
        with pytest.raises(ProtocolError):
            CGIHeadParser().feed(bad)


@pytest.mark.parametrize("raw", [
    b"Status: 600 Nope\r\n\r\n", b"Status: 99\r\n\r\n", b"Status: abc\r\n\r\n", b"Status: 2000\r\n\r\n",
    b"Status:\r\n\r\n", b"no colon here\r\n\r\n", b"Bad Name: x\r\n\r\n", b"A: b\r\n continued\r\n\r\n",
])
def test_malformed_heads_raise(raw):
    for _ in range(2):  # the second time too: only valid lines are remembered
        with pytest.raises(ProtocolError):
            CGIHeadParser().feed(raw)


def test_head_without_blank_line_fails_at_end():
    parser = CGIHeadParser()
    assert parser.feed(b"Content-Type: text/plain\r\n") is None
    with pytest.raises(ProtocolError, match="blank line"):
        parser.finish()


def test_oversized_head_raises_incrementally_and_at_once():
    parser = CGIHeadParser()
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    with pytest.raises(ProtocolError, match="64 KiB"):
        for _ in range(70):
            parser.feed(line)
    with pytest.raises(ProtocolError, match="64 KiB"):
        CGIHeadParser().feed(line * 70 + b"\r\nbody")
    head, _ = head_of(b"X: " + b"a" * (MAX_HEAD - 10) + b"\r\n\r\n")
    assert head.status == 200


def test_new_script_is_found_at_once_and_a_found_one_is_not_stat_again(docroot, monkeypatch):
    from proxy.upstream import cgi
    target = b"/fresh.php/tail"
    assert params(target=target, document_root=str(docroot))[b"SCRIPT_NAME"] == target  # missing
    (docroot / "fresh.php").write_text("<?php")
    assert params(target=target, document_root=str(docroot))[b"SCRIPT_NAME"] == b"/fresh.php"
    calls = []
    real_stat = cgi.os.stat
    monkeypatch.setattr(cgi.os, "stat", lambda path: calls.append(path) or real_stat(path))
    for _ in range(5):
        assert params(target=target, document_root=str(docroot))[b"PATH_INFO"] == b"/tail"
    assert calls == []


def test_removed_script_is_forgotten_after_the_cache_ttl(docroot, monkeypatch):
    from proxy.upstream import cgi
    monkeypatch.setattr(cgi, "STAT_CACHE_TTL", 0.05)
    target = b"/gone.php/tail"
    (docroot / "gone.php").write_text("<?php")
    assert params(target=target, document_root=str(docroot))[b"SCRIPT_NAME"] == b"/gone.php"
    (docroot / "gone.php").unlink()
    wait_for(lambda: params(target=target, document_root=str(docroot))[b"SCRIPT_NAME"] == target,
             2, what="the removed script to drop out of the stat cache")


def test_stat_cache_remembers_found_paths_for_its_ttl_and_missing_ones_never(tmp_path):
    now = [0.0]
    cache = StatCache(ttl=1.0, clock=lambda: now[0])
    script = tmp_path / "index.php"
    path = bytes(script)
    assert cache.mode(path) is None
    script.write_text("<?php")
    assert cache.mode(path) is not None  # a missing path is looked up again at once
    script.unlink()
    now[0] = 0.9
    assert cache.mode(path) is not None  # still remembered
    now[0] = 1.0
    assert cache.mode(path) is None


def test_split_path_info_takes_its_stat_lookup(tmp_path):
    modes = {b"/root/app.php": stat.S_IFREG, b"/root": stat.S_IFDIR}
    assert split_path_info(b"/root", b"/app.php/extra", modes.get) == (b"/app.php", b"/extra")


def test_encoded_params_are_the_params_and_follow_every_part_of_the_request():
    """The encoded form caches the server's and the client's params: each request still
    gets its own (HTTPS, method, Host, client port), and the same pairs as build_params."""
    from proxy.upstream import fastcgi_records as fr
    from proxy.upstream.cgi import encoded_params
    base = dict(target=b"/index.php?a=1", headers=[(b"host", b"example.org")], client=("192.0.2.1", 5555),
                server=("127.0.0.1", 8080))
    for https, method, host, port in [(False, "GET", "example.org", 5555), (True, "GET", "example.org", 5555),
                                      (False, "HEAD", "example.org", 5555), (False, "GET", "other.org:81", 5555),
                                      (False, "GET", "example.org", 6666), (False, "GET", "example.org", 5555)]:
        request = UpstreamRequest(**{**base, "method": method, "https": https, "host": host,
                                     "client": ("192.0.2.1", port)})
        pairs = build_params(request, server_software="Director/1")
        assert fr.decode_name_values(encoded_params(request, server_software="Director/1")) == pairs
        p = dict(pairs)
        assert (b"HTTPS" in p) == https
        assert p[b"REQUEST_METHOD"] == method.encode()
        assert p[b"SERVER_NAME"] == host.split(":")[0].encode()
        assert p[b"REMOTE_PORT"] == str(port).encode()
