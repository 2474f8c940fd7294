"""Application failures and client disconnects on a real DirectorServer (SPEC §7 item 6).

A response that cannot be completed closes the connection: a chunked one without its final
chunk, a length-delimited one short. A pipelined request behind it never gets an answer on
that connection, so no foreign bytes can be mistaken for the body.
"""
import pytest

from tests.support.rawhttp import IncompleteBody, request
from tests.support.server_harness import server_fixture
from tests.support.waiting import wait_for

server = server_fixture()

GET_HELLO = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"


def get(path: str) -> bytes:
    return request("GET", path, {"Host": "test"})


def assert_healthy(connect):
    """A fresh connection still gets a complete answer."""
    with connect() as conn:
        conn.send(GET_HELLO)
        response = conn.read_response()
        assert response.status == 200 and response.body in (b"hello", b"management")


@pytest.mark.parametrize("plane", ["traffic", "management"])
@pytest.mark.parametrize("path, chunked", [("/chunked-then-raise", True), ("/length-then-raise", False)])
def test_failure_after_response_start_truncates_and_closes(server, plane, path, chunked):
    connect = server.connect if plane == "traffic" else server.connect_management
    for _ in range(3):  # repeatedly: the server's bookkeeping must survive each failure
        with connect() as conn:
            conn.send(get(path) + GET_HELLO)
            response = conn.read_head()
            assert response.status == 200
            assert response.is_chunked is chunked
            with pytest.raises(IncompleteBody) as cut:
                conn.read_body(response)
            assert cut.value.received == (b"partial" if chunked else b"0123456789")
            assert conn.buffer == b"", "bytes of the pipelined response leaked into the body"
            assert conn.eof
    assert_healthy(connect)


def test_short_body_closes_instead_of_keeping_alive(server):
    with server.connect() as conn:
        conn.send(get("/short") + GET_HELLO)
        response = conn.read_head()
        assert response.header("content-length") == "100"
        with pytest.raises(IncompleteBody) as cut:
            conn.read_body(response)
        assert cut.value.received == b"0123456789"
        assert conn.buffer == b""
    assert_healthy(server.connect)


def test_body_longer_than_content_length_is_cut_and_closed(server):
    with server.connect() as conn:
        conn.send(get("/long") + GET_HELLO)
        response = conn.read_response()
        assert response.body == b"01234"
        assert conn.at_eof(timeout=2), "connection stayed open after an over-long body"


@pytest.mark.parametrize("plane", ["traffic", "management"])
@pytest.mark.parametrize("path", ["/raise-before", "/return-without-response", "/start-then-raise"])
def test_failure_before_response_start_answers_500_and_keeps_the_connection(server, plane, path):
    connect = server.connect if plane == "traffic" else server.connect_management
    with connect() as conn:
        conn.send(get(path) + GET_HELLO)
        failed = conn.read_response()
        assert failed.status == 500
        assert failed.header("content-type").startswith("text/plain")
        assert failed.body == b"500 Internal Server Error\n"
        assert failed.header("set-cookie") is None, "headers of the failed response leaked"
        assert conn.read_response().status == 200


def test_client_disconnect_cancels_the_traffic_app(server):
    before = server.stats()
    conn = server.connect()
    conn.send(get("/hang"))
    wait_for(lambda: server.stats()["hanging"] > before["hanging"], timeout=5, what="the app to start")
    conn.close()
    after = wait_for(
        lambda: (s := server.stats())["cancelled"] > before["cancelled"] and s,
        timeout=2, what="the app task to be cancelled",
    )
    wait_for(lambda: server.stats()["disconnect_messages"] > before["disconnect_messages"], timeout=2,
             what="http.disconnect on receive()")
    assert after["cancelled"] == before["cancelled"] + 1
