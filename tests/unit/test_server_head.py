"""proxy.server_head takes only the heads whose meaning is plain; the line parser gets the rest
(and answers them as before: the server conformance tests hold that)."""
from __future__ import annotations

import pytest

from proxy import server_head
from proxy.server_head import simple_head

LIMIT, FIELDS = 16 * 1024, 500


def test_a_usual_get_is_read_in_one_pass():
    head = b"GET /a?b=c HTTP/1.1\r\nHost: example.test\r\nAccept:  */* \t\r\nX-Empty:\r\n\r\n"
    assert simple_head(head, LIMIT, FIELDS) == (
        b"GET", b"/a?b=c", b"HTTP/1.1", [(b"host", b"example.test"), (b"accept", b"*/*"), (b"x-empty", b"")])


def test_fields_keep_their_order_and_repeats_and_a_tab_inside_a_value():
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: a\tb\r\nx-a: 2\r\n\r\n"
    assert simple_head(head, LIMIT, FIELDS)[3] == [(b"host", b"h"), (b"x-a", b"1"), (b"x-b", b"a\tb"), (b"x-a", b"2")]


def test_a_head_without_fields_is_read_too():
    assert simple_head(b"GET / HTTP/1.0\r\n\r\n", LIMIT, FIELDS) == (b"GET", b"/", b"HTTP/1.0", [])


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",  # a body is announced: framing rules
    b"POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",  # Twisted answers 100 Continue
    b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",  # bare LF
    b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",  # bare CR
    b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",  # NUL in a value
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",  # another control character (400 from the request)
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n",  # DEL
    b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",  # a name that is not a token
    b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",  # space before the colon
    b"GET / HTTP/1.1\r\n: x\r\n\r\n",  # no name
    b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
    b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",  # a target byte outside visible ASCII
    b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",  # two spaces
    b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",  # not HTTP/1.x
    b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n",  # a method that is not a token
    b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",  # an empty line first
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n",  # pipelined bytes after the head
    b"GET / HTTP/1.1\r\nHost: h\r\n",  # incomplete
])
def test_everything_else_is_left_to_the_line_parser(head):
    assert simple_head(head, LIMIT, FIELDS) is None


def test_the_limits_are_the_line_parsers_to_answer():
    head = b"GET / HTTP/1.1\r\nX: " + b"y" * 100 + b"\r\n\r\n"
    assert simple_head(head, len(head), FIELDS) is not None
    assert simple_head(head, len(head) - 1, FIELDS) is None  # over the head limit: 431 from the line parser
    many = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3 + b"\r\n"
    assert simple_head(many, LIMIT, 4) is not None
    assert simple_head(many, LIMIT, 3) is None


def test_a_remembered_request_line_reads_the_same_and_a_bad_one_is_never_taken():
    for _ in range(2):
        assert simple_head(b"GET /r?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", LIMIT, FIELDS)[:3] == (
            b"GET", b"/r?x=1", b"HTTP/1.1")
        assert simple_head(b"GET /r\x7f HTTP/1.1\r\nHost: h\r\n\r\n", LIMIT, FIELDS) is None


def test_remembered_request_lines_stay_bounded():
    for number in range(3 * server_head._KNOWN_REQUEST_LINES_KEPT):
        head = b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % number
        assert simple_head(head, LIMIT, FIELDS)[1] == b"/%d" % number
        assert len(server_head._KNOWN_REQUEST_LINES) <= server_head._KNOWN_REQUEST_LINES_KEPT
