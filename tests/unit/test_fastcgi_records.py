"""FastCGI record and name-value codec, and the incremental parser (property-based)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.upstream import fastcgi_records as fr

RECORD_TYPES = st.integers(min_value=fr.BEGIN_REQUEST, max_value=fr.UNKNOWN_TYPE)
records = st.builds(
    fr.Record,
    type=RECORD_TYPES,
    request_id=st.integers(min_value=0, max_value=0xFFFF),
    content=st.binary(max_size=300),
    padding=st.integers(min_value=0, max_value=255),
)


def wire(record: fr.Record) -> bytes:
    return fr.encode_record(record.type, record.request_id, record.content, record.padding)


@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(st.lists(records, max_size=8), st.data())
def test_split_stream_parses_like_whole_stream(stream, data):
    raw = b"".join(wire(r) for r in stream)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=10)))
    parser, parsed, start = fr.RecordParser(), [], 0
    for cut in [*cuts, len(raw)]:
        parsed += parser.feed(raw[start:cut])
        start = cut
    assert parsed == fr.RecordParser().feed(raw) == stream
    assert parser.pending == 0


def test_default_padding_aligns_to_eight_bytes():
    for length in range(0, 20):
        assert len(fr.encode_record(fr.STDOUT, 1, b"x" * length)) % 8 == 0


def test_header_layout_is_the_wire_format():
    assert fr.encode_record(fr.STDIN, 0x0102, b"abc") == b"\x01\x05\x01\x02\x00\x03\x05\x00abc" + b"\0" * 5


def test_truncated_record_is_pending_and_wrong_version_raises():
    raw = fr.encode_record(fr.STDOUT, 1, b"hello")
    parser = fr.RecordParser()
    assert parser.feed(raw[:-1]) == [] and parser.pending == len(raw) - 1
    with pytest.raises(fr.RecordFormatError):
        fr.RecordParser().feed(b"\x02" + raw[1:])


def test_stream_chunks_stay_within_record_limit():
    data = bytes(range(256)) * 1000
    parsed = fr.RecordParser().feed(b"".join(fr.encode_stream(fr.STDIN, 3, data)))
    assert all(len(r.content) <= fr.MAX_CONTENT for r in parsed)
    assert b"".join(r.content for r in parsed) == data


def test_oversized_record_content_is_refused():
    with pytest.raises(ValueError):
        fr.encode_record(fr.STDOUT, 1, b"x" * (fr.MAX_CONTENT + 1))


@pytest.mark.parametrize("name_len", [0, 1, 127, 128, 65535, 1 << 20])
@pytest.mark.parametrize("value_len", [0, 1, 127, 128, 65535, 1 << 20])
def test_name_value_round_trip_for_every_length_class(name_len, value_len):
    pairs = [(b"n" * name_len, b"v" * value_len), (b"A", b"b")]
    encoded = b"".join(fr.encode_name_value(n, v) for n, v in pairs)
    long_lengths = (name_len >= 128) + (value_len >= 128)
    assert len(encoded) == 2 + 3 * long_lengths + name_len + value_len + 4
    assert fr.decode_name_values(encoded) == pairs


def test_params_stream_round_trips_through_records():
    pairs = [(b"SCRIPT_NAME", b"/x.php"), (b"HTTP_COOKIE", b"c" * 200_000)]
    parsed = fr.RecordParser().feed(fr.encode_params(7, pairs))
    assert parsed[-1] == fr.Record(fr.PARAMS, 7, b"", 0)
    assert {r.type for r in parsed} == {fr.PARAMS} and {r.request_id for r in parsed} == {7}
    assert fr.decode_name_values(b"".join(r.content for r in parsed)) == pairs


def _params_of(stream: bytes) -> list:
    return fr.decode_name_values(b"".join(r.content for r in fr.RecordParser().feed(stream)))


@settings(database=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), max_size=10))
def test_params_encoded_twice_are_the_same_bytes(pairs):
    """The second encoding of short pairs comes from the remembered ones: same bytes."""
    first = fr.encode_params(1, pairs)
    assert fr.encode_params(1, pairs) == first
    assert _params_of(first) == pairs


def test_remembered_params_stay_bounded_and_long_values_are_not_kept():
    for number in range(3 * fr._ENCODED_PAIRS_KEPT):
        pair = (b"HTTP_X_REQUEST_ID", b"%032x" % number)
        assert _params_of(fr.encode_params(1, [pair])) == [pair]
        assert len(fr._ENCODED_PAIRS) <= fr._ENCODED_PAIRS_KEPT
    long_pair = (b"HTTP_COOKIE", b"c" * 128)
    assert _params_of(fr.encode_params(1, [long_pair])) == [long_pair]
    assert long_pair not in fr._ENCODED_PAIRS


@settings(database=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), max_size=10))
def test_name_values_round_trip(pairs):
    assert fr.decode_name_values(b"".join(fr.encode_name_value(n, v) for n, v in pairs)) == pairs


@pytest.mark.parametrize("raw", [b"\x05", b"\x80\x00", b"\x03\x00ab", b"\x01\x80\x00\x00\x10a"])
def test_truncated_name_values_raise(raw):
    with pytest.raises(fr.RecordFormatError):
        fr.decode_name_values(raw)


def test_begin_and_end_request_bodies():
    (begin,) = fr.RecordParser().feed(fr.encode_begin_request(1))
    assert fr.decode_begin_request(begin.content) == (fr.RESPONDER, fr.KEEP_CONN)
    (end,) = fr.RecordParser().feed(fr.encode_end_request(1, 3, fr.OVERLOADED))
    assert fr.decode_end_request(end.content) == (3, fr.OVERLOADED)
    with pytest.raises(fr.RecordFormatError):
        fr.decode_end_request(b"\0" * 7)
