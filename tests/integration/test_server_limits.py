"""Front-side limits and request rules (SPEC §7 "Front-side limits") on raw sockets.

Every refusal is a small plain-text response with Content-Length; the ones that close say
`Connection: close` and then close. None of these requests reaches the application.
"""
import json

import pytest

from tests.support.rawhttp import RawHTTP, request
from tests.support.server_harness import server_fixture

MAX_BODY = 100_000
server = server_fixture("--max-request-body", str(MAX_BODY))

HEAD_LIMIT = 16 * 1024
GET_HELLO = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"
NO_HOST = b"GET /hello HTTP/1.1\r\n\r\n"
TWO_HOSTS = b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
HTTP10_NO_HOST = b"GET /hello HTTP/1.0\r\n\r\n"
ABSOLUTE_FORM = b"GET http://test/hello HTTP/1.1\r\nHost: test\r\n\r\n"
ASTERISK_FORM = b"OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n"
CONNECT = b"CONNECT test:443 HTTP/1.1\r\nHost: test:443\r\n\r\n"
TRACE = b"TRACE /hello HTTP/1.1\r\nHost: test\r\n\r\n"
MISSING_VERSION = b"GET /hello\r\nHost: test\r\n\r\n"
BAD_VERSION = b"GET /hello HTTP/2.0\r\nHost: test\r\n\r\n"
HEADER_WITHOUT_COLON = b"GET /hello HTTP/1.1\r\nHost: test\r\nbroken header\r\n\r\n"
SPACE_IN_HEADER_NAME = b"GET /hello HTTP/1.1\r\nHost: test\r\nBad Name: x\r\n\r\n"
CONTROL_IN_HEADER_VALUE = b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Ctl: a\x0bb\r\n\r\n"
LENGTH_AND_CHUNKED = (b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
BAD_CHUNK_SIZE = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
CHUNKED_HEAD = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
# Each of these used to wait, unanswered, for the 408 at header_timeout (10 s here).
CHUNK_OF_2_64 = CHUNKED_HEAD + b"10000000000000000\r\nabc"
BARE_LF_HEAD = b"GET /hello HTTP/1.1\nHost: test\n\n"
BARE_LF_CHUNK_SIZE = CHUNKED_HEAD + b"3\nabc"
TRAILER_BARE_LF = CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX: y\n\r\n" + GET_HELLO  # GET_HELLO was eaten as trailers
TRAILER_NOT_A_FIELD = CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nnot a header\r\n\r\n"
TRAILERS_OVER_LIMIT = CHUNKED_HEAD + b"0\r\n" + b"".join(b"X%d: v\r\n" % i for i in range(501)) + b"\r\n"
LOWER_CASE_TRACE = b"trace /hello HTTP/1.1\r\nHost: test\r\n\r\n"
DEL_IN_PATH = b"GET /hel\x7flo HTTP/1.1\r\nHost: test\r\n\r\n"
HIGH_BYTE_IN_QUERY = b"GET /hello?q=\x85 HTTP/1.1\r\nHost: test\r\n\r\n"


def head_of_size(size: int) -> bytes:
    """A GET /hello whose head (request line to final CRLF) is exactly `size` bytes."""
    base = b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Pad: \r\n\r\n"
    return base.replace(b"X-Pad: ", b"X-Pad: " + b"a" * (size - len(base)))


def exchange(server, data: bytes) -> tuple:
    """Send `data`; return the first response and whether the server then closed."""
    with server.connect() as conn:
        conn.send(data)
        response = conn.read_response()
        return response, conn.at_eof(timeout=2)


def assert_refused(response, closed, status: int, *, close: bool = True):
    assert response.status == status, response
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert int(response.header("content-length")) == len(response.body) < 100
    assert response.body.startswith(b"%d " % status)
    if close:
        assert response.header("connection") == "close"
        assert closed, "the server kept the connection open"


@pytest.mark.parametrize("data", [NO_HOST, TWO_HOSTS, ABSOLUTE_FORM, ASTERISK_FORM], ids=[
    "no-host", "two-hosts", "absolute-form", "asterisk-form"])
def test_target_and_host_rules_answer_400(server, data):
    assert_refused(*exchange(server, data), 400)


@pytest.mark.parametrize("data", [CONNECT, TRACE], ids=["connect", "trace"])
def test_connect_and_trace_answer_405_and_keep_the_connection(server, data):
    with server.connect() as conn:
        conn.send(data + GET_HELLO)
        refused = conn.read_response()
        assert_refused(refused, False, 405, close=False)
        assert refused.header("allow")
        assert conn.read_response().body == b"hello"


def test_http10_without_host_is_served(server):
    response, closed = exchange(server, HTTP10_NO_HOST)
    assert (response.status, response.body) == (200, b"hello")


@pytest.mark.parametrize("data", [
    MISSING_VERSION, BAD_VERSION, HEADER_WITHOUT_COLON, SPACE_IN_HEADER_NAME, CONTROL_IN_HEADER_VALUE,
    LENGTH_AND_CHUNKED, BAD_CHUNK_SIZE,
], ids=["missing-version", "bad-version", "no-colon", "space-in-name", "control-in-value", "length-and-chunked",
        "bad-chunk-size"])
def test_malformed_requests_answer_400_and_close(server, data):
    assert_refused(*exchange(server, data), 400)


@pytest.mark.parametrize("data", [
    BARE_LF_HEAD, CHUNK_OF_2_64, BARE_LF_CHUNK_SIZE, TRAILER_BARE_LF, TRAILER_NOT_A_FIELD, TRAILERS_OVER_LIMIT,
    LOWER_CASE_TRACE, DEL_IN_PATH, HIGH_BYTE_IN_QUERY,
], ids=["bare-lf-head", "chunk-size-2^64", "bare-lf-chunk-size", "trailer-bare-lf", "trailer-not-a-field",
        "501-trailers", "lower-case-trace", "del-in-path", "high-byte-in-query"])
def test_malformed_requests_are_refused_at_once_not_at_header_timeout(server, data):
    assert_refused(*exchange(server, data), 400)  # exchange reads with a 5 s deadline


def test_chunk_size_beyond_max_request_body_answers_413_before_its_data(server):
    assert_refused(*exchange(server, CHUNKED_HEAD + b"%x\r\nabc" % (MAX_BODY + 1)), 413)


def test_valid_trailers_are_dropped_and_the_pipelined_request_is_answered(server):
    trailers = b"0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n"
    with server.connect() as conn:
        conn.send(CHUNKED_HEAD + b"3\r\nabc\r\n" + trailers + GET_HELLO)
        assert json.loads(conn.read_response().body)["length"] == 3
        assert conn.read_response().body == b"hello"


@pytest.mark.parametrize("value", ["close, foo", "close,foo", "Foo, CLOSE", "keep-alive ,close"])
def test_connection_close_is_honoured_in_any_position(server, value):
    response, closed = exchange(server, request("GET", "/hello", {"Host": "test", "Connection": value}))
    assert response.status == 200 and response.header("connection") == "close"
    assert closed


def test_head_at_the_limit_is_served(server):
    response, _ = exchange(server, head_of_size(HEAD_LIMIT))
    assert response.status == 200


def test_one_long_header_line_answers_431(server):
    assert_refused(*exchange(server, head_of_size(HEAD_LIMIT + 1)), 431)


def test_long_header_line_arriving_without_end_answers_431(server):
    assert_refused(*exchange(server, b"GET /hello HTTP/1.1\r\nX-Pad: " + b"a" * 20_000), 431)


def test_many_headers_over_the_limit_answer_431(server):
    headers = b"".join(b"X-Header-%03d: %s\r\n" % (i, b"v" * 80) for i in range(200))
    assert_refused(*exchange(server, b"GET /hello HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n"), 431)


def test_more_than_500_headers_answer_431(server):
    headers = b"".join(b"X%d: v\r\n" % i for i in range(501))
    assert_refused(*exchange(server, b"GET /hello HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n"), 431)


def test_announced_body_over_the_limit_answers_413_before_it_is_sent(server):
    head = request("POST", "/echo", {"Host": "test", "Content-Length": MAX_BODY + 1})
    assert_refused(*exchange(server, head), 413)  # no body bytes were ever sent


def test_chunked_body_over_the_limit_answers_413(server):
    chunk = b"%x\r\n%s\r\n" % (10_000, b"c" * 10_000)
    head = request("POST", "/echo", {"Host": "test", "Transfer-Encoding": "chunked"})
    with server.connect() as conn:
        conn.send(head + chunk * 11)  # 110 000 bytes: over the limit, no final chunk
        assert_refused(conn.read_response(), conn.at_eof(timeout=2), 413)


def test_body_at_the_limit_is_accepted(server):
    body = b"b" * MAX_BODY
    with server.connect() as conn:
        conn.send(request("POST", "/echo", {"Host": "test", "Content-Length": len(body)}, body))
        assert json.loads(conn.read_response().body)["length"] == MAX_BODY


@pytest.mark.parametrize("plane", ["traffic", "management"])
def test_daphne_root_path_header_is_ignored(server, plane):
    connect = server.connect if plane == "traffic" else server.connect_management
    with connect() as conn:
        conn.send(request("GET", "/scope", {"Host": "test", "Daphne-Root-Path": "/evil"}))
        assert json.loads(conn.read_response().body)["root_path"] == ""


def test_scope_carries_raw_target_and_drops_underscore_headers(server):
    with server.connect() as conn:
        conn.send(request("GET", "/scope?a=%20b&c", {"Host": "test", "X_Forwarded_For": "spoof", "Upgrade": "websocket",
                                                     "Connection": "upgrade"}))
        scope = json.loads(conn.read_response().body)
    assert scope["raw_path"] == "/scope" and scope["query_string"] == "a=%20b&c"
    names = [name for name, _ in scope["headers"]]
    assert "x_forwarded_for" not in names
    assert "upgrade" in names  # the traffic plane never upgrades: Upgrade is an ordinary header
    assert scope["client"][0] == "127.0.0.1" and scope["server"][1] == server.address[1]


def test_unix_socket_peer_has_no_address(tmp_path):
    from tests.support.server_harness import start_server

    path = str(tmp_path / "t.sock")
    with start_server(tmp_path, "--unix", path):
        with RawHTTP.unix(path) as conn:
            conn.send(request("GET", "/scope", {"Host": "test"}))
            scope = json.loads(conn.read_response().body)
    assert scope["client"] is None and scope["server"] is None


def test_pipelined_requests_are_answered_in_order(server):
    body = b"p" * 70_000
    batch = (GET_HELLO + request("POST", "/echo", {"Host": "test", "Content-Length": len(body)}, body)
             + request("GET", "/scope?n=3", {"Host": "test"})) * 5
    with server.connect() as conn:
        conn.send(batch)
        for _ in range(5):
            assert conn.read_response().body == b"hello"
            assert json.loads(conn.read_response().body)["length"] == len(body)
            assert json.loads(conn.read_response().body)["query_string"] == "n=3"
        assert conn.at_eof(timeout=0.3) is False  # still open for more
