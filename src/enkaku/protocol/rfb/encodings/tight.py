"""Tight encoding (rfbproto "Tight Encoding"), the TightVNC/TigerVNC/noVNC dialect.

Each rectangle is cut into tiles of at most 128×128 pixels (Tight allows at most 2048
pixels of width, and the compact length at most 4 MiB of data), and each tile becomes:

- **fill** when it has one colour;
- **JPEG** when the client sent a JPEG quality level, the pixel format has 16 or 32
  bits per pixel and the tile has many colours (photos, gradients);
- **basic, palette filter** for 2..256 colours (1-bit indices on zlib stream 1 for two
  colours, 8-bit on stream 2);
- **basic, copy filter** (TPIXELs on stream 0) otherwise.

Basic data shorter than 12 bytes goes uncompressed. The four zlib streams persist across
rectangles (each rectangle's data ends with a Z_SYNC_FLUSH) and are never reset. When the
client asks for another compression level, the stream goes on at the new level the way
zlib's deflateParams() does it (TigerVNC and libvncserver do the same): after the sync
flush, a raw-deflate compressor primed with the stream's last 32 KiB of input continues
with new blocks, so the client's inflater, window and all, carries on unaware. Setting the
compression-control byte's reset bits instead is legal Tight but breaks noVNC (1.7 and
earlier): its vendored pako's inflateReset() leaves the old window with a size of zero,
so the first back-reference after a reset fails with "zlib inflate failed".
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat, to_rgb

TILE = 128
MAX_WIDTH = 2048
#: Tiles with more colours than this go to JPEG when the client allows JPEG.
JPEG_MIN_COLOURS = 64
MIN_TO_COMPRESS = 12
#: The zlib window: how much of a stream's input its continuation is primed with.
WINDOW = 1 << 15

FILL = 0x80
JPEG = 0x90
READ_FILTER = 0x40
FILTER_PALETTE = 1

STREAM_COPY = 0
STREAM_MONO = 1
STREAM_INDEXED = 2


def compact_length(n: int) -> bytes:
    """Tight's 1-3 byte length: 7 bits, 7 bits, 8 bits, least significant first."""
    if n < 0 or n >= 1 << 22:
        raise ValueError(f"Tight data length {n} out of range")
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([n & 0x7F | 0x80, n >> 7])
    return bytes([n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14])


class TightEncoder:
    """Tight with fill, palette, copy and JPEG; holds the four zlib streams."""

    code = 7

    def __init__(self) -> None:
        self._streams: list[zlib._Compress | None] = [None] * 4
        self._levels: list[int] = [-1] * 4
        self._history: list[bytes] = [b""] * 4  # each stream's last WINDOW bytes of input

    def encode(self, frame: Frame, pf: PixelFormat, options: EncodeOptions) -> list[EncodedRect]:
        """Encode ``frame`` (a BGRX rectangle) as Tight rectangles of at most TILE²."""
        h, w = frame.shape[:2]
        out = []
        for y in range(0, h, TILE):
            for x in range(0, w, TILE):
                tile = frame[y : y + TILE, x : x + TILE]
                th, tw = tile.shape[:2]
                payload = self.encode_tile(tile, pf, options)
                out.append(EncodedRect(x, y, tw, th, self.code, payload, payload[0] == JPEG))
        return out

    def encode_tile(self, tile: Frame, pf: PixelFormat, options: EncodeOptions) -> bytes:
        """One Tight rectangle's payload for ``tile`` (at most 2048 pixels wide)."""
        th, tw = tile.shape[:2]
        if tw > MAX_WIDTH:
            raise ValueError("Tight rectangles are at most 2048 pixels wide")
        values = pf.values(tile)
        flat = values.ravel()
        if bool((flat == flat[0]).all()):
            return bytes([FILL]) + pf.pack_tpixels(flat[:1]).tobytes()
        palette, inverse = np.unique(flat, return_inverse=True)
        colours = palette.size
        if (
            options.jpeg_quality is not None
            and pf.bits_per_pixel in (16, 32)
            and colours > JPEG_MIN_COLOURS
        ):
            data = self._jpeg(tile, options)
            return bytes([JPEG]) + compact_length(len(data)) + data
        if colours <= 256:
            indices = inverse.reshape(th, tw).astype(np.uint8)
            if colours == 2:
                stream = STREAM_MONO
                data = np.packbits(indices, axis=1).tobytes()
            else:
                stream = STREAM_INDEXED
                data = indices.tobytes()
            head = bytes([FILTER_PALETTE, colours - 1]) + pf.pack_tpixels(palette).tobytes()
            return self._basic(stream, READ_FILTER, head, data, options)
        return self._basic(STREAM_COPY, 0, b"", pf.pack_tpixels(values).tobytes(), options)

    def _basic(
        self, stream: int, filter_bit: int, head: bytes, data: bytes, options: EncodeOptions
    ) -> bytes:
        ctl = stream << 4 | filter_bit
        if len(data) < MIN_TO_COMPRESS:
            return bytes([ctl]) + head + data
        level = max(1, options.compress_level)
        compressor = self._streams[stream]
        if compressor is None:
            compressor = self._streams[stream] = zlib.compressobj(level)
            self._levels[stream] = level
        elif self._levels[stream] != level:
            # Same stream, new level (see the module docstring): no reset bit, no header.
            compressor = self._streams[stream] = zlib.compressobj(
                level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=self._history[stream]
            )
            self._levels[stream] = level
        packed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._history[stream] = (self._history[stream] + data)[-WINDOW:]
        return bytes([ctl]) + head + compact_length(len(packed)) + packed

    @staticmethod
    def _jpeg(tile: Frame, options: EncodeOptions) -> bytes:
        image = Image.fromarray(to_rgb(tile), "RGB")
        buf = io.BytesIO()
        if options.jpeg_grayscale:
            image.convert("L").save(buf, "JPEG", quality=options.jpeg_quality)
        else:
            image.save(
                buf, "JPEG", quality=options.jpeg_quality, subsampling=options.jpeg_subsampling
            )
        return buf.getvalue()
