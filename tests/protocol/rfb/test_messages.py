"""Client message parsing (golden bytes, limits, fuzzing) and server message bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.rfb import messages as m
from enkaku.protocol.rfb.pixelformat import NATIVE, PixelFormat


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x00\x00\x00" + bytes(NATIVE), m.SetPixelFormat(NATIVE)),
        (b"\x02\x00\x00\x02\x00\x00\x00\x07\xff\xff\xff\x21", m.SetEncodings((7, -223))),
        (b"\x03\x01\x00\x01\x00\x02\x00\x03\x00\x04", m.FramebufferUpdateRequest(True, 1, 2, 3, 4)),
        (b"\x04\x01\x00\x00\x00\x00\xff\x0d", m.KeyEvent(True, 0xFF0D)),
        (b"\x05\x05\x00\x0a\x00\x14", m.PointerEvent(5, 10, 20)),
        (b"\x06\x00\x00\x00\x00\x00\x00\x03h\xe9!", m.ClientCutText("hé!")),
        (
            b"\x96\x01\x00\x00\x00\x00\x01\x00\x00\xc8",
            m.EnableContinuousUpdates(True, 0, 0, 256, 200),
        ),
        (b"\xf8\x00\x00\x00\x80\x00\x00\x04\x02ab", m.Fence(0x80000004, b"ab")),
        (
            b"\xff\x00\x00\x01\x00\x00\x00\x61\x00\x00\x00\x1e",
            m.QEMUExtendedKeyEvent(True, 0x61, 0x1E),
        ),
        (
            b"\xfb\x00\x04\x00\x03\x00\x01\x00" + bytes(m.Screen(7, 0, 0, 1024, 768, 0)),
            m.SetDesktopSize(1024, 768, (m.Screen(7, 0, 0, 1024, 768, 0),)),
        ),
    ],
)
def test_parse_golden(data: bytes, expected: object) -> None:
    assert m.parse_client_message(data) == (expected, len(data))
    # one byte short is "need more", never an error
    assert m.parse_client_message(data[:-1]) is None
    assert m.parse_client_message(data + b"\x04") == (expected, len(data))


def test_limits_are_checked_before_allocating() -> None:
    with pytest.raises(ProtocolError, match="SetEncodings lists 65535"):
        m.client_message_size(b"\x02\x00\xff\xff")
    with pytest.raises(ProtocolError, match="exceeds"):
        m.client_message_size(b"\x06\x00\x00\x00\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match="Fence payload of 65"):
        m.client_message_size(b"\xf8\x00\x00\x00\x00\x00\x00\x00\x41")
    with pytest.raises(ProtocolError, match="unknown client message type 7"):
        m.client_message_size(b"\x07")
    with pytest.raises(ProtocolError, match="QEMU client message subtype 1"):
        m.client_message_size(b"\xff\x01")
    with pytest.raises(ProtocolError, match="screens"):
        m.client_message_size(b"\xfb\x00\x04\x00\x03\x00\xff\x00")


@pytest.mark.parametrize(
    ("pf", "error"),
    [
        (PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0), "bits-per-pixel 24"),
        (PixelFormat(32, 24, False, True, 254, 255, 255, 16, 8, 0), "red-max 254"),
        (PixelFormat(16, 16, False, True, 31, 63, 31, 12, 5, 0), "red bits do not fit"),
        (PixelFormat(16, 16, False, False, 0, 0, 0, 0, 0, 0), "colour-map"),
    ],
)
def test_bad_pixel_formats(pf: PixelFormat, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        m.parse_client_message(b"\x00\x00\x00\x00" + bytes(pf))


def test_server_messages_golden() -> None:
    init = m.ServerInit(640, 480, NATIVE, "ホスト")
    assert bytes(init) == (
        b"\x02\x80\x01\xe0"
        + bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
        + b"\x00\x00\x00\x09"
        + "ホスト".encode()
    )
    assert bytes(m.ServerCutText("a€")) == b"\x03\x00\x00\x00\x00\x00\x00\x02a?"
    assert bytes(m.EndOfContinuousUpdates()) == b"\x96"
    assert bytes(m.Bell()) == b"\x02"
    assert bytes(m.Fence(0x80000000)) == b"\xf8\x00\x00\x00\x80\x00\x00\x00\x00"
    assert bytes(m.SetColourMapEntries(0, ((65535, 0, 1),))) == (
        b"\x01\x00\x00\x00\x00\x01\xff\xff\x00\x00\x00\x01"
    )
    assert m.framebuffer_update_header(2) == b"\x00\x00\x00\x02"
    assert m.rect_header(1, 2, 3, 4, -239) == struct.pack("!HHHHi", 1, 2, 3, 4, -239)


@given(st.binary(max_size=64))
def test_fuzz_parser_raises_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        m.parse_client_message(data)


@given(st.sampled_from(sorted(m.CLIENT_MESSAGES)), st.binary(max_size=80))
def test_fuzz_parser_each_type(kind: int, rest: bytes) -> None:
    try:
        result = m.parse_client_message(bytes([kind]) + rest)
    except ProtocolError:
        return
    if result is not None:
        assert 0 < result[1] <= 1 + len(rest)
