"""RFBServer: handshake, state machine, protocol bookkeeping, fuzzing."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.rfb import ClientInitialised, Encoding, Rect, RFBServer, State
from enkaku.protocol.rfb import messages as m
from enkaku.protocol.rfb.pixelformat import PixelFormat
from tests.protocol.rfb.decoders import (
    Decoder,
    handshake,
    sample_image,
    set_encodings,
    set_pixel_format,
    update_request,
)

W, H = 64, 48


def running(*codes: int) -> tuple[RFBServer, Decoder]:
    server = RFBServer(W, H, "desk")
    dec = handshake(server)
    if codes:
        server.receive_data(set_encodings(*codes))
        dec.feed(server.data_to_send())
    return server, dec


@pytest.mark.parametrize(
    ("version", "negotiated"),
    [
        (b"RFB 003.008\n", (3, 8)),
        (b"RFB 003.007\n", (3, 7)),
        (b"RFB 003.003\n", (3, 3)),
        (b"RFB 003.005\n", (3, 3)),  # rfbproto: 3.5 means 3.3
        (b"RFB 003.006\n", (3, 3)),  # RFC 6143 §7.1.1: others are 3.3
    ],
)
def test_handshake_versions(version: bytes, negotiated: tuple[int, int]) -> None:
    server = RFBServer(W, H, "desk")
    dec = handshake(server, version if negotiated != (3, 3) else b"RFB 003.003\n")
    assert server.version == (3, 3) if negotiated == (3, 3) else negotiated
    assert (dec.width, dec.height) == (W, H)
    assert server.state is State.RUNNING
    if negotiated == (3, 3) and version != b"RFB 003.003\n":
        other = RFBServer(W, H, "desk")
        other.data_to_send()
        other.receive_data(version)
        assert other.data_to_send() == b"\x00\x00\x00\x01"
        assert other.version == (3, 3)


def test_handshake_events_and_byte_at_a_time() -> None:
    server = RFBServer(W, H, "名前")
    assert server.data_to_send() == b"RFB 003.008\n"
    events = []
    for b in b"RFB 003.008\n\x01\x00" + set_encodings(7) + update_request(True, 0, 0, W, H):
        events += server.receive_data(bytes([b]))
    assert events == [
        ClientInitialised((3, 8), False),
        m.SetEncodings((7,)),
        m.FramebufferUpdateRequest(True, 0, 0, W, H),
    ]
    out = server.data_to_send()
    assert out.startswith(b"\x01\x01\x00\x00\x00\x00")
    assert out.endswith(struct.pack("!I", 6) + "名前".encode())


def test_wrong_security_type_fails_with_reason_in_3_8() -> None:
    server = RFBServer(W, H, "desk")
    server.data_to_send()
    server.receive_data(b"RFB 003.008\n")
    server.data_to_send()
    with pytest.raises(ProtocolError, match="security type 2"):
        server.receive_data(b"\x02")
    out = server.data_to_send()
    (status, length) = struct.unpack_from("!II", out)
    assert status == 1 and out[8:] and len(out) == 8 + length
    assert server.state is State.CLOSED
    with pytest.raises(ProtocolError, match="closed"):
        server.receive_data(b"\x01")


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\n", b"RFB 004.000\n", b"RFB 03.8\n\n\n\n"])
def test_bad_version_is_a_protocol_error(junk: bytes) -> None:
    server = RFBServer(W, H, "desk")
    with pytest.raises(ProtocolError, match="ProtocolVersion"):
        server.receive_data(junk)
    assert server.state is State.CLOSED


def test_unknown_message_closes() -> None:
    server, _ = running()
    with pytest.raises(ProtocolError, match="unknown client message type 99"):
        server.receive_data(b"\x63")
    assert server.state is State.CLOSED


def test_announcements_once() -> None:
    server, dec = running(
        Encoding.TIGHT,
        Encoding.FENCE,
        Encoding.CONTINUOUS_UPDATES,
        Encoding.QEMU_EXTENDED_KEY_EVENT,
    )
    assert dec.fences == [(m.FenceFlags.REQUEST, b"")]
    assert dec.end_of_cu == 1
    assert server.encoding == Encoding.TIGHT
    server.receive_data(set_encodings(Encoding.ZRLE, Encoding.FENCE, Encoding.CONTINUOUS_UPDATES))
    assert server.data_to_send() == b""
    assert server.encoding == Encoding.ZRLE
    # the QEMU announcement rides on the next update
    assert server.has_pending_pseudo
    server.receive_data(update_request(True, 0, 0, W, H))
    server.send_framebuffer_update(np.zeros((H, W, 4), np.uint8), [])
    dec.feed(server.data_to_send())
    assert dec.qemu_announced and not server.has_pending_pseudo


def test_fence_reply_clears_request_and_unknown_bits() -> None:
    server, dec = running(Encoding.FENCE)
    dec.fences.clear()
    flags = m.FenceFlags.REQUEST | m.FenceFlags.SYNC_NEXT | m.FenceFlags.BLOCK_BEFORE | 1 << 9
    server.receive_data(bytes(m.Fence(flags, b"pf")))
    server.receive_data(bytes(m.Fence(m.FenceFlags.BLOCK_AFTER, b"")))  # a response: ignored
    dec.feed(server.data_to_send())
    assert dec.fences == [(m.FenceFlags.SYNC_NEXT | m.FenceFlags.BLOCK_BEFORE, b"pf")]


def test_update_requests_and_continuous_updates() -> None:
    server, dec = running(Encoding.RAW, Encoding.CONTINUOUS_UPDATES)
    assert server.update_requested is None
    server.receive_data(update_request(True, 10, 10, 500, 500))
    req = server.update_requested
    assert req is not None and req.incremental and req.region == Rect(10, 10, W - 10, H - 10)
    server.receive_data(update_request(False, 0, 0, 5, 5))
    req = server.update_requested
    assert req is not None and req.full == Rect(0, 0, 5, 5) and req.region == Rect(0, 0, W, H)
    server.send_framebuffer_update(np.zeros((H, W, 4), np.uint8), [req.full])
    assert server.update_requested is None
    server.receive_data(bytes([150, 1]) + struct.pack("!HHHH", 0, 0, W, H))
    req = server.update_requested
    assert req is not None and req.continuous and req.region == Rect(0, 0, W, H)
    server.receive_data(update_request(True, 0, 0, 1, 1))  # ignored while continuous
    assert server.update_requested == req
    server.receive_data(bytes([150, 0]) + struct.pack("!HHHH", 0, 0, W, H))
    dec.feed(server.data_to_send())
    assert dec.end_of_cu == 2
    assert server.update_requested is None


def test_non_incremental_gets_extended_desktop_size_first() -> None:
    server, dec = running(Encoding.ZRLE, Encoding.EXTENDED_DESKTOP_SIZE, Encoding.DESKTOP_SIZE)
    img = sample_image(H, W)
    server.receive_data(update_request(False, 0, 0, W, H))
    server.send_framebuffer_update(img, [Rect(0, 0, W, H)])
    dec.feed(server.data_to_send())
    assert dec.updates[0].rects == [(0, 0, W, H, Encoding.EXTENDED_DESKTOP_SIZE)]
    assert {r[-1] for r in dec.updates[1].rects} == {Encoding.ZRLE}
    np.testing.assert_array_equal(dec.fb, dec.pf.values(img))


def test_set_desktop_size_is_refused() -> None:
    server, dec = running(Encoding.EXTENDED_DESKTOP_SIZE)
    screen = bytes(m.Screen(1, 0, 0, 800, 600))
    server.receive_data(b"\xfb\x00\x03\x20\x02\x58\x01\x00" + screen)
    dec.feed(server.data_to_send())
    assert dec.desktop_sizes == [(1, 1, W, H, 1)]  # client-initiated, prohibited


def test_screen_layout_and_layout_requests() -> None:
    server, dec = running(Encoding.RAW, Encoding.EXTENDED_DESKTOP_SIZE)
    assert server.screens == (m.Screen(0, 0, 0, W, H),)  # one screen: the framebuffer
    left, right = m.Screen(1, 0, 0, 40, H), m.Screen(2, 40, 0, 24, 30)
    server.set_screens([left, right])  # same size: only the list changes
    server.set_screens([left, right])  # unchanged: nothing sent
    dec.feed(server.data_to_send())
    assert dec.desktop_sizes == [(0, 0, W, H, 2)] and dec.layouts == [
        [(1, 0, 0, 40, H), (2, 40, 0, 24, 30)]
    ]
    server.receive_data(update_request(False, 0, 0, W, H))
    server.send_framebuffer_update(np.zeros((H, W, 4), np.uint8), [])
    dec.feed(server.data_to_send())
    assert dec.layouts[-1] == dec.layouts[0]  # every non-incremental request gets it
    # The owner answers SetDesktopSize once it asked for the requests.
    server.layout_requests = True
    ask = b"\xfb\x00\x00\x18\x00\x1e\x01\x00" + bytes(m.Screen(2, 0, 0, 24, 30))
    events = server.receive_data(ask)
    assert events == [m.SetDesktopSize(24, 30, (m.Screen(2, 0, 0, 24, 30),))]
    assert server.data_to_send() == b""
    server.send_desktop_size(24, 30, [m.Screen(2, 0, 0, 24, 30)], reason=1)
    server.receive_data(ask)
    server.refuse_desktop_size(3)
    dec.feed(server.data_to_send())
    assert dec.desktop_sizes[-2:] == [(1, 0, 24, 30, 1), (1, 3, 24, 30, 1)]
    assert dec.layouts[-1] == [(2, 0, 0, 24, 30)]


@pytest.mark.parametrize("extended", [True, False])
def test_desktop_size_change(extended: bool) -> None:
    code = Encoding.EXTENDED_DESKTOP_SIZE if extended else Encoding.DESKTOP_SIZE
    server, dec = running(Encoding.RAW, code, Encoding.CONTINUOUS_UPDATES)
    server.receive_data(bytes([150, 1]) + struct.pack("!HHHH", 0, 0, W, H))
    server.receive_data(update_request(True, 0, 0, W, H))
    assert server.send_desktop_size(100, 30)
    dec.feed(server.data_to_send())
    assert (dec.width, dec.height) == (100, 30)
    req = server.update_requested
    assert req is not None and req.region == Rect(0, 0, 100, 30)
    img = sample_image(30, 100)
    server.send_framebuffer_update(img, [Rect(0, 0, 100, 30)])
    dec.feed(server.data_to_send())
    np.testing.assert_array_equal(dec.fb, dec.pf.values(img))
    plain, _ = running(Encoding.RAW)
    assert not plain.send_desktop_size(10, 10)


def test_cursor_pseudo_encoding() -> None:
    server, dec = running(Encoding.RAW, Encoding.CURSOR)

    @dataclass
    class Cursor:
        pixels: np.ndarray
        hotspot_x: int
        hotspot_y: int

    px = np.zeros((3, 10, 4), np.uint8)
    px[..., 2] = 255  # red
    px[1, :, 3] = 255  # only the middle row is opaque
    assert server.send_cursor(Cursor(px, 4, 1))
    server.receive_data(update_request(True, 0, 0, W, H))
    server.send_framebuffer_update(np.zeros((H, W, 4), np.uint8), [])
    dec.feed(server.data_to_send())
    assert dec.cursor is not None
    hx, hy, pixels, mask = dec.cursor
    assert (hx, hy) == (4, 1) and pixels.shape == (3, 10)
    assert (pixels == 0xFF0000).all()
    assert mask.tolist() == [[0] * 10, [1] * 10, [0] * 10]
    assert not running(Encoding.RAW)[0].send_cursor(Cursor(px, 0, 0))


def test_colour_map_format_gets_a_colour_map() -> None:
    server, dec = running(Encoding.RAW)
    pf = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)
    server.receive_data(set_pixel_format(pf))
    dec.feed(server.data_to_send())
    assert len(dec.colour_map) == 256 and dec.colour_map[255] == (65535, 65535, 65535)
    img = sample_image(H, W)
    dec.pf = pf
    server.receive_data(update_request(False, 0, 0, W, H))
    server.send_framebuffer_update(img, [Rect(0, 0, W, H)])
    dec.feed(server.data_to_send())
    # look pixels up in the colour map: close to the source colours
    cmap = np.array(dec.colour_map) >> 8
    rgb = cmap[dec.fb]
    assert np.abs(rgb - img[..., 2::-1].astype(int)).max() <= 255 // 7 // 2 + 43


def test_cut_text_both_ways_and_oversize_is_skipped() -> None:
    server, dec = running()
    big = 2 * m.MAX_CUT_TEXT
    events = server.receive_data(b"\x06\x00\x00\x00" + struct.pack("!I", big) + b"x" * 1000)
    assert events == []
    events = server.receive_data(b"x" * (big - 1000) + b"\x06\x00\x00\x00\x00\x00\x00\x02ok")
    assert events == [m.ClientCutText("ok")]
    server.send_cut_text("héllo")
    dec.feed(server.data_to_send())
    assert dec.cut_texts == ["héllo".encode("latin-1")]


def test_replies_during_encoding_wait_for_the_update() -> None:
    server, dec = running(Encoding.ZRLE, Encoding.FENCE)
    dec.fences.clear()
    img = sample_image(H, W)
    server.receive_data(update_request(False, 0, 0, W, H))
    pending = server.begin_framebuffer_update(img, [Rect(0, 0, W, H)])
    assert server.update_requested is None
    server.receive_data(bytes(m.Fence(m.FenceFlags.REQUEST | m.FenceFlags.BLOCK_BEFORE, b"1")))
    assert server.data_to_send() == b""
    pending.encode()
    server.end_framebuffer_update(pending)
    out = server.data_to_send()
    assert out[0] == 0 and out.endswith(bytes(m.Fence(m.FenceFlags.BLOCK_BEFORE, b"1")))
    dec.feed(out)
    np.testing.assert_array_equal(dec.fb, dec.pf.values(img))


def test_updates_before_handshake_are_refused() -> None:
    server = RFBServer(W, H, "desk")
    assert server.update_requested is None
    with pytest.raises(RuntimeError):
        server.send_framebuffer_update(np.zeros((H, W, 4), np.uint8), [])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8))
def test_fuzz_running_server_raises_only_protocol_error(chunks: list[bytes]) -> None:
    server, _ = running()
    for chunk in chunks:
        try:
            server.receive_data(chunk)
        except ProtocolError:
            assert server.state is State.CLOSED
            return
        server.data_to_send()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_fuzz_handshake_raises_only_protocol_error(data: bytes) -> None:
    server = RFBServer(W, H, "desk")
    try:
        server.receive_data(data)
    except ProtocolError:
        assert server.state is State.CLOSED


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                update_request(True, 0, 0, W, H),
                update_request(False, 3, 4, 1000, 1000),
                bytes([150, 1, 0, 0, 0, 0, 0, 10, 0, 10]),
                bytes([150, 0, 0, 0, 0, 0, 0, 10, 0, 10]),
                b"\x04\x01\x00\x00\x00\x00\x00\x61",
                b"\x05\x01\x00\x0a\x00\x14",
                set_encodings(7, 16, -308, -313, -312, -258, -239, -224),
                bytes(m.Fence(m.FenceFlags.REQUEST, b"abc")),
            ]
        ),
        max_size=12,
    )
)
def test_valid_message_sequences_keep_running(messages: list[bytes]) -> None:
    server, dec = running()
    server.receive_data(b"".join(messages))
    dec.feed(server.data_to_send())
    req = server.update_requested
    if req is not None:
        server.send_framebuffer_update(sample_image(H, W), [req.region])
        dec.feed(server.data_to_send())
    assert server.state is State.RUNNING


def test_lossless_update_overrides_jpeg_and_reports_lossy_rects() -> None:
    server = RFBServer(160, 96, "t")
    dec = handshake(server)
    server.receive_data(set_encodings(Encoding.TIGHT, Encoding.JPEG_QUALITY_LOW + 6))
    noise = np.random.default_rng(8).integers(0, 256, (96, 160, 4), dtype=np.uint8)
    noise[:, 128:] = 7  # one colour: a fill, exact
    server.receive_data(update_request(False, 0, 0, 160, 96))
    update = server.begin_framebuffer_update(noise, [Rect(0, 0, 160, 96)])
    update.encode()
    server.end_framebuffer_update(update)
    dec.feed(server.data_to_send())
    assert update.lossy == [Rect(0, 0, 128, 96)] and dec.jpeg_rects == 1
    assert not np.array_equal(dec.fb, dec.pf.values(noise))
    server.receive_data(update_request(True, 0, 0, 160, 96))
    update = server.begin_framebuffer_update(noise, update.lossy, lossless=True)
    update.encode()
    server.end_framebuffer_update(update)
    dec.feed(server.data_to_send())
    assert update.lossy == [] and dec.jpeg_rects == 1
    np.testing.assert_array_equal(dec.fb, dec.pf.values(noise))


# -- streamed updates ------------------------------------------------------------------

SW, SH = 1024, 600  # 614 400 pixels: streamed (STREAM_PIXELS), three bands of 256 rows


def test_bands_are_whole_tiles_and_cover_the_rectangle() -> None:
    from enkaku.protocol.rfb.server import BAND_PIXELS, bands

    assert bands(Rect(0, 0, 100, 100)) == [Rect(0, 0, 100, 100)]
    assert bands(Rect(8, 4, 1024, 600)) == [
        Rect(8, 4, 1024, 256), Rect(8, 260, 1024, 256), Rect(8, 516, 1024, 88)
    ]  # fmt: skip
    # a last band under half a band's height is not cut off on its own
    assert bands(Rect(0, 0, 1024, 380)) == [Rect(0, 0, 1024, 380)]
    tall = bands(Rect(0, 0, 7, 5000))  # narrow: never under one tile row
    assert all(b.h % 64 == 0 for b in tall[:-1]) and sum(b.h for b in tall) == 5000
    wide = bands(Rect(0, 0, 3840, 2160))
    assert all(b.w * b.h <= BAND_PIXELS for b in wide) and sum(b.h for b in wide) == 2160


def _asked_for_all(*codes: int, pinging: bool = False) -> tuple[RFBServer, Decoder]:
    """A server of SW×SH whose client listed ``codes`` (and answers fences when
    ``pinging``) and asked for the whole screen."""
    server = RFBServer(SW, SH, "desk")
    dec = handshake(server)
    server.receive_data(set_encodings(*codes))
    if pinging:
        server.receive_data(bytes(m.Fence(0, b"")))  # the answer to our announcement
    dec.feed(server.data_to_send())
    dec.fences.clear()
    server.receive_data(update_request(False, 0, 0, SW, SH))
    return server, dec


def _streamed(server: RFBServer, img: np.ndarray) -> tuple[list[bytes], list[bytes]]:
    """Begin a whole-screen update of ``img`` and stream it: what each ``emit`` handed
    the server, and what the server had queued to send after each one."""
    pending = server.begin_framebuffer_update(img, [Rect(0, 0, SW, SH)])
    assert pending.streams
    emitted: list[bytes] = []
    sent: list[bytes] = []

    def emit(data: bytes) -> None:
        emitted.append(data)
        server.stream_part(data)
        sent.append(server.data_to_send())

    pending.stream(emit)
    server.end_framebuffer_update(pending)
    sent.append(server.data_to_send())
    return emitted, sent


def test_a_large_zrle_update_is_streamed_band_by_band_and_stays_exact() -> None:
    server, dec = _asked_for_all(Encoding.ZRLE, Encoding.FENCE)
    img = sample_image(SH, SW)
    pending = server.begin_framebuffer_update(img, [Rect(0, 0, SW, SH)])
    emitted: list[bytes] = []
    sent: list[bytes] = []

    def emit(data: bytes) -> None:
        emitted.append(data)
        server.stream_part(data)
        if len(emitted) == 1:
            # A reply answered while the rest is encoded waits for the update's end.
            server.receive_data(bytes(m.Fence(m.FenceFlags.REQUEST, b"mid")))
        sent.append(server.data_to_send())

    pending.stream(emit)
    server.end_framebuffer_update(pending)
    end = server.data_to_send()
    assert sent == emitted  # each band may go out at once, nothing between them
    assert end == bytes(m.Fence(0, b"mid"))
    dec.feed(b"".join(sent) + end)
    assert len(emitted) == 3 and pending.rect_count == 3 and pending.streamed
    # ZRLE makes one rectangle a band: the count is in the header, no LastRect
    assert emitted[0][:4] == m.framebuffer_update_header(3)[:4]
    assert dec.updates[-1].rects == [
        (0, 0, SW, 256, Encoding.ZRLE), (0, 256, SW, 256, Encoding.ZRLE),
        (0, 512, SW, 88, Encoding.ZRLE),
    ]  # fmt: skip
    assert dec.fences == [(0, b"mid")]
    np.testing.assert_array_equal(dec.fb, dec.pf.values(img))
    # the zlib stream runs on across bands and updates: the next one decodes too
    img2 = sample_image(SH, SW, seed=2)
    server.receive_data(update_request(True, 0, 0, SW, SH))
    _, sent = _streamed(server, img2)
    dec.feed(b"".join(sent))
    np.testing.assert_array_equal(dec.fb, dec.pf.values(img2))


def test_a_pinging_clients_streamed_update_has_its_pings_around_it() -> None:
    from enkaku.protocol.rfb.server import PING_FLAGS, PING_TAG

    server, dec = _asked_for_all(Encoding.ZRLE, Encoding.FENCE, pinging=True)
    emitted, sent = _streamed(server, sample_image(SH, SW))
    ping = bytes(m.Fence(PING_FLAGS, PING_TAG + bytes(4)))  # its sequence number: 4 bytes
    # nothing in flight: a bare ping first, then the first band, at once
    assert sent[0][:8] == ping[:8] and sent[0][len(ping)] == 0
    assert sent[-1][:8] == ping[:8] and len(sent[-1]) == len(ping)  # and one after it
    assert sent[0][len(ping) :] == emitted[0] and sent[1:-1] == emitted[1:]  # none between
    dec.feed(b"".join(sent))
    assert [f for f, _ in dec.fences] == [PING_FLAGS, PING_FLAGS]


def test_small_updates_and_tight_are_not_streamed() -> None:
    img = sample_image(SH, SW)
    server, _ = _asked_for_all(Encoding.ZRLE)
    assert not server.begin_framebuffer_update(img, [Rect(0, 0, 600, 600)]).streams
    # Tight may cut a rectangle further (and its JPEG frames are small): sent whole
    server, dec = _asked_for_all(Encoding.TIGHT, Encoding.LAST_RECT)
    update = server.begin_framebuffer_update(img, [Rect(0, 0, SW, SH)])
    assert not update.streams
    update.encode()
    server.end_framebuffer_update(update)
    dec.feed(server.data_to_send())
    np.testing.assert_array_equal(dec.fb, dec.pf.values(img))
