"""Memory stays bounded in both directions (SPEC §7: a client that stops reading makes
the proxy stop reading the backend; request bodies are spooled, not held in memory)."""
import hashlib
import json
import time

from proxy.server_channel import SEND_SETTLE
from proxy.server_protocol import BODY_CHUNK
from tests.support.rawhttp import request
from tests.support.server_harness import server_fixture
from tests.support.waiting import wait_for

server = server_fixture("--max-request-body", str(64 << 20))
SEND_TIMEOUT = 1.0
impatient = server_fixture("--send-timeout", str(SEND_TIMEOUT))

STREAM_MIB = 200
SLOW_MIB = 8
SLOW_READ_BYTES, SLOW_READ_PAUSE = 384 * 1024, 0.6  # 640 KiB/s, in bursts
RSS_GROWTH_LIMIT_KIB = 64 * 1024


def stalled(server, settle: float = 0.5):
    """A predicate for wait_for: true once the streamed-byte counter stops moving."""
    last = {"value": None, "since": time.monotonic()}

    def check():
        value = server.stats()["streamed"]
        if value != last["value"]:
            last.update(value=value, since=time.monotonic())
            return False
        return time.monotonic() - last["since"] >= settle
    return check


def test_client_that_stops_reading_pauses_the_app(server):
    baseline = server.rss_kib()
    before = server.stats()
    with server.connect(timeout=30) as conn:
        conn.send(request("GET", f"/stream?mib={STREAM_MIB}", {"Host": "test"}))
        wait_for(stalled(server), timeout=30, what="the streaming app to block in send()")
        paused = server.stats()
        growth = server.rss_kib() - baseline
        assert paused["stream_done"] == before["stream_done"], "the app streamed everything into memory"
        assert paused["streamed"] - before["streamed"] < 32 << 20
        assert growth < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {growth} KiB"

        response = conn.read_head()
        body = conn.read_body(response, timeout=60)
    assert len(body) == STREAM_MIB << 20
    assert server.stats()["stream_done"] == before["stream_done"] + 1


def test_client_that_reads_nothing_for_send_timeout_is_aborted(impatient):
    before = impatient.stats()
    with impatient.connect(timeout=30) as conn:
        conn.send(request("GET", f"/stream?mib={STREAM_MIB}", {"Host": "test"}))
        wait_for(lambda: impatient.stats()["stream_cancelled"] > before["stream_cancelled"], timeout=10,
                 what="the blocked response to be aborted and its app cancelled")
        received = conn.read_until_eof(timeout=10)
    assert len(received) < STREAM_MIB << 20
    assert impatient.stats()["stream_done"] == before["stream_done"]


def test_client_that_reads_nothing_is_cut_after_one_send_timeout_not_two(impatient):
    """The kernel still takes some bytes just after the response blocks; counting them as
    the client reading used to earn a second send_timeout (about 120 s, not 60). The count
    starts once that has settled, and then looks back a whole send_timeout."""
    before = impatient.stats()
    with impatient.connect(timeout=30) as conn:
        started = time.monotonic()
        conn.send(request("GET", f"/stream?mib={STREAM_MIB}", {"Host": "test"}))
        wait_for(lambda: impatient.stats()["stream_cancelled"] > before["stream_cancelled"], timeout=10,
                 interval=0.05, what="the blocked response to be aborted")
        elapsed = time.monotonic() - started
    settle = min(SEND_SETTLE, SEND_TIMEOUT / 2)
    assert settle + SEND_TIMEOUT <= elapsed < settle + 2 * SEND_TIMEOUT, elapsed


def test_client_reading_slowly_is_not_cut_off(impatient):
    """A client that keeps reading, even slowly and in bursts, outlives send_timeout
    several times: every look back over send_timeout sees one of its bursts.

    (Progress is seen when the client's kernel takes bytes from the server's socket, which
    happens in bursts too: it reopens its receive window only once its reader has freed a
    sixteenth of its buffer. Far slower readers than this one are cut off after
    send_timeout, as with nginx's send_timeout.)"""
    before = impatient.stats()
    with impatient.connect(timeout=30) as conn:
        conn.send(request("GET", f"/stream?mib={SLOW_MIB}", {"Host": "test"}))
        started = time.monotonic()
        while time.monotonic() - started < 3 * SEND_TIMEOUT:
            burst_ends = len(conn.buffer) + SLOW_READ_BYTES
            while len(conn.buffer) < burst_ends:
                conn.buffer += conn.sock.recv(burst_ends - len(conn.buffer))
            time.sleep(SLOW_READ_PAUSE)  # the client's pace is the behaviour under test
        assert impatient.stats()["stream_cancelled"] == before["stream_cancelled"]
        body = conn.read_body(conn.read_head(), timeout=30)
    assert len(body) == SLOW_MIB << 20


def test_request_body_reaches_the_app_in_chunks_and_as_a_file(server):
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB
    with server.connect(timeout=30) as conn:
        conn.send(request("POST", "/echo", {"Host": "test", "Content-Length": len(body)}, body))
        echoed = json.loads(conn.read_response().body)
    digest = hashlib.sha256(body).hexdigest()
    assert echoed["sha256"] == echoed["file_sha256"] == digest
    assert echoed["length"] == echoed["body_length"] == len(body)
    assert echoed["largest_chunk"] == BODY_CHUNK
    assert echoed["chunks"] == len(body) // BODY_CHUNK


def test_chunked_request_body_is_reassembled(server):
    pieces = [b"a" * 1000, b"b" * 70000, b"c"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with server.connect() as conn:
        conn.send(request("POST", "/echo", {"Host": "test", "Transfer-Encoding": "chunked"}, chunked))
        echoed = json.loads(conn.read_response().body)
    assert echoed["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert echoed["body_length"] == 71001


def test_empty_body_is_one_empty_message(server):
    with server.connect() as conn:
        conn.send(request("POST", "/echo", {"Host": "test", "Content-Length": 0}))
        echoed = json.loads(conn.read_response().body)
    assert (echoed["chunks"], echoed["length"], echoed["body_length"]) == (1, 0, 0)
