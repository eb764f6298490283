"""Encoders: golden bytes for small cases, round trips through an independent decoder."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from enkaku.protocol.rfb import Copy, Encoding, PixelFormat, Rect, RFBServer
from enkaku.protocol.rfb.encodings import EncodeOptions
from enkaku.protocol.rfb.encodings.raw import RawEncoder
from enkaku.protocol.rfb.encodings.tight import TightEncoder, compact_length
from enkaku.protocol.rfb.encodings.zrle import ZRLEEncoder, encode_tile, pack_indices
from enkaku.protocol.rfb.pixelformat import NATIVE
from tests.protocol.rfb.decoders import (
    handshake,
    photo_image,
    rgb_to_values,
    sample_image,
    set_encodings,
    set_pixel_format,
    update_request,
)

FORMATS = {
    "native": NATIVE,
    "rgbx32": PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16),
    "bgr32_be": PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0),
    "xrgb32_high": PixelFormat(32, 24, False, True, 255, 255, 255, 24, 16, 8),
    "depth32": PixelFormat(32, 32, False, True, 255, 255, 255, 16, 8, 0),
    "rgb565": PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0),
    "rgb565_be": PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0),
    "bgr233": PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6),
    "rgb111": PixelFormat(8, 3, False, True, 1, 1, 1, 2, 1, 0),
}


def bgrx(rgb: list[list[tuple[int, int, int]]]) -> np.ndarray:
    a = np.array(rgb, dtype=np.uint8)
    out = np.zeros((*a.shape[:2], 4), dtype=np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = a[..., 2], a[..., 1], a[..., 0]
    out[..., 3] = 0xAB  # the X byte is garbage and must never leak
    return out


def served(pf: PixelFormat, codes: tuple[int, ...], width: int, height: int):
    server = RFBServer(width, height, "test")
    dec = handshake(server)
    server.receive_data(set_pixel_format(pf) + set_encodings(*codes))
    dec.pf = pf
    dec.feed(server.data_to_send())
    return server, dec


# -- golden bytes ------------------------------------------------------------------


def test_raw_golden_native_and_565() -> None:
    frame = bgrx([[(255, 0, 0), (0, 255, 0)]])
    opts = EncodeOptions()
    (r,) = RawEncoder().encode(frame, NATIVE, opts)
    assert (r.x, r.y, r.w, r.h, r.encoding) == (0, 0, 2, 1, 0)
    assert r.payload == bytes([0, 0, 255, 0, 0, 255, 0, 0])
    (r,) = RawEncoder().encode(frame, FORMATS["rgb565_be"], opts)
    assert r.payload == bytes([0xF8, 0x00, 0x07, 0xE0])


def test_compact_length_golden() -> None:
    assert compact_length(10000) == bytes([0x90, 0x4E])  # the spec's example
    assert compact_length(127) == b"\x7f"
    assert compact_length(128) == b"\x80\x01"
    assert compact_length(16384) == b"\x80\x80\x01"
    assert compact_length(4194303) == b"\xff\xff\xff"
    with pytest.raises(ValueError):
        compact_length(4194304)


def test_tight_fill_golden() -> None:
    frame = bgrx([[(1, 2, 3)] * 5] * 4)
    (r,) = TightEncoder().encode(frame, NATIVE, EncodeOptions())
    assert r.payload == bytes([0x80, 1, 2, 3])
    (r,) = TightEncoder().encode(frame, FORMATS["rgb565"], EncodeOptions())
    value = (0 << 11) | (0 << 5) | 0  # 1,2,3 round to 0 in 5/6 bits
    assert r.payload == bytes([0x80]) + struct.pack("<H", value)


def test_tight_small_palette_is_uncompressed() -> None:
    frame = bgrx([[(0, 0, 0), (255, 255, 255)]] * 2)  # 2 colours, 2 rows of 1 byte
    (r,) = TightEncoder().encode(frame, NATIVE, EncodeOptions())
    # stream 1, read-filter, palette filter, 2 colours, black, white, bitmap rows
    assert r.payload == bytes([0x50, 1, 1, 0, 0, 0, 255, 255, 255, 0x40, 0x40])


def test_zrle_solid_tile_and_run_lengths() -> None:
    values = np.full((2, 3), 0x112233, dtype=np.uint32)
    assert encode_tile(values, NATIVE.pack_cpixels(values), NATIVE) == b"\x01\x33\x22\x11"
    from enkaku.protocol.rfb.encodings.zrle import run_length_bytes

    assert run_length_bytes(1) == b"\x00"
    assert run_length_bytes(255) == b"\xfe"
    assert run_length_bytes(256) == b"\xff\x00"
    assert run_length_bytes(511) == b"\xff\xff\x00"


@pytest.mark.parametrize("every", [True, False])
def test_zrle_runs_laid_out_at_once_match_run_by_run(every: bool) -> None:
    """``runs_bytes`` (all runs of many tiles in a few array operations) writes what
    the spec's run-by-run form does: the head, then the length bytes (for runs of one
    pixel only when ``every``), with runs across the 255 boundaries."""
    from enkaku.protocol.rfb.encodings.zrle import run_length_bytes, runs_bytes

    rng = np.random.default_rng(4)
    for _ in range(200):
        n, head = int(rng.integers(0, 40)), int(rng.integers(1, 5))
        lengths = rng.choice([1, 2, 254, 255, 256, 510, 511, 766, 4096], n).astype(np.int64)
        heads = rng.integers(0, 256, (n, head)).astype(np.uint8)
        pieces = [
            bytes(h) + (run_length_bytes(int(ln)) if every or ln > 1 else b"")
            for h, ln in zip(heads, lengths, strict=True)
        ]
        data, ends = runs_bytes(heads, lengths, every)
        assert data.tobytes() == b"".join(pieces)
        assert ends.tolist() == np.cumsum([len(p) for p in pieces]).tolist()


def test_zrle_pack_indices() -> None:
    idx = np.array([[1, 0, 1], [0, 1, 1]], dtype=np.uint8)
    assert pack_indices(idx, 1) == bytes([0b10100000, 0b01100000])
    idx = np.array([[3, 2, 1]], dtype=np.uint8)
    assert pack_indices(idx, 2) == bytes([0b11100100])
    assert pack_indices(idx, 4) == bytes([0x32, 0x10])


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_zrle_pack_indices_match_a_pixel_by_pixel_packing(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 65, 2))
        idx = rng.integers(0, 1 << bits, (h, w)).astype(np.uint8)
        expected = bytearray()
        for row in idx.tolist():
            acc, used = 0, 0
            for v in row:
                acc, used = acc << bits | v, used + bits
                if used == 8:
                    expected.append(acc)
                    acc, used = 0, 0
            if used:
                expected.append(acc << (8 - used))
        assert pack_indices(idx, bits) == bytes(expected)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_zrle_small_tile_is_what_encode_tiles_writes(fmt: str) -> None:
    """A key's glyph goes through ``small_tile`` (a dozen numpy calls); it must choose
    the same subencoding and write the same bytes as the batch sizing of every tile."""
    from enkaku.protocol.rfb.encodings.zrle import SMALL_TILE, encode_tiles, small_tile

    pf = FORMATS[fmt]
    rng = np.random.default_rng(len(fmt))
    kinds = set()
    for trial in range(400):
        h, w = (int(v) for v in rng.integers(1, 33, 2))
        assert h * w <= SMALL_TILE
        colours = int(rng.choice([1, 2, 3, 5, 16, 17, 127, 128, 300]))
        palette = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
        idx = rng.integers(0, colours, (h, w))
        if trial % 3 == 1:  # long runs across rows
            idx = np.repeat(idx[:, :1], w, axis=1)
        elif trial % 3 == 2:  # a flat half, as beside a glyph
            idx[:, : w // 2] = 0
        values = pf.values(palette[idx])
        got = small_tile(values, pf)
        (tile,), raw = encode_tiles(
            values.reshape(1, -1), pf.pack_cpixels(values.reshape(1, -1)), h, w, pf
        )
        assert got == (tile, raw)
        kinds.add(
            tile[0] if tile[0] < 2 else 128 if tile[0] == 128 else 129 if tile[0] > 128 else 2
        )
    assert kinds == {0, 1, 2, 128, 129}  # raw, solid, packed, RLE, palette RLE all met


def test_zrle_golden_stream() -> None:
    frame = bgrx([[(9, 8, 7)] * 3] * 2)
    (r,) = ZRLEEncoder().encode(frame, NATIVE, EncodeOptions())
    (length,) = struct.unpack_from("!I", r.payload)
    assert zlib.decompressobj().decompress(r.payload[4 : 4 + length]) == b"\x01\x07\x08\x09"


def test_cpixel_and_tpixel_forms() -> None:
    assert NATIVE.cpixel_bytes == slice(0, 3)
    assert FORMATS["bgr32_be"].cpixel_bytes == slice(1, 4)
    assert FORMATS["xrgb32_high"].cpixel_bytes == slice(1, 4)
    assert FORMATS["depth32"].cpixel_bytes == slice(0, 4)
    assert NATIVE.tpixel_is_rgb and not FORMATS["depth32"].tpixel_is_rgb


# -- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("encoding", [Encoding.RAW, Encoding.ZRLE, Encoding.TIGHT])
def test_round_trip(fmt: str, encoding: int) -> None:
    pf = FORMATS[fmt]
    h, w = 150, 203
    server, dec = served(pf, (encoding, Encoding.COPYRECT), w, h)
    for seed in (1, 2):  # the second frame reuses the zlib streams
        img = sample_image(h, w, seed)
        server.receive_data(update_request(False, 0, 0, w, h))
        server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
        dec.feed(server.data_to_send())
        assert {e for *_, e in dec.updates[-1].rects} == {encoding}
        np.testing.assert_array_equal(dec.fb, pf.values(img))
        # then a partial update
        img2 = img.copy()
        img2[10:50, 20:90] = sample_image(40, 70, seed + 10)
        server.receive_data(update_request(True, 0, 0, w, h))
        server.send_framebuffer_update(img2, [Rect(20, 10, 70, 40)])
        dec.feed(server.data_to_send())
        np.testing.assert_array_equal(dec.fb, pf.values(img2))


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_random_shapes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 140, 2))
    pf = FORMATS[sorted(FORMATS)[seed % len(FORMATS)]]
    for encoding in (Encoding.RAW, Encoding.ZRLE, Encoding.TIGHT):
        server, dec = served(pf, (encoding,), w, h)
        img = rng.integers(0, 4, (h, w, 4), dtype=np.uint8) * 80
        server.receive_data(update_request(False, 0, 0, w, h))
        server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
        dec.feed(server.data_to_send())
        np.testing.assert_array_equal(dec.fb, pf.values(img))


def test_tight_wide_rect_is_split() -> None:
    w, h = 2100, 3
    server, dec = served(NATIVE, (Encoding.TIGHT,), w, h)
    img = np.random.default_rng(5).integers(0, 256, (h, w, 4), dtype=np.uint8)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    dec.feed(server.data_to_send())
    assert all(rw <= 2048 for _, _, rw, _, _ in dec.updates[-1].rects)
    np.testing.assert_array_equal(dec.fb, NATIVE.values(img))


def test_tight_level_change_continues_stream_without_reset() -> None:
    """noVNC 1.7 (pako's inflateReset keeps a zero-size window) fails on the rect after
    a Tight stream reset with "zlib inflate failed": a level change must not reset."""
    w, h = 64, 64
    server, dec = served(NATIVE, (Encoding.TIGHT, Encoding.COMPRESS_LOW + 1), w, h)
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (40, 4), dtype=np.uint8)  # indexed stream 2
    base = palette[rng.integers(0, 40, (h, w))]
    for level in (1, 9, 9, 0, 5):
        server.receive_data(set_encodings(Encoding.TIGHT, Encoding.COMPRESS_LOW + level))
        img = base.copy()  # mostly the same bytes: back-references into earlier rects
        img[rng.integers(0, h), :] = palette[rng.integers(0, 40, w)]
        server.receive_data(update_request(False, 0, 0, w, h))
        server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
        data = server.data_to_send()
        dec.feed(data)  # one decompressobj per stream, never replaced
        np.testing.assert_array_equal(dec.fb, NATIVE.values(img))
    assert dec.tight_resets == []
    # The same stream, level by level, at the wire: no reset bits, no new zlib header.
    enc = TightEncoder()
    tile = np.random.default_rng(4).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    first = enc.encode_tile(tile, NATIVE, EncodeOptions(compress_level=2))
    again = enc.encode_tile(tile, NATIVE, EncodeOptions(compress_level=9))
    assert first[0] == again[0] == 0x00  # copy filter, stream 0, no reset bits
    first_z, again_z = (p[len(compact_length(len(p) - 2)) + 1 :] for p in (first, again))
    assert first_z[0] == 0x78 and again_z[0] != 0x78  # one zlib header, at the start
    inflater = zlib.decompressobj()
    assert inflater.decompress(first_z) == inflater.decompress(again_z)
    assert len(again_z) < 100  # primed with the stream's history: the tile repeats


@pytest.mark.parametrize("fmt", ["native", "rgb565", "bgr233"])
def test_tight_jpeg(fmt: str) -> None:
    pf = FORMATS[fmt]
    h, w = 96, 160
    server, dec = served(pf, (Encoding.TIGHT, Encoding.JPEG_QUALITY_LOW + 9), w, h)
    img = photo_image(h, w)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    dec.feed(server.data_to_send())
    if pf.bits_per_pixel == 8:
        assert dec.jpeg_rects == 0  # JPEG only at 16 and 32 bpp
        np.testing.assert_array_equal(dec.fb, pf.values(img))
        return
    assert dec.jpeg_rects > 0
    expected = rgb_to_values(img[..., 2::-1], pf)
    for mx, shift in ((pf.red_max, pf.red_shift), (pf.blue_max, pf.blue_shift)):
        got = (dec.fb >> shift) & mx
        want = (expected >> shift) & mx
        assert np.abs(got.astype(int) - want.astype(int)).mean() < mx * 0.05


def test_copyrect_and_fallback() -> None:
    w, h = 40, 30
    server, dec = served(NATIVE, (Encoding.ZRLE, Encoding.COPYRECT), w, h)
    img = sample_image(h, w)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    moved = img.copy()
    moved[0:10, 20:30] = img[5:15, 2:12]
    server.receive_data(update_request(True, 0, 0, w, h))
    server.send_framebuffer_update(moved, [], [Copy(Rect(20, 0, 10, 10), 2, 5)])
    dec.feed(server.data_to_send())
    assert dec.updates[-1].rects == [(20, 0, 10, 10, Encoding.COPYRECT)]
    np.testing.assert_array_equal(dec.fb, NATIVE.values(moved))
    # Without CopyRect on offer, the copy's pixels are sent instead.
    server2, dec2 = served(NATIVE, (Encoding.ZRLE,), w, h)
    server2.receive_data(update_request(False, 0, 0, w, h))
    server2.send_framebuffer_update(moved, [], [Copy(Rect(20, 0, 10, 10), 2, 5)])
    dec2.feed(server2.data_to_send())
    assert dec2.updates[-1].rects == [(20, 0, 10, 10, Encoding.ZRLE)]


def test_last_rect_for_huge_updates() -> None:
    w, h = 300, 300
    server, dec = served(NATIVE, (Encoding.RAW, Encoding.COPYRECT, Encoding.LAST_RECT), w, h)
    img = sample_image(h, w)
    copies = [Copy(Rect(i % 300, i // 300 % 300, 1, 1), 0, 0) for i in range(70000)]
    server.receive_data(update_request(True, 0, 0, w, h))
    server.send_framebuffer_update(img, [], copies)
    dec.feed(server.data_to_send())
    assert len(dec.updates) == 1
    assert dec.updates[0].rects[-1][-1] == Encoding.LAST_RECT
    assert len(dec.updates[0].rects) == 70001
