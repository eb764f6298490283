"""A small, independent RFB client-side decoder for tests (written from the spec).

It keeps a framebuffer of pixel values in the client's pixel format and decodes every
server-to-client message the enkaku server can send: FramebufferUpdate with Raw,
CopyRect, ZRLE, Tight (fill, JPEG, basic with copy and palette filters), Cursor,
DesktopSize, ExtendedDesktopSize, LastRect and the QEMU announcement; ServerCutText,
SetColourMapEntries, Bell, EndOfContinuousUpdates and ServerFence.
Feed it complete messages (what ``RFBServer.data_to_send()`` returns); ``whole_messages``
tells where they end in bytes cut anywhere.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from enkaku.protocol.rfb.pixelformat import PixelFormat


class Incomplete(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Incomplete(f"need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


def pixels_from_bytes(data: bytes, pf: PixelFormat, count: int) -> np.ndarray:
    """PIXEL bytes -> uint32 values."""
    bpp = pf.bits_per_pixel // 8
    dtype = np.dtype({1: "u1", 2: "u2", 4: "u4"}[bpp]).newbyteorder(">" if pf.big_endian else "<")
    return np.frombuffer(data, dtype=dtype, count=count).astype(np.uint32)


def cpixel_size(pf: PixelFormat) -> tuple[int, int]:
    """(bytes per CPIXEL, offset of the CPIXEL in a little-endian value's 4 bytes)."""
    if pf.true_colour and pf.bits_per_pixel == 32 and pf.depth <= 24:
        used = (
            (pf.red_max << pf.red_shift)
            | (pf.green_max << pf.green_shift)
            | (pf.blue_max << pf.blue_shift)
        )
        if used < 1 << 24:
            return 3, 0
        if used & 0xFF == 0:
            return 3, 1
    return pf.bits_per_pixel // 8, -1


def cpixels_from_bytes(data: bytes, pf: PixelFormat, count: int) -> np.ndarray:
    _, low_offset = cpixel_size(pf)
    if low_offset < 0:
        return pixels_from_bytes(data, pf, count)
    raw = np.frombuffer(data, dtype=np.uint8, count=count * 3).reshape(count, 3)
    if pf.big_endian:
        raw = raw[:, ::-1]  # most significant byte first on the wire
    values = (
        raw[:, 0].astype(np.uint32)
        | raw[:, 1].astype(np.uint32) << 8
        | raw[:, 2].astype(np.uint32) << 16
    )
    return values << np.uint32(8 * low_offset)


def tpixel_is_rgb(pf: PixelFormat) -> bool:
    return (
        pf.true_colour
        and pf.bits_per_pixel == 32
        and pf.depth == 24
        and pf.red_max == pf.green_max == pf.blue_max == 255
    )


def tpixels_from_bytes(data: bytes, pf: PixelFormat, count: int) -> np.ndarray:
    if not tpixel_is_rgb(pf):
        return pixels_from_bytes(data, pf, count)
    raw = np.frombuffer(data, dtype=np.uint8, count=count * 3).reshape(count, 3).astype(np.uint32)
    return raw[:, 0] << pf.red_shift | raw[:, 1] << pf.green_shift | raw[:, 2] << pf.blue_shift


def rgb_to_values(rgb: np.ndarray, pf: PixelFormat) -> np.ndarray:
    """(h, w, 3) 8-bit RGB -> pixel values, rounding to nearest like the server."""
    out = np.zeros(rgb.shape[:2], dtype=np.uint32)
    for i, (mx, shift) in enumerate(
        ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift), (pf.blue_max, pf.blue_shift))
    ):
        out |= ((rgb[..., i].astype(np.uint32) * mx + 127) // 255) << shift
    return out


def gradient_decode(residuals: np.ndarray) -> np.ndarray:
    """Undo Tight's gradient filter pixel by pixel, as TigerVNC's FilterGradient24 does."""
    h, w, _ = residuals.shape
    res = residuals.astype(int).tolist()
    out = [[[0, 0, 0] for _ in range(w)] for _ in range(h)]
    for y in range(h):
        for x in range(w):
            for c in range(3):
                up = out[y - 1][x][c] if y else 0
                left = out[y][x - 1][c] if x else 0
                corner = out[y - 1][x - 1][c] if x and y else 0
                predicted = min(255, max(0, left + up - corner))
                out[y][x][c] = (res[y][x][c] + predicted) & 0xFF
    return np.array(out, dtype=np.uint8)


def read_compact_length(r: _Reader) -> int:
    b = r.take(1)[0]
    n = b & 0x7F
    if b & 0x80:
        b = r.take(1)[0]
        n |= (b & 0x7F) << 7
        if b & 0x80:
            n |= r.take(1)[0] << 14
    return n


def _message_length(r: _Reader, bpp: int) -> int | None:
    """The length of the server message at ``r``'s position (raises Incomplete when
    it is cut short), or None when it cannot be told without decoding (Tight)."""
    start = r.pos
    kind = r.take(1)[0]
    if kind == 0:
        (count,) = r.unpack("!xH")
        i = 0
        while count == 0xFFFF or i < count:
            i += 1
            _, _, w, h, enc = r.unpack("!HHHHi")
            if enc == -224:  # LastRect
                break
            if enc == 0:
                r.take(w * h * bpp)
            elif enc == 1:
                r.take(4)
            elif enc == 16:
                r.take(r.unpack("!I")[0])
            elif enc == -239:
                r.take(w * h * bpp + (w + 7) // 8 * h)
            elif enc == -308:
                r.take(16 * r.unpack("!B3x")[0])
            elif enc not in (-223, -258):
                return None
    elif kind == 1:
        r.take(6 * r.unpack("!xHH")[1])
    elif kind == 3:
        r.take(abs(r.unpack("!3xi")[0]))
    elif kind == 248:
        r.take(r.unpack("!3xIB")[1])
    elif kind not in (2, 150):
        return None
    return r.pos - start


def whole_messages(data: bytes, bpp: int = 4) -> int | None:
    """How many bytes at the start of ``data`` are whole server messages, for bytes cut
    anywhere (a streamed update arrives band by band); None when a message's length
    cannot be told without decoding it (Tight)."""
    r = _Reader(data)
    end = 0
    while not r.done:
        try:
            n = _message_length(r, bpp)
        except Incomplete:
            break
        if n is None:
            return None
        end = r.pos
    return end


@dataclass
class Update:
    rects: list[tuple[int, int, int, int, int]] = field(default_factory=list)


@dataclass
class Decoder:
    width: int
    height: int
    pf: PixelFormat
    fb: np.ndarray = field(init=False)
    zrle: Any = field(init=False)
    tight: list[Any] = field(init=False)
    updates: list[Update] = field(default_factory=list)
    cursor: tuple[int, int, np.ndarray, np.ndarray] | None = None
    qemu_announced: bool = False
    desktop_sizes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    #: Each ExtendedDesktopSize's screen list: (id, x, y, w, h) per screen.
    layouts: list[list[tuple[int, int, int, int, int]]] = field(default_factory=list)
    cut_texts: list[bytes] = field(default_factory=list)
    fences: list[tuple[int, bytes]] = field(default_factory=list)
    end_of_cu: int = 0
    bells: int = 0
    colour_map: list[tuple[int, int, int]] = field(default_factory=list)
    jpeg_rects: int = 0
    jpeg_areas: list[tuple[int, int, int, int]] = field(default_factory=list)
    gradient_rects: int = 0
    tight_resets: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fb = np.zeros((self.height, self.width), dtype=np.uint32)
        self.zrle = zlib.decompressobj()
        self.tight = [zlib.decompressobj() for _ in range(4)]

    def feed(self, data: bytes) -> None:
        r = _Reader(data)
        while not r.done:
            kind = r.take(1)[0]
            if kind == 0:
                self._update(r)
            elif kind == 1:
                first, n = r.unpack("!xHH")
                self.colour_map = [r.unpack("!HHH") for _ in range(n)]
                assert first == 0
            elif kind == 2:
                self.bells += 1
            elif kind == 3:
                (n,) = r.unpack("!3xI")
                self.cut_texts.append(r.take(n))
            elif kind == 150:
                self.end_of_cu += 1
            elif kind == 248:
                flags, n = r.unpack("!3xIB")
                self.fences.append((flags, r.take(n)))
            else:
                raise AssertionError(f"unknown server message {kind}")

    def _update(self, r: _Reader) -> None:
        (count,) = r.unpack("!xH")
        update = Update()
        self.updates.append(update)
        i = 0
        while count == 0xFFFF or i < count:
            i += 1
            x, y, w, h, enc = r.unpack("!HHHHi")
            update.rects.append((x, y, w, h, enc))
            if enc == -224:
                return
            if enc >= 0:
                assert x + w <= self.width and y + h <= self.height, (x, y, w, h, enc)
            if enc == 0:
                n = w * h
                self.fb[y : y + h, x : x + w] = pixels_from_bytes(
                    r.take(n * self.pf.bits_per_pixel // 8), self.pf, n
                ).reshape(h, w)
            elif enc == 1:
                sx, sy = r.unpack("!HH")
                self.fb[y : y + h, x : x + w] = self.fb[sy : sy + h, sx : sx + w].copy()
            elif enc == 16:
                (n,) = r.unpack("!I")
                self._zrle(self.zrle.decompress(r.take(n)), x, y, w, h)
            elif enc == 7:
                self._tight(r, x, y, w, h)
            elif enc == -239:
                n = w * h
                pixels = pixels_from_bytes(r.take(n * self.pf.bits_per_pixel // 8), self.pf, n)
                mask = np.frombuffer(r.take((w + 7) // 8 * h), dtype=np.uint8)
                bits = np.unpackbits(mask.reshape(h, (w + 7) // 8), axis=1)[:, :w] if n else mask
                self.cursor = (x, y, pixels.reshape(h, w), bits)
            elif enc == -223:
                self.width, self.height = w, h
                self.fb = np.zeros((h, w), dtype=np.uint32)
                self.desktop_sizes.append((x, y, w, h, 1))
            elif enc == -308:
                (screens,) = r.unpack("!B3x")
                self.layouts.append([r.unpack("!IHHHHI")[:5] for _ in range(screens)])
                if (self.width, self.height) != (w, h):
                    self.fb = np.zeros((h, w), dtype=np.uint32)
                self.width, self.height = w, h
                self.desktop_sizes.append((x, y, w, h, screens))
            elif enc == -258:
                self.qemu_announced = True
            else:
                raise AssertionError(f"unexpected encoding {enc}")

    # -- ZRLE, RFC 6143 §7.7.6 ------------------------------------------------------

    def _zrle(self, data: bytes, x: int, y: int, w: int, h: int) -> None:
        r = _Reader(data)
        bpc, _ = cpixel_size(self.pf)
        for ty in range(y, y + h, 64):
            for tx in range(x, x + w, 64):
                tw, th = min(64, x + w - tx), min(64, y + h - ty)
                n = tw * th
                sub = r.take(1)[0]
                rle, size = sub & 0x80, sub & 0x7F
                if not rle and size == 0:
                    tile = cpixels_from_bytes(r.take(n * bpc), self.pf, n)
                elif not rle and size == 1:
                    tile = np.full(n, cpixels_from_bytes(r.take(bpc), self.pf, 1)[0])
                elif not rle:
                    assert size <= 16
                    pal = cpixels_from_bytes(r.take(size * bpc), self.pf, size)
                    bits = 1 if size == 2 else 2 if size <= 4 else 4
                    row = (tw * bits + 7) // 8
                    packed = np.frombuffer(r.take(row * th), dtype=np.uint8).reshape(th, row)
                    unpacked = np.unpackbits(packed, axis=1)  # MSB first
                    idx = np.zeros((th, row * 8 // bits), dtype=np.int64)
                    for b in range(bits):
                        idx = idx << 1 | unpacked[:, b::bits]
                    tile = pal[idx[:, :tw].ravel()]
                else:
                    assert size != 1
                    pal = cpixels_from_bytes(r.take(size * bpc), self.pf, size) if size else None
                    out: list[int] = []
                    while len(out) < n:
                        if pal is None:
                            value = int(cpixels_from_bytes(r.take(bpc), self.pf, 1)[0])
                            length = self._run(r)
                        else:
                            index = r.take(1)[0]
                            value = int(pal[index & 0x7F])
                            length = self._run(r) if index & 0x80 else 1
                        out.extend([value] * length)
                    assert len(out) == n, "run past the end of the tile"
                    tile = np.array(out, dtype=np.uint32)
                self.fb[ty : ty + th, tx : tx + tw] = tile.reshape(th, tw)
        assert r.done, "trailing ZRLE data"

    @staticmethod
    def _run(r: _Reader) -> int:
        length = 1
        while True:
            b = r.take(1)[0]
            length += b
            if b != 255:
                return length

    # -- Tight, rfbproto "Tight Encoding" ------------------------------------------

    def _tight(self, r: _Reader, x: int, y: int, w: int, h: int) -> None:
        assert w <= 2048
        ctl = r.take(1)[0]
        for s in range(4):
            if ctl >> s & 1:
                self.tight[s] = zlib.decompressobj()
                self.tight_resets.append(s)
        kind = ctl >> 4
        tsize = 3 if tpixel_is_rgb(self.pf) else self.pf.bits_per_pixel // 8
        n = w * h
        if kind == 0x8:
            value = tpixels_from_bytes(r.take(tsize), self.pf, 1)[0]
            self.fb[y : y + h, x : x + w] = value
            return
        if kind == 0x9:
            assert self.pf.bits_per_pixel in (16, 32)
            data = r.take(read_compact_length(r))
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            assert rgb.shape[:2] == (h, w)
            self.fb[y : y + h, x : x + w] = rgb_to_values(rgb, self.pf)
            self.jpeg_rects += 1
            self.jpeg_areas.append((x, y, w, h))
            return
        assert kind & 0x8 == 0, f"bad Tight control {ctl:#x}"
        stream = kind & 0x3
        filt = r.take(1)[0] if kind & 0x4 else 0
        if filt == 0:
            raw = self._tight_data(r, stream, n * tsize)
            values = tpixels_from_bytes(raw, self.pf, n)
        elif filt == 1:
            colours = r.take(1)[0] + 1
            pal = tpixels_from_bytes(r.take(colours * tsize), self.pf, colours)
            if colours == 2:
                row = (w + 7) // 8
                raw = self._tight_data(r, stream, row * h)
                bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(h, row), axis=1)
                values = pal[bits[:, :w].ravel()]
            else:
                raw = self._tight_data(r, stream, n)
                values = pal[np.frombuffer(raw, dtype=np.uint8)]
        elif filt == 2:
            assert tsize == 3, "gradient filter only on 3-byte TPIXELs here"
            raw = self._tight_data(r, stream, n * 3)
            values = gradient_decode(np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3))
            values = tpixels_from_bytes(values.tobytes(), self.pf, n)
            self.gradient_rects += 1
        else:
            raise AssertionError(f"filter {filt} not expected")
        self.fb[y : y + h, x : x + w] = values.reshape(h, w)

    def _tight_data(self, r: _Reader, stream: int, size: int) -> bytes:
        if size < 12:
            return r.take(size)
        data = self.tight[stream].decompress(r.take(read_compact_length(r)))
        assert len(data) == size, (len(data), size)
        return data


def handshake(server: Any, version: bytes = b"RFB 003.008\n") -> Decoder:
    """Drive ``server`` through the RFB 3.x handshake; returns a Decoder at ServerInit."""
    assert server.data_to_send() == b"RFB 003.008\n"
    server.receive_data(version)
    out = server.data_to_send()
    if version in (b"RFB 003.007\n", b"RFB 003.008\n"):
        assert out == b"\x01\x01"
        server.receive_data(b"\x01")
        out = server.data_to_send()
        assert out == (b"\x00\x00\x00\x00" if version == b"RFB 003.008\n" else b"")
    else:
        assert out == b"\x00\x00\x00\x01"
    server.receive_data(b"\x01")
    init = server.data_to_send()
    w, h = struct.unpack_from("!HH", init)
    pf = PixelFormat.parse(init[4:20])
    (n,) = struct.unpack_from("!I", init, 20)
    assert len(init) == 24 + n
    return Decoder(w, h, pf)


def set_encodings(*codes: int) -> bytes:
    return struct.pack(f"!BxH{len(codes)}i", 2, len(codes), *codes)


def set_pixel_format(pf: PixelFormat) -> bytes:
    return b"\x00\x00\x00\x00" + bytes(pf)


def update_request(incremental: bool, x: int, y: int, w: int, h: int) -> bytes:
    return struct.pack("!BBHHHH", 3, incremental, x, y, w, h)


def sample_image(h: int, w: int, seed: int = 1) -> np.ndarray:
    """A BGRX test screen: noise, a flat block, two-colour 'text', a gradient, few colours."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    h3, w2 = h // 3, w // 2
    img[:h3, :w2] = (200, 120, 40, 0)
    text = rng.random((h3, w2)) < 0.3
    img[h3 : 2 * h3, :w2] = np.where(text[..., None], np.uint8(0), np.uint8(255))
    yy, xx = np.mgrid[0 : h - 2 * h3, 0:w2]
    img[2 * h3 :, :w2, 0] = 7
    img[2 * h3 :, :w2, 1] = (xx + yy) % 256
    img[2 * h3 :, :w2, 2] = 9
    img[2 * h3 :, w2:, :3] = rng.integers(0, 5, (h - 2 * h3, w - w2, 1)) * 60
    img[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)  # X byte: garbage
    return img


def photo_image(h: int, w: int, seed: int = 1) -> np.ndarray:
    """A BGRX photo-like screen: smooth colour fields with fine grain (as the benchmark's)."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
    field = np.asarray(low.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    grain = rng.normal(0, 10, (h, w, 1)).astype(np.float32)
    rgb = np.clip(field + grain, 0, 255).astype(np.uint8)
    img = np.zeros((h, w, 4), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = rgb[..., 2], rgb[..., 1], rgb[..., 0]
    return img
