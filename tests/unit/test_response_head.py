"""The traffic plane's response head (proxy.response_head) is written as Twisted wrote it."""
from __future__ import annotations

from proxy.response_head import add_field, field_name, field_value, status_line


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
    head = [status_line(b"HTTP/1.1", 404)]
    add_field(head, b"content-length", b"0")
    assert b"".join(head) == b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
    assert status_line(b"HTTP/1.0", 599) == b"HTTP/1.0 599 Unknown Status\r\n"
