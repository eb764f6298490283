"""ExtendedClipboard (rfbproto "Extended Clipboard Pseudo-Encoding"): bytes and limits.

Golden bytes are written out from the spec's tables, and provides are built here with
zlib directly, so the encoder is never checked against itself only.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.rfb import Encoding, RFBServer, State
from enkaku.protocol.rfb import messages as m
from enkaku.protocol.rfb.messages import ClipboardAction as A
from enkaku.protocol.rfb.messages import ClipboardFormat as F
from enkaku.protocol.rfb.server import ClipboardAnnounced, ClipboardDropped, ClipboardRequested
from tests.protocol.rfb.decoders import handshake, set_encodings

CAPS = b"\x03\x00\x00\x00\xff\xff\xff\xf8\x1f\x00\x00\x01\x00\x00\x00\x00"


def client(flags: int, body: bytes = b"") -> bytes:
    """A ClientCutText carrying an ExtendedClipboard message (negative length)."""
    payload = struct.pack("!I", flags) + body
    return struct.pack("!B3xi", 6, -len(payload)) + payload


def provide(data: bytes, formats: int = F.TEXT, *, declared: int | None = None) -> bytes:
    size = len(data) if declared is None else declared
    return client(A.PROVIDE | formats, zlib.compress(struct.pack("!I", size) + data))


def extended(*codes: int) -> RFBServer:
    """A running server whose client listed ExtendedClipboard; caps already read."""
    server = RFBServer(64, 48, "desk")
    handshake(server)
    server.receive_data(set_encodings(Encoding.RAW, Encoding.EXTENDED_CLIPBOARD, *codes))
    assert server.data_to_send() == CAPS
    return server


# -- message encoding ------------------------------------------------------------------


def test_pseudo_encoding_number() -> None:
    assert struct.unpack("!i", bytes.fromhex("c0a1e5ce"))[0] == Encoding.EXTENDED_CLIPBOARD


def test_server_messages_golden() -> None:
    assert bytes(m.ExtendedClipboard(A.NOTIFY, F.TEXT)) == bytes.fromhex("03000000fffffffc08000001")
    assert bytes(m.ExtendedClipboard(A.REQUEST, F.TEXT)) == bytes.fromhex(
        "03000000fffffffc02000001"
    )
    assert bytes(m.ExtendedClipboard(A.NOTIFY)) == bytes.fromhex("03000000fffffffc08000000")
    wire = bytes(m.ExtendedClipboard.provide("日本\nx"))
    (length,) = struct.unpack_from("!i", wire, 4)
    assert wire[0] == 3 and length == -(len(wire) - 8)
    assert wire[8:12] == bytes.fromhex("10000001")
    raw = "日本\r\nx".encode() + b"\0"  # CRLF line ends and a terminating null
    assert zlib.decompress(wire[12:]) == struct.pack("!I", len(raw)) + raw


def test_parse_each_action() -> None:
    parse = m.ExtendedClipboard.parse_body
    caps = parse(struct.pack("!III", A.CAPS | A.REQUEST | F.TEXT | F.HTML, 1000, 0))
    assert caps.formats == F.TEXT | F.HTML and caps.sizes == (1000, 0)
    assert caps.actions == A.REQUEST
    assert parse(struct.pack("!I", A.PEEK)).action == A.PEEK
    assert parse(struct.pack("!I", A.NOTIFY | F.TEXT)) == m.ExtendedClipboard(A.NOTIFY, F.TEXT)
    got = parse(provide("テキスト\r\n二行目".encode() + b"\0")[8:])
    assert got.text == "テキスト\n二行目" and not got.dropped
    # Other formats after the text are never inflated; the text is still taken.
    rich = struct.pack("!I", 3) + b"ab\0" + struct.pack("!I", 5) + b"{\\rtf"
    got = parse(struct.pack("!I", A.PROVIDE | F.TEXT | F.RTF) + zlib.compress(rich))
    assert got.text == "ab"
    # A provide without text (an empty clipboard, or RTF only) carries none.
    assert parse(struct.pack("!I", A.PROVIDE)).text is None
    assert parse(struct.pack("!I", A.PROVIDE | F.RTF) + b"junk").text is None


def test_sync_flushed_stream_is_accepted() -> None:
    """TigerVNC ends a provide's zlib stream with a sync flush, not a finished stream."""
    z = zlib.compressobj()
    raw = "同期".encode() + b"\0"
    body = z.compress(struct.pack("!I", len(raw)) + raw) + z.flush(zlib.Z_SYNC_FLUSH)
    assert m.ExtendedClipboard.parse_body(struct.pack("!I", A.PROVIDE | F.TEXT) + body).text == (
        "同期"
    )


