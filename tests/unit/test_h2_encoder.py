"""The HPACK encoder of Director's HTTP/2 responses (proxy.server_h2.PlainEncoder): what a
client decodes is exactly what was sent, no field ever enters the connection's dynamic
table, and a change of the table size the client asks for is still signalled."""
import hpack

from proxy.server_h2 import PlainEncoder


def response(i: int) -> list[tuple[bytes, bytes]]:
    return [(b":status", b"200"), (b"server", b"nginx"), (b"content-type", b"text/plain"),
            (b"x-request-id", b"%032x" % i), (b"content-length", b"40"), (b"x-custom", b"v%d" % (i % 3))]


def test_a_client_decodes_every_response_exactly():
    encoder, decoder = PlainEncoder(), hpack.Decoder()
    for i in range(200):
        assert decoder.decode(encoder.encode(response(i)), raw=True) == response(i)
    assert len(decoder.header_table.dynamic_entries) == 0  # nothing was ever indexed


def test_the_same_head_encodes_the_same_every_time():
    encoder = PlainEncoder()
    assert encoder.encode(response(3)) == encoder.encode(response(3)) == PlainEncoder().encode(response(3))


def test_static_fields_are_indexed_and_request_ids_never_indexed():
    encoder = PlainEncoder()
    assert encoder.encode([(b":status", b"200")]) == b"\x88"  # RFC 7541 6.1, static index 8
    block = encoder.encode([(b"content-type", b"text/plain")])
    assert block[0] == 0x0F and block[1] == 31 - 15  # literal without indexing, static name 31
    block = encoder.encode([(b"x-request-id", b"abc")])
    assert block[0] & 0xF0 == 0x10  # RFC 7541 6.2.3: literal never indexed
    assert (b"x-request-id", b"abc") not in encoder._fields  # a value of one response is not kept


def test_fields_h2_marks_sensitive_go_out_never_indexed_and_are_not_kept():
    encoder, decoder = PlainEncoder(), hpack.Decoder()
    block = encoder.encode([hpack.NeverIndexedHeaderTuple(b"set-cookie", b"session=secret")])
    assert block[0] & 0xF0 == 0x10
    assert decoder.decode(block, raw=True) == [(b"set-cookie", b"session=secret")]
    assert not encoder._fields


def test_credentials_and_short_cookies_go_out_never_indexed_and_are_not_kept():
    """h2's outbound normalisation (which marked them) is off: the encoder marks them."""
    encoder, decoder = PlainEncoder(), hpack.Decoder()
    sensitive = [(b"authorization", b"Basic dXNlcjpwYXNz"), (b"proxy-authorization", b"Bearer x"),
                 (b"cookie", b"id=42")]
    for field in sensitive:
        block = encoder.encode([field])
        assert block[0] & 0xF0 == 0x10, field  # RFC 7541 6.2.3: literal never indexed
        assert decoder.decode(block, raw=True) == [field]
    assert not encoder._fields
    long_cookie = (b"cookie", b"session=0123456789abcdef")
    assert encoder.encode([long_cookie])[0] & 0xF0 == 0x00 and long_cookie in encoder._fields


def test_a_table_size_the_client_sets_is_acknowledged_first():
    encoder, decoder = PlainEncoder(), hpack.Decoder()
    encoder.header_table_size = 0  # what h2 does when the client's SETTINGS_HEADER_TABLE_SIZE arrives
    decoder.max_allowed_table_size = decoder.header_table_size = 0
    block = encoder.encode(response(1))
    assert block[0] & 0xE0 == 0x20  # RFC 7541 6.3: dynamic table size update
    assert decoder.decode(block, raw=True) == response(1)


def test_strings_go_out_without_huffman_coding():
    block = PlainEncoder().encode([(b"x-request-id", b"0123456789abcdef")])
    assert b"0123456789abcdef" in block
