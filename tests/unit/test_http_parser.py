"""The upstream response parser: framing rules (RFC 9112 §6.3), strictness, and identical
results whatever the split of the input into chunks."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import ConnectionClosed, ProtocolError
from proxy.upstream.http_parser import MAX_HEAD, MAX_TRAILERS, ResponseParser

OK_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Name:  spaced value \t\r\n\r\nhello"
OK_CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;ext=1;q=\"x\"\r\nhello\r\n6 ; e\r\n world\r\n0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n")
CHUNKED_AND_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
CHUNKED_HTTP10 = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
UNTIL_CLOSE = b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nall of this until EOF"
INTERIM = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\nX: 1\r\n\r\n"
NOT_MODIFIED = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"
HEAD_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"
HTTP10_PLAIN = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"
HTTP10_KEEPALIVE = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi"
CONNECTION_CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
REPEATED_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\ncontent-length: 3\r\n\r\nabc"
NO_REASON = b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"
OBS_TEXT = b"HTTP/1.1 200 \xc3\xa9t\xe9\r\nX-Latin: caf\xe9\r\nContent-Length: 0\r\n\r\n"
TRAILING_BYTES = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n"

PROTOCOL_ERRORS = {
    "garbage": b"SSH-2.0-OpenSSH\r\n\r\n",
    "lowercase-http": b"http/1.1 200 OK\r\n\r\n",
    "http2": b"HTTP/2 200 OK\r\n\r\n",
    "status-99": b"HTTP/1.1 099 Low\r\n\r\n",
    "status-600": b"HTTP/1.1 600 High\r\n\r\n",
    "status-short": b"HTTP/1.1 20 OK\r\n\r\n",
    "switching-protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
    "bad-name": b"HTTP/1.1 200 OK\r\nX@Y: a\r\n\r\n",
    "empty-name": b"HTTP/1.1 200 OK\r\n: a\r\n\r\n",
    "ctl-in-value": b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    "bare-cr-in-value": b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
    "bare-lf-lines": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "no-colon": b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n",
    "differing-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "differing-length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab",
    "negative-length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "alpha-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n",
    "empty-length": b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
    "plus-length": b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
    "gzip-coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    "chunked-not-final": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "chunked-twice": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "negative-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "empty-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
    "chunk-too-long": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
    "chunk-line-too-long": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * 5000 + b"\r\nx\r\n0\r\n\r\n",
    "bad-trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
    "huge-trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"T: x\r\n" * (MAX_TRAILERS // 6 + 1) + b"\r\n",
    "huge-head": b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n",
    "huge-head-unterminated": b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 10),
}

CONNECTION_CLOSED = {
    "nothing": b"",
    "in-status-line": b"HTTP/1.1 200",
    "in-head": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
    "mid-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    "no-last-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    "in-trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n",
    "after-interim": b"HTTP/1.1 100 Continue\r\n\r\n",
}


class Recorder:
    """A parser sink recording what it is told."""

    def __init__(self):
        self.heads, self.body, self.completions = [], bytearray(), 0

    def on_head(self, head):
        assert self.completions == 0
        self.heads.append((head.status, head.version, head.headers, head.keep_alive, head.length))

    def on_body(self, data):
        assert self.heads and not self.completions
        self.body += data

    def on_complete(self):
        self.completions += 1


def run(raw: bytes, cuts=(), head_request=False, eof=True):
    """Feed `raw` split at `cuts`; the outcome as comparable data (or the error raised)."""
    sink = Recorder()
    parser = ResponseParser(sink)
    parser.start(head_request)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(raw))), len(raw)]
    try:
        for start, end in zip(bounds, bounds[1:]):
            parser.feed(raw[start:end])
        if eof:
            parser.feed_eof()
    except (ProtocolError, ConnectionClosed) as exc:
        return type(exc), None  # messages may quote however much had arrived
    return sink.heads, bytes(sink.body), sink.completions, parser.keep_alive, parser.extra_data


def head_of(result):
    heads, *_ = result
    assert len(heads) == 1, result
    return heads[0]


def test_content_length_body_and_fields():
    heads, body, done, keep_alive, extra = run(OK_LENGTH)
    assert heads == [(200, 1, [(b"content-length", b"5"), (b"x-name", b"spaced value")], True, 5)]
    assert (body, done, keep_alive, extra) == (b"hello", 1, True, False)


def test_chunked_decoded_extensions_ignored_trailers_dropped():
    heads, body, done, keep_alive, _ = run(OK_CHUNKED)
    assert heads == [(200, 1, [], True, None)]
    assert (body, done, keep_alive) == (b"hello world", 1, True)


def test_chunked_wins_over_content_length_and_connection_is_not_reused():
    status, _, headers, keep_alive, length = head_of(run(CHUNKED_AND_LENGTH))
    assert (headers, keep_alive, length) == ([], False, None)
    assert run(CHUNKED_AND_LENGTH)[1] == b"abc"


def test_chunked_in_http10_is_read_but_never_reused():
    assert run(CHUNKED_HTTP10)[1:4] == (b"x", 1, False)


def test_no_framing_reads_until_close():
    heads, body, done, keep_alive, _ = run(UNTIL_CLOSE)
    assert heads[0][3:] == (False, None)
    assert (body, done, keep_alive) == (b"all of this until EOF", 1, False)
    assert run(UNTIL_CLOSE, eof=False)[2] == 0  # not complete before the close


def test_interim_responses_are_skipped():
    heads, body, done, _, _ = run(INTERIM)
    assert [h[0] for h in heads] == [200]
    assert (body, done) == (b"ok", 1)


@pytest.mark.parametrize("raw, kept", [(NO_CONTENT, []), (NOT_MODIFIED, [(b"content-length", b"7")])])
def test_204_and_304_have_no_body(raw, kept):
    status, _, headers, keep_alive, length = head_of(run(raw + b"", eof=False))
    assert [h for h in headers if h[0] == b"content-length"] == kept
    assert (keep_alive, length) == (True, 0)
    assert run(raw, eof=False)[1:3] == (b"", 1)


def test_head_request_has_no_body_but_keeps_content_length():
    heads, body, done, keep_alive, _ = run(HEAD_ANSWER, head_request=True, eof=False)
    assert heads[0][2] == [(b"content-length", b"7")]
    assert (body, done, keep_alive) == (b"", 1, True)


@pytest.mark.parametrize("raw, keep_alive", [
    (HTTP10_PLAIN, False), (HTTP10_KEEPALIVE, True), (CONNECTION_CLOSE, False), (OK_LENGTH, True)])
def test_connection_persistence(raw, keep_alive):
    assert run(raw)[3] is keep_alive


def test_repeated_identical_lengths_become_one_field():
    headers = head_of(run(REPEATED_LENGTH))[2]
    assert headers == [(b"content-length", b"3")]
    assert run(REPEATED_LENGTH)[1] == b"abc"


def test_status_line_without_reason_and_obs_text():
    assert head_of(run(NO_REASON))[0] == 404
    assert head_of(run(OBS_TEXT))[2][0] == (b"x-latin", b"caf\xe9")


def test_bytes_after_the_response_are_flagged():
    assert run(TRAILING_BYTES)[1:] == (b"hi", 1, True, True)


def test_parser_is_reusable_for_the_next_response():
    parser = ResponseParser(Recorder())
    for raw, body in ((OK_LENGTH, b"hello"), (OK_CHUNKED, b"hello world")):
        parser._sink = sink = Recorder()
        parser.start()
        parser.feed(raw)
        assert parser.done and sink.body == body


@pytest.mark.parametrize("name", sorted(PROTOCOL_ERRORS))
def test_protocol_errors(name):
    assert run(PROTOCOL_ERRORS[name])[0] is ProtocolError


@pytest.mark.parametrize("name", sorted(CONNECTION_CLOSED))
def test_premature_close(name):
    assert run(CONNECTION_CLOSED[name])[0] is ConnectionClosed


def test_garbage_is_rejected_before_a_full_head_arrives():
    sink = Recorder()
    parser = ResponseParser(sink)
    with pytest.raises(ProtocolError):
        parser.feed(b"SSH-2")
    parser = ResponseParser(sink)
    parser.feed(b"HTT")  # still a possible prefix
    with pytest.raises(ProtocolError):
        parser.feed(b"P/1.1 200 OK\nX: 1\n\n")


def test_data_after_a_protocol_error_keeps_failing():
    parser = ResponseParser(Recorder())
    with pytest.raises(ProtocolError):
        parser.feed(PROTOCOL_ERRORS["obs-fold"])
    with pytest.raises(ProtocolError):
        parser.feed(b"more")


SAMPLES = [OK_LENGTH, OK_CHUNKED, CHUNKED_AND_LENGTH, UNTIL_CLOSE, INTERIM, NO_CONTENT, REPEATED_LENGTH,
           TRAILING_BYTES, *(v for k, v in PROTOCOL_ERRORS.items() if not k.startswith("huge")),
           *CONNECTION_CLOSED.values()]


def chunk_cuts(raw: bytes, sizes: list[int]) -> list[int]:
    """Cut positions splitting `raw` into pieces of the given sizes, cycling through them."""
    cuts, pos = [], 0
    while sizes and pos < len(raw):
        for size in sizes:
            pos += size
            cuts.append(pos)
    return cuts


@pytest.mark.parametrize("raw", SAMPLES)
def test_every_single_split_and_byte_by_byte_give_the_same_result(raw):
    whole = run(raw)
    assert all(run(raw, [cut]) == whole for cut in range(1, len(raw)))
    assert run(raw, range(1, len(raw))) == whole


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.lists(st.integers(min_value=1, max_value=24), min_size=1, max_size=12))
def test_any_chunking_gives_the_same_result(raw, sizes):
    assert run(raw, chunk_cuts(raw, sizes)) == run(raw)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([k for k in PROTOCOL_ERRORS if k.startswith("huge")] + ["huge-body"]),
       st.lists(st.integers(min_value=1, max_value=MAX_HEAD + 200), max_size=8))
def test_any_chunking_of_large_inputs_gives_the_same_result(name, cuts):
    raw = PROTOCOL_ERRORS.get(name) or (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        b"10000\r\n" + b"z" * 0x10000 + b"\r\n0\r\n\r\n")
    assert run(raw, cuts) == run(raw)


UPGRADED = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n\x81\x02hi")


@pytest.mark.parametrize("cuts", [(), (30,), (60, 61), tuple(range(0, len(UPGRADED), 7))])
def test_a_101_to_an_upgrade_request_is_its_head_and_the_rest_is_the_new_protocol(cuts):
    sink = Recorder()
    parser = ResponseParser(sink)
    parser.start(upgrade=True)
    bounds = [0, *cuts, len(UPGRADED)]
    for start, end in zip(bounds, bounds[1:]):
        parser.feed(UPGRADED[start:end])
    assert sink.heads == [(101, 1, [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")], False, None)]
    assert (bytes(sink.body), sink.completions, parser.keep_alive) == (b"\x81\x02hi", 0, False)


def test_an_upgrade_request_may_get_an_ordinary_answer():
    sink = Recorder()
    parser = ResponseParser(sink)
    parser.start(upgrade=True)
    parser.feed(OK_LENGTH)
    assert (sink.heads[0][0], bytes(sink.body), sink.completions) == (200, b"hello", 1)


FIELD_NAMES = st.sampled_from([b"X-A", b"x-b", b"Server", b"CONNECTION", b"Connection", b"Set-Cookie", b"Vary",
                               b"Content-Length", b"content-LENGTH"])
OWS_RUN = st.sampled_from([b"", b" ", b"\t", b"  \t "])
FIELD_TEXT = st.binary(max_size=12).map(lambda raw: bytes(b for b in raw if 0x21 <= b <= 0x7e or b in b" \t"))


@given(st.lists(st.tuples(FIELD_NAMES, OWS_RUN, FIELD_TEXT, OWS_RUN), max_size=8))
@settings(max_examples=300, deadline=None)
def test_fields_come_out_lower_cased_and_trimmed_in_their_order(fields):
    """Whatever the names' case, the whitespace around values and the neighbours of the
    framing fields: each field is (lower-case name, value without OWS), in order."""
    fields = [(name, before, b"4" if name.lower() == b"content-length" else text, after)
              for name, before, text, after in fields]
    block = b"".join(name + b":" + before + text + after + b"\r\n" for name, before, text, after in fields)
    raw = b"HTTP/1.1 200 OK\r\n" + block + b"Content-Length: 4\r\n\r\nbody"
    status, _, headers, keep_alive, length = head_of(run(raw))
    expected = [(name.lower(), text.strip(b" \t")) for name, _, text, _ in fields]
    assert (status, length) == (200, 4)
    if sum(name == b"content-length" for name, _ in expected) == 0:
        assert headers == [*expected, (b"content-length", b"4")]
    else:  # repeated identical lengths are folded into one, at the end
        assert headers == [field for field in expected if field[0] != b"content-length"] + [(b"content-length", b"4")]
    tokens = {token.strip(b" \t").lower() for name, value in expected if name == b"connection"
              for token in value.split(b",")}
    assert keep_alive is (b"close" not in tokens)


def test_a_remembered_status_line_reads_the_same_and_a_bad_one_stays_bad():
    for _ in range(2):
        assert head_of(run(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"))[:2] == (404, 0)
        assert run(b"HTTP/1.0 404 Not Found\x00\r\nContent-Length: 0\r\n\r\n")[0] is ProtocolError
        assert run(b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n")[0] is ProtocolError
