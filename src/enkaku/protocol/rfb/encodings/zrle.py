"""ZRLE encoding (RFC 6143 §7.7.6).

The rectangle is cut into 64×64 tiles, each tile written as solid, packed palette,
plain RLE, palette RLE or raw CPIXELs (whichever is shortest), and the tiles of the
rectangle are compressed with the connection's single zlib stream, flushed with
Z_SYNC_FLUSH so the client can decode each rectangle on its own. That stream lives as
long as the connection and can never be reset, so the compression level in force at the
first ZRLE rectangle stays for the connection.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import numpy.typing as npt

from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat, Values

TILE = 64


def run_length_bytes(length: int) -> bytes:
    """A run length as ZRLE writes it: 255s, then (length - 1) % 255."""
    return b"\xff" * ((length - 1) // 255) + bytes([(length - 1) % 255])


def pack_indices(indices: npt.NDArray[np.uint8], bits: int) -> bytes:
    """Pack palette indices ``bits`` wide, leftmost pixel in the high bits, rows padded."""
    h, w = indices.shape
    per_byte = 8 // bits
    width = -(-w // per_byte) * per_byte
    padded = np.zeros((h, width), dtype=np.uint8)
    padded[:, :w] = indices
    grouped = padded.reshape(h, width // per_byte, per_byte).astype(np.uint16)
    shifts = np.array([8 - bits * (i + 1) for i in range(per_byte)], dtype=np.uint16)
    return (grouped << shifts).sum(axis=2).astype(np.uint8).tobytes()


def encode_tile(values: Values, cpixels: npt.NDArray[np.uint8], pf: PixelFormat) -> bytes:
    """One ZRLE tile (before compression), in its shortest subencoding."""
    th, tw = values.shape
    flat = values.ravel()
    n = flat.size
    bpc = cpixels.shape[-1]
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    if starts.size == 1:
        return b"\x01" + cpixels[0, 0].tobytes()
    lengths = np.diff(np.append(starts, n))
    length_bytes = (lengths - 1) // 255 + 1
    palette, inverse = np.unique(flat, return_inverse=True)
    colours = palette.size

    sizes = {"raw": n * bpc, "rle": int(starts.size * bpc + length_bytes.sum())}
    if colours <= 127:
        sizes["palette_rle"] = int(colours * bpc + starts.size + length_bytes[lengths > 1].sum())
    if colours <= 16:
        bits = 1 if colours == 2 else 2 if colours <= 4 else 4
        sizes["packed"] = colours * bpc + (tw * bits + 7) // 8 * th
    choice = min(sizes, key=lambda k: sizes[k])

    if choice == "raw":
        return b"\x00" + cpixels.tobytes()
    flat_c = cpixels.reshape(n, bpc)
    out = bytearray()
    if choice == "rle":
        out.append(128)
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            out += flat_c[start].tobytes()
            out += run_length_bytes(length)
        return bytes(out)
    palette_bytes = pf.pack_cpixels(palette.astype(np.uint32)).tobytes()
    if choice == "packed":
        out.append(colours)
        out += palette_bytes
        out += pack_indices(inverse.reshape(th, tw).astype(np.uint8), bits)
        return bytes(out)
    out.append(128 + colours)
    out += palette_bytes
    index = inverse.ravel()
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        if length == 1:
            out.append(int(index[start]))
        else:
            out.append(int(index[start]) | 128)
            out += run_length_bytes(length)
    return bytes(out)


class ZRLEEncoder:
    """ZRLE with the connection's one persistent zlib stream."""

    code = 16

    def __init__(self) -> None:
        self._stream: zlib._Compress | None = None

    def encode(self, frame: Frame, pf: PixelFormat, options: EncodeOptions) -> list[EncodedRect]:
        """Encode ``frame`` (a BGRX rectangle) as one ZRLE rectangle."""
        h, w = frame.shape[:2]
        values = pf.values(frame)
        cpixels = pf.pack_cpixels(values)
        raw = bytearray()
        for ty in range(0, h, TILE):
            for tx in range(0, w, TILE):
                raw += encode_tile(
                    values[ty : ty + TILE, tx : tx + TILE],
                    cpixels[ty : ty + TILE, tx : tx + TILE],
                    pf,
                )
        if self._stream is None:
            self._stream = zlib.compressobj(max(1, options.compress_level))
        data = self._stream.compress(bytes(raw)) + self._stream.flush(zlib.Z_SYNC_FLUSH)
        return [EncodedRect(0, 0, w, h, self.code, struct.pack("!I", len(data)) + data)]
