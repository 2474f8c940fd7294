"""The traffic plane's response head (proxy.response_head) is written as Twisted wrote it."""
from __future__ import annotations

from proxy import response_head
from proxy.response_head import field_line, field_name, field_value, status_line


def test_names_are_title_case_with_the_usual_spellings():
    assert field_name(b"content-type") == b"Content-Type"
    assert field_name(b"x-request-id") == b"X-Request-Id"
    assert field_name(b"etag") == b"ETag"
    assert field_name(b"www-authenticate") == b"WWW-Authenticate"
    assert field_name(b"te") == b"TE"


def test_a_line_break_in_a_value_never_reaches_the_wire():
    assert field_value(b"a\r\nInjected: yes") == b"a Injected: yes"
    assert field_value(b"plain") == b"plain"


def test_a_head_is_built_line_by_line():
    head = [status_line(b"HTTP/1.1", 404), field_line(b"content-length", b"0")]
    assert b"".join(head) == b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
    assert status_line(b"HTTP/1.0", 599) == b"HTTP/1.0 599 Unknown Status\r\n"


def test_a_remembered_line_is_the_line_for_that_very_name_and_value():
    assert field_line(b"x-a", b"1") == b"X-A: 1\r\n"
    assert field_line(b"x-a", b"1") == b"X-A: 1\r\n"
    assert field_line(b"x-a", b"2") == b"X-A: 2\r\n"
    assert field_line(b"x-b", b"1") == b"X-B: 1\r\n"
    assert field_line(b"x-a", b"a\nInjected: yes") == b"X-A: a Injected: yes\r\n"
    assert field_line(b"x-a", b"a\nInjected: yes") == b"X-A: a Injected: yes\r\n"


def test_remembered_lines_stay_bounded_and_long_values_are_not_kept():
    for number in range(3 * response_head._LINES_KEPT):
        assert field_line(b"date", b"%d" % number) == b"Date: %d\r\n" % number
        assert len(response_head._LINES) <= response_head._LINES_KEPT
    long_value = b"v" * (response_head._LINE_VALUE_KEPT + 1)
    assert field_line(b"etag", long_value) == b"ETag: " + long_value + b"\r\n"
    assert (b"etag", long_value) not in response_head._LINES
