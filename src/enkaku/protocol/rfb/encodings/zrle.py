"""ZRLE encoding (RFC 6143 §7.7.6).

The rectangle is cut into 64×64 tiles, each tile written as solid, packed palette,
plain RLE, palette RLE or raw CPIXELs (whichever is shortest), and the tiles of the
rectangle are compressed with the connection's single zlib stream, flushed with
Z_SYNC_FLUSH so the client can decode each rectangle on its own.

The tiles of a 64-row band are sized up together in numpy: one sort of all of them gives
each tile's colour count, one comparison pass its runs, ``np.bincount`` the bytes each
subencoding would take; run-length data is then laid out with array arithmetic, not a
Python loop per run. The stream is ISA-L's when installed (``deflate.DeflateStream``:
several times faster than zlib for the same size). With Python's zlib, rectangles whose
tiles are mostly raw pixels (photos, where LZ77 finds little) go through the stream with
``Z_HUFFMAN_ONLY`` (about the same size at half the CPU), the stream continuing across the
change.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import numpy.typing as npt
from PIL import Image

from enkaku.protocol.rfb.encodings.deflate import DeflateStream
from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat, Values

TILE = 64
#: Share of a rectangle's tile bytes in raw tiles above which zlib codes Huffman only.
HUFFMAN_ONLY_SHARE = 0.5

SOLID, RAW, RLE, PALETTE_RLE, PACKED = range(5)


def run_length_bytes(length: int) -> bytes:
    """A run length as ZRLE writes it: 255s, then (length - 1) % 255."""
    return b"\xff" * ((length - 1) // 255) + bytes([(length - 1) % 255])


def pack_indices(indices: npt.NDArray[np.uint8], bits: int) -> bytes:
    """Pack palette indices ``bits`` wide, leftmost pixel in the high bits, rows padded."""
    h, w = indices.shape
    if bits == 1:
        return np.packbits(indices, axis=1).tobytes()
    per_byte = 8 // bits
    width = -(-w // per_byte) * per_byte
    padded = np.zeros((h, width), dtype=np.uint8)
    padded[:, :w] = indices
    grouped = padded.reshape(h, width // per_byte, per_byte)
    out = grouped[..., 0] << (8 - bits)
    for i in range(1, per_byte):
        out |= grouped[..., i] << (8 - bits * (i + 1))
    return out.tobytes()


def runs_bytes(heads: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64], every: bool) -> bytes:
    """Runs as ZRLE writes them: each run's head bytes, then its length bytes (for every
    run when ``every``, else only for runs longer than one pixel)."""
    head = heads.shape[1]
    nlen = (lengths - 1) // 255 + 1
    if not every:
        nlen = np.where(lengths > 1, nlen, 0)
    ends = np.cumsum(nlen + head)
    starts = ends - (nlen + head)
    out = np.full(int(ends[-1]), 255, dtype=np.uint8)
    out[starts[:, None] + np.arange(head)] = heads
    has = nlen > 0
    out[ends[has] - 1] = (lengths[has] - 1) % 255
    return out.tobytes()


def cpixel_blob(values: Values, pf: PixelFormat) -> bytes | None:
    """All CPIXELs of a contiguous (k, n) array of pixel values, row after row, when they
    are the low three bytes of little-endian 32-bit pixels (what nearly every client asks
    for): Pillow's RGBX->RGB packer drops every fourth byte far faster than a strided
    numpy copy. None for other formats."""
    if pf.bits_per_pixel != 32 or pf.big_endian or pf.cpixel_bytes != slice(0, 3):
        return None
    k, n = values.shape
    image = Image.frombuffer("RGBX", (n, k), np.ascontiguousarray(values), "raw", "RGBX", 0, 1)
    return image.tobytes("raw", "RGB")


def _bits(colours: int) -> int:
    return 1 if colours == 2 else 2 if colours <= 4 else 4


def encode_tiles(
    values: Values, cpixels: npt.NDArray[np.uint8], th: int, tw: int, pf: PixelFormat
) -> tuple[list[bytes], int]:
    """ZRLE tiles (before compression) of ``values`` (k, th*tw): k tiles of th×tw pixels
    each in row order, ``cpixels`` (k, th*tw, bpc) their CPIXELs. Returns the tiles' bytes
    and how many of them are raw pixels."""
    k, n = values.shape
    bpc = cpixels.shape[-1]
    starts = np.empty((k, n), dtype=bool)
    starts[:, 0] = True
    np.not_equal(values[:, 1:], values[:, :-1], out=starts[:, 1:])
    runs = starts.sum(axis=1)
    srt = np.sort(values, axis=1)
    new = np.empty((k, n), dtype=bool)
    new[:, 0] = True
    np.not_equal(srt[:, 1:], srt[:, :-1], out=new[:, 1:])
    colours = new.sum(axis=1)

    raw_size = n * bpc
    choice = np.full(k, RAW)
    best = np.full(k, raw_size)
    packed_rows = np.array([(tw * _bits(c) + 7) // 8 * th for c in (2, 4, 16)])
    packed = np.where(
        colours <= 16, colours * bpc + packed_rows[np.searchsorted([2, 4], colours)], 1 << 40
    )
    better = packed < best
    choice[better], best[better] = PACKED, packed[better]
    # Run lengths matter only where RLE could beat the rest (runs cost at least bpc+1 / 1).
    maybe = np.flatnonzero(
        (runs * (bpc + 1) < best) | ((colours <= 127) & (runs + colours * bpc < best))
    )
    run_at: dict[int, tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]] = {}
    if maybe.size:
        sub = starts[maybe]
        flat = np.flatnonzero(sub)
        lengths = np.diff(np.append(flat, sub.size))
        owner = flat // n
        lb = (lengths - 1) // 255 + 1
        sum_lb = np.bincount(owner, weights=lb, minlength=maybe.size)
        sum_lb_long = np.bincount(owner, weights=lb * (lengths > 1), minlength=maybe.size)
        bounds = np.searchsorted(owner, np.arange(maybe.size + 1))
        for j, i in enumerate(maybe.tolist()):
            rle = int(runs[i]) * bpc + int(sum_lb[j])
            c = int(colours[i])
            prle = c * bpc + int(runs[i]) + int(sum_lb_long[j]) if c <= 127 else 1 << 40
            if min(rle, prle) < best[i]:
                choice[i], best[i] = (RLE, rle) if rle <= prle else (PALETTE_RLE, prle)
                a, b = bounds[j], bounds[j + 1]
                run_at[i] = (flat[a:b] - j * n, lengths[a:b])
    choice[runs == 1] = SOLID

    out: list[bytes] = []
    raw = 0
    blob = cpixel_blob(values, pf) if bool((choice == RAW).any()) else None
    for i, kind in enumerate(choice.tolist()):
        if kind == RAW:
            if blob is None:
                out.append(b"\x00" + cpixels[i].tobytes())
            else:
                out.append(b"\x00" + blob[i * n * bpc : (i + 1) * n * bpc])
            raw += 1
        elif kind == SOLID:
            out.append(b"\x01" + cpixels[i, 0].tobytes())
        elif kind == RLE:
            pos, lengths = run_at[i]
            out.append(b"\x80" + runs_bytes(cpixels[i, pos], lengths, True))
        else:
            palette = srt[i, new[i]]
            head = pf.pack_cpixels(palette).tobytes()
            if kind == PACKED:
                index = np.searchsorted(palette, values[i]).astype(np.uint8)
                bits = _bits(palette.size)
                out.append(bytes([palette.size]) + head + pack_indices(index.reshape(th, tw), bits))
            else:
                pos, lengths = run_at[i]
                index = np.searchsorted(palette, values[i, pos]).astype(np.uint8)
                index |= np.where(lengths > 1, 128, 0).astype(np.uint8)
                body = runs_bytes(index[:, None], lengths, False)
                out.append(bytes([128 + palette.size]) + head + body)
    return out, raw


def encode_tile(values: Values, cpixels: npt.NDArray[np.uint8], pf: PixelFormat) -> bytes:
    """One ZRLE tile (before compression), in its shortest subencoding."""
    th, tw = values.shape
    (tile,), _ = encode_tiles(values.reshape(1, -1), cpixels.reshape(1, th * tw, -1), th, tw, pf)
    return tile


class ZRLEEncoder:
    """ZRLE with the connection's one persistent zlib stream."""

    code = 16

    def __init__(self) -> None:
        self._stream = DeflateStream()

    def encode(self, frame: Frame, pf: PixelFormat, options: EncodeOptions) -> list[EncodedRect]:
        """Encode ``frame`` (a BGRX rectangle) as one ZRLE rectangle."""
        h, w = frame.shape[:2]
        values = pf.values(frame)
        bpc = pf.pack_cpixels(values[:1, :1]).shape[-1]
        full = w // TILE * TILE
        parts: list[bytes] = []
        raw = 0
        for ty in range(0, h, TILE):
            v = values[ty : ty + TILE]
            th = v.shape[0]
            if full:
                k = full // TILE
                tv = v[:, :full].reshape(th, k, TILE).transpose(1, 0, 2).reshape(k, th * TILE)
                tiles, r = encode_tiles(tv, pf.pack_cpixels(tv), th, TILE, pf)
                parts += tiles
                raw += r * th * TILE * bpc
            if full < w:
                tw = w - full
                tv = v[:, full:].reshape(1, th * tw)
                tiles, r = encode_tiles(tv, pf.pack_cpixels(tv), th, tw, pf)
                parts += tiles
                raw += r * th * tw * bpc
        data = b"".join(parts)
        huffman = raw > HUFFMAN_ONLY_SHARE * len(data)
        strategy = zlib.Z_HUFFMAN_ONLY if huffman else zlib.Z_DEFAULT_STRATEGY
        packed = self._stream.compress(data, max(1, options.compress_level), strategy)
        return [EncodedRect(0, 0, w, h, self.code, struct.pack("!I", len(packed)) + packed)]
