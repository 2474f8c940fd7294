"""The HPACK encoder of Director's HTTP/2 responses (proxy.server_h2.PlainEncoder): what a
client decodes is exactly what was sent, and a field new in every response never fills the
connection's table."""
import hpack

from proxy.server_h2 import PlainEncoder


def response(i: int) -> list[tuple[bytes, bytes]]:
    return [(b":status", b"200"), (b"server", b"nginx"), (b"content-type", b"text/plain"),
            (b"x-request-id", b"%032x" % i), (b"content-length", b"40")]


def test_a_client_decodes_every_response_exactly():
    encoder, decoder = PlainEncoder(), hpack.Decoder()
    for i in range(200):
        assert decoder.decode(encoder.encode(response(i)), raw=True) == response(i)


def test_request_ids_are_never_indexed_and_leave_the_table_to_fields_that_repeat():
    encoder = PlainEncoder()
    for i in range(200):
        encoder.encode(response(i))
    names = {name for name, _ in encoder.header_table.dynamic_entries}
    assert b"x-request-id" not in names and len(encoder.header_table.dynamic_entries) == 3  # server, type, length
    block = encoder.encode([(b"x-request-id", b"abc")])
    assert block[0] & 0xF0 == 0x10  # RFC 7541 6.2.3: literal never indexed


def test_strings_go_out_without_huffman_coding():
    block = PlainEncoder().encode([(b"x-request-id", b"0123456789abcdef")])
    assert b"0123456789abcdef" in block
