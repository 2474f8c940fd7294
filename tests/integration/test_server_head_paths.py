"""A head read in one pass (proxy.server_head) and the same head read line by line by
Twisted's parser (it arrives in pieces) get the same answer, and so does a bad head."""
from __future__ import annotations

import json
import time

from tests.support.server_harness import server_fixture

server = server_fixture()

GOOD = b"GET /hello HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"
BAD = b"GET /hello HTTP/1.1\r\nHost: example.test\r\nBad Name: x\r\n\r\n"


def answer(server, pieces: list[bytes]):
    with server.connect() as conn:
        for piece in pieces:
            conn.send(piece)
            time.sleep(0.05)  # separate reads on the server's side
        response = conn.read_head()
        body = conn.read_body(response)
    headers = sorted((k.lower(), v) for k, v in response.headers if k.lower() not in ("date", "x-request-id"))
    return response.status, response.reason, headers, body


def test_a_head_in_one_read_answers_as_one_in_pieces(server):
    whole = answer(server, [GOOD])
    assert whole[0] == 200 and whole[3] == b"hello"
    assert answer(server, [GOOD[:20], GOOD[20:41], GOOD[41:]]) == whole


def test_a_bad_head_in_one_read_answers_as_one_in_pieces(server):
    whole = answer(server, [BAD])
    assert whole[0] == 400
    assert answer(server, [BAD[:30], BAD[30:]]) == whole


def test_pipelined_requests_in_one_read_are_answered_in_order(server):
    with server.connect() as conn:
        conn.send(GOOD + GOOD.replace(b"/hello", b"/missing-route"))
        first = conn.read_head()
        assert conn.read_body(first) == b"hello"
        second = conn.read_head()
        conn.read_body(second)
    assert (first.status, second.status) == (200, 404)


SCOPE = b"GET /scope HTTP/1.1\r\nHost: example.test\r\nX-Under_Score: 1\r\nAccept:  */* \r\nX-Tab: a\tb\r\n\r\n"


def test_the_application_gets_the_same_headers_either_way(server):
    status, _, _, body = answer(server, [SCOPE])
    assert status == 200
    headers = json.loads(body)["headers"]
    assert headers == [["host", "example.test"], ["accept", "*/*"], ["x-tab", "a\tb"]]  # no X-Under_Score
    assert json.loads(answer(server, [SCOPE[:25], SCOPE[25:]])[3])["headers"] == headers


def test_a_control_character_in_a_value_is_refused_either_way(server):
    bad = b"GET /hello HTTP/1.1\r\nHost: example.test\r\nX: a\x01b\r\n\r\n"
    whole = answer(server, [bad])
    assert whole[0] == 400
    assert answer(server, [bad[:25], bad[25:]]) == whole