@given(st.text())
def test_provide_round_trip(text: str) -> None:
    wire = bytes(m.ExtendedClipboard.provide(text))
    got = m.ExtendedClipboard.parse_body(wire[8:])
    # CRLF and LF both come back as LF; the text ends at a null (a C string on the wire)
    expected = text.split("\0", 1)[0].replace("\r\n", "\n")
    assert got.text == expected.encode("utf-8", "replace").decode("utf-8", "replace")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\x10\x00", "has no flags"),
        (struct.pack("!I", A.REQUEST | A.NOTIFY | F.TEXT), "no single action"),
        (struct.pack("!I", 0), "no single action"),
        (struct.pack("!I", 1 << 29), "no single action"),
        (struct.pack("!II", A.CAPS | F.TEXT | F.RTF, 0), "caps with 2 formats"),
        (struct.pack("!II", A.NOTIFY | F.TEXT, 0), "carries data"),
        (struct.pack("!I", A.PROVIDE | F.TEXT) + b"not zlib", "not a zlib stream"),
        # truncated: the stream ends inside the size, then inside the text
        (struct.pack("!I", A.PROVIDE | F.TEXT) + zlib.compress(b"\x00\x00"), "ends early"),
        (
            struct.pack("!I", A.PROVIDE | F.TEXT) + zlib.compress(b"\x00\x00\x00\x09abc"),
            "ends early",
        ),
        (
            struct.pack("!I", A.PROVIDE | F.TEXT)
            + zlib.compress(struct.pack("!I", 3) + b"abc")[:-6],
            "ends early",
        ),
    ],
)
def test_malformed_messages_are_protocol_errors(body: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        m.ExtendedClipboard.parse_body(body)


def test_zlib_bomb_is_refused_without_inflating_it() -> None:
    """A small text followed by 256 MiB of zeros: found after one more byte, not inflated."""
    z = zlib.compressobj(9)
    parts = [z.compress(struct.pack("!I", 2) + b"a\0")]
    zeros = bytes(1 << 20)
    parts += [z.compress(zeros) for _ in range(256)]
    parts.append(z.flush())
    bomb = b"".join(parts)
    assert len(bomb) < m.MAX_EXTENDED_CLIPBOARD // 4  # zlib packs zeros about 1000:1
    with pytest.raises(ProtocolError, match="bytes after its last format"):
        m.ExtendedClipboard.parse_body(struct.pack("!I", A.PROVIDE | F.TEXT) + bomb)


def test_text_declared_over_the_limit_is_dropped_uninflated() -> None:
    size = m.MAX_CLIPBOARD_TEXT + 1
    z = zlib.compressobj(9)
    body = z.compress(struct.pack("!I", size) + bytes(size)) + z.flush()
    got = m.ExtendedClipboard.parse_body(struct.pack("!I", A.PROVIDE | F.TEXT) + body)
    assert got.dropped == size and got.text is None
    # exactly at the limit is fine
    at = b"x" * (m.MAX_CLIPBOARD_TEXT - 1) + b"\0"
    got = m.ExtendedClipboard.parse_body(provide(at)[8:])
    assert got.text is not None and len(got.text) == m.MAX_CLIPBOARD_TEXT - 1


# -- the server ------------------------------------------------------------------------


def test_caps_answer_every_set_encodings_listing_it() -> None:
    server = extended()
    server.receive_data(set_encodings(Encoding.EXTENDED_CLIPBOARD))
    assert server.data_to_send() == CAPS
    server.receive_data(set_encodings(Encoding.RAW))
    assert server.data_to_send() == b""
    assert server.extended_clipboard


def test_client_events_and_peek() -> None:
    server = extended()
    caps = client(A.CAPS | A.REQUEST | A.NOTIFY | A.PROVIDE | F.TEXT, struct.pack("!I", 0))
    assert server.receive_data(caps) == []
    assert server.receive_data(client(A.NOTIFY | F.TEXT)) == [ClipboardAnnounced(True)]
    assert server.receive_data(client(A.NOTIFY)) == [ClipboardAnnounced(False)]
    assert server.receive_data(client(A.REQUEST | F.TEXT)) == [ClipboardRequested()]
    assert server.receive_data(client(A.REQUEST | F.RTF)) == []  # we only have text
    text = "漢字\r\n".encode() + b"\0"
    assert server.receive_data(provide(text)) == [m.ClientCutText("漢字\n")]
    # a peek is answered with what we last announced
    assert server.receive_data(client(A.PEEK)) == []
    assert server.data_to_send() == bytes.fromhex("03000000fffffffc08000000")
    assert server.announce_clipboard(True)
    assert server.data_to_send() == bytes.fromhex("03000000fffffffc08000001")
    server.receive_data(client(A.PEEK))
    assert server.data_to_send() == bytes.fromhex("03000000fffffffc08000001")
    assert server.request_clipboard()
    assert server.data_to_send() == bytes.fromhex("03000000fffffffc02000001")
    server.send_cut_text("€ ok")
    sent = m.ExtendedClipboard.parse_body(server.data_to_send()[8:])
    assert sent.action == A.PROVIDE and sent.text == "€ ok"


def test_client_caps_decide_what_we_send() -> None:
    server = extended()
    # a client that takes no action at all gets plain Latin-1 cut text
    server.receive_data(client(A.CAPS | F.TEXT, struct.pack("!I", 0)))
    assert not server.announce_clipboard(True)
    assert not server.request_clipboard()
    server.send_cut_text("é€")
    assert server.data_to_send() == b"\x03\x00\x00\x00\x00\x00\x00\x02\xe9?"
    # one that takes requests only may be asked, but not notified
    server.receive_data(client(A.CAPS | A.REQUEST | F.TEXT, struct.pack("!I", 0)))
    assert server.request_clipboard() and not server.announce_clipboard(True)
    assert server.data_to_send() == bytes.fromhex("03000000fffffffc02000001")


def test_without_the_pseudo_encoding_plain_only() -> None:
    server = RFBServer(64, 48, "desk")
    handshake(server)
    server.receive_data(set_encodings(Encoding.RAW))
    assert not server.extended_clipboard
    assert not server.announce_clipboard(True) and not server.request_clipboard()
    assert server.data_to_send() == b""
    with pytest.raises(ProtocolError, match="never listed it"):
        server.receive_data(client(A.NOTIFY | F.TEXT))
    assert server.state is State.CLOSED


def test_oversized_message_is_skipped_and_the_next_one_parsed() -> None:
    server = extended()
    size = m.MAX_EXTENDED_CLIPBOARD + 10
    head = struct.pack("!B3xi", 6, -size)
    events = server.receive_data(head + bytes(1000))
    assert events == [ClipboardDropped(size)]
    events = server.receive_data(bytes(size - 1000) + client(A.NOTIFY | F.TEXT))
    assert events == [ClipboardAnnounced(True)]
    assert server.state is State.RUNNING


def test_oversized_text_is_an_event_not_an_error() -> None:
    server = extended()
    size = m.MAX_CLIPBOARD_TEXT + 1
    z = zlib.compressobj(9)
    body = z.compress(struct.pack("!I", size) + bytes(size)) + z.flush()
    events = server.receive_data(client(A.PROVIDE | F.TEXT, body))
    assert events == [ClipboardDropped(size)]
    assert server.state is State.RUNNING


def test_malformed_closes_the_connection() -> None:
    server = extended()
    with pytest.raises(ProtocolError, match="ends early"):
        server.receive_data(provide(b"abc", declared=10))
    assert server.state is State.CLOSED


def test_split_anywhere_gives_the_same_events() -> None:
    data = (
        client(A.CAPS | A.NOTIFY | A.PROVIDE | F.TEXT, struct.pack("!I", 0))
        + provide("分割".encode() + b"\0")
        + client(A.NOTIFY | F.TEXT)
    )
    whole = extended().receive_data(data)
    server = extended()
    pieces = [e for i in range(len(data)) for e in server.receive_data(data[i : i + 1])]
    assert pieces == whole == [m.ClientCutText("分割"), ClipboardAnnounced(True)]
