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

import ctypes
import struct
import zlib

import numpy as np
import numpy.typing as npt
from PIL import Image

from enkaku import native
from enkaku.protocol.rfb.encodings.content import row_counts
from enkaku.protocol.rfb.encodings.deflate import DeflateStream
from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat, Values

TILE = 64
#: Share of a rectangle's tile bytes in raw tiles above which zlib codes Huffman only.
HUFFMAN_ONLY_SHARE = 0.5

SOLID, RAW, RLE, PALETTE_RLE, PACKED = range(5)
#: The most colours palette RLE can index (RFC 6143 §7.7.6: palette sizes 2-127).
PALETTE_RLE_MAX = 127
#: Tiles of many runs are first counted on every SAMPLE_STEP-th pixel (``encode_tiles``).
SAMPLE_STEP = 16


def run_length_bytes(length: int) -> bytes:
    """A run length as ZRLE writes it: 255s, then (length - 1) % 255."""
    return b"\xff" * ((length - 1) // 255) + bytes([(length - 1) % 255])


def pack_indices(indices: npt.NDArray[np.uint8], bits: int) -> bytes:
    """Pack palette indices ``bits`` wide, leftmost pixel in the high bits, rows padded."""
    h, w = indices.shape
    if bits == 1:
        return np.packbits(indices, axis=1).tobytes()
    # Each index as its low ``bits`` bits, most significant first, then a row's bits
    # packed (np.packbits pads each row to a whole byte).
    unpacked = np.unpackbits(indices[..., None], axis=-1)[..., 8 - bits :]
    return np.packbits(unpacked.reshape(h, w * bits), axis=1).tobytes()


def runs_bytes(
    heads: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64], every: bool
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Runs as ZRLE writes them: each run's head bytes, then its length bytes (for every
    run when ``every``, else only for runs longer than one pixel). Returns the bytes and
    where each run's end, so runs of several tiles are laid out in one go and cut."""
    head = heads.shape[1]
    if every:
        # Rows of head + 1 bytes (the last length byte), no scatter; a run longer than
        # 255 pixels (a UI's background) gets its 255s inserted before its last byte:
        # about 20 % faster than scattering every head into a 255-filled buffer.
        rows = np.empty((lengths.size, head + 1), dtype=np.uint8)
        rows[:, :head] = heads
        rows[:, head] = (lengths - 1) % 255
        long = np.flatnonzero(lengths > 255)
        if not long.size:
            return rows.reshape(-1), np.arange(1, lengths.size + 1) * (head + 1)
        extra = np.zeros(lengths.size, dtype=np.int64)  # the 255s before the last byte
        extra[long] = (lengths[long] - 1) // 255
        at = np.repeat(long * (head + 1) + head, extra[long])
        ends = np.arange(1, lengths.size + 1) * (head + 1) + np.cumsum(extra)
        return np.insert(rows.reshape(-1), at, np.uint8(255)), ends
    nlen = (lengths - 1) // 255 + 1
    if not every:
        nlen = np.where(lengths > 1, nlen, 0)
    ends = np.cumsum(nlen + head)
    starts = ends - (nlen + head)
    out = np.full(int(ends[-1]) if ends.size else 0, 255, dtype=np.uint8)
    out[starts[:, None] + np.arange(head)] = heads
    has = nlen > 0
    out[ends[has] - 1] = (lengths[has] - 1) % 255
    return out, ends


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


def _sorted_rows(values: Values) -> tuple[Values, npt.NDArray[np.bool_]]:
    """Each row of ``values`` sorted, and where each sorted row starts a new value (its
    first pixel included): the distinct colours of each tile and their count."""
    srt = np.sort(values, axis=1)
    new = np.empty(srt.shape, dtype=bool)
    new[:, 0] = True
    np.not_equal(srt[:, 1:], srt[:, :-1], out=new[:, 1:])
    return srt, new


def encode_tiles(
    values: Values,
    cpixels: npt.NDArray[np.uint8],
    th: int | npt.NDArray[np.int64],
    tw: int | npt.NDArray[np.int64],
    pf: PixelFormat,
) -> tuple[list[bytes], int]:
    """ZRLE tiles (before compression) of ``values`` (k, n): k tiles, each ``th`` × ``tw``
    pixels in row order (one size for all, or arrays: one per tile, the tile's pixels
    first in its row, then copies of its last pixel up to n), ``cpixels`` (k, n, bpc)
    their CPIXELs. Returns the tiles' bytes and how many of those bytes are raw pixels.

    The copies of a tile's last pixel add no colour and no run: its last run only
    looks longer, and is cut back. So a rectangle's tiles of every size (the edges')
    go through in one pass, which costs about the same for one tile as for twenty."""
    k, n = values.shape
    bpc = cpixels.shape[-1]
    size = th * tw
    pad = n - size  # 0 for tiles of one size
    starts = np.empty((k, n), dtype=bool)
    starts[:, 0] = True
    np.not_equal(values[:, 1:], values[:, :-1], out=starts[:, 1:])
    runs = row_counts(starts).astype(np.int64)
    # Colours: each tile's pixels sorted, but a tile of many runs (a photo's) is first
    # counted on every SAMPLE_STEP-th pixel. Over 127 colours there, it has over 127
    # and can be neither a palette nor palette RLE: it needs no sort (raw or plain RLE
    # is its runs' choice) and keeps the sample's count. The same choices as sorting
    # every tile, for a sixteenth of a photo's sorting (15 of a 1080p frame's 59 ms).
    colours = np.empty(k, dtype=np.int64)
    sorted_rows: npt.NDArray[np.intp] | None = None  # None: every tile
    busy = np.flatnonzero(2 * runs > n) if n // SAMPLE_STEP > PALETTE_RLE_MAX else None
    if busy is not None and busy.size:
        sample = np.sort(values[busy, ::SAMPLE_STEP], axis=1)
        counted = 1 + row_counts(sample[:, 1:] != sample[:, :-1]).astype(np.int64)
        many = counted > PALETTE_RLE_MAX
        if many.any():
            colours[busy[many]] = counted[many]
            sorted_rows = np.setdiff1d(np.arange(k), busy[many], assume_unique=True)
    if sorted_rows is None:
        srt, new = _sorted_rows(values)
        colours[:] = row_counts(new)
    else:  # rows of the tiles not sorted are never read
        srt = np.empty_like(values)
        new = np.empty((k, n), dtype=bool)
        if sorted_rows.size:
            part_srt, part_new = _sorted_rows(values[sorted_rows])
            srt[sorted_rows], new[sorted_rows] = part_srt, part_new
            colours[sorted_rows] = row_counts(part_new)

    choice = np.full(k, RAW)
    width = np.searchsorted([2, 4], colours)  # packed index bits: 1, 2 or 4
    if isinstance(size, int):
        best = np.full(k, size * bpc)
        packed_rows = np.array([(tw * _bits(c) + 7) // 8 * th for c in (2, 4, 16)])[width]
    else:
        best = size * bpc
        packed_rows = (tw * np.array([1, 2, 4])[width] + 7) // 8 * th
    packed = np.where(colours <= 16, colours * bpc + packed_rows, 1 << 40)
    better = packed < best
    choice[better], best[better] = PACKED, packed[better]
    # Run lengths matter only where RLE could beat the rest (runs cost at least bpc+1 / 1).
    maybe = np.flatnonzero(
        (runs * (bpc + 1) < best) | ((colours <= PALETTE_RLE_MAX) & (runs + colours * bpc < best))
    )
    run_at: dict[int, tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]] = {}
    if maybe.size:
        sub = starts[maybe]
        flat = np.flatnonzero(sub)
        lengths = np.diff(np.append(flat, sub.size))
        owner = flat // n
        bounds = np.searchsorted(owner, np.arange(maybe.size + 1))
        if isinstance(pad, np.ndarray):  # each tile's last run, without the copies
            lengths[bounds[1:] - 1] -= pad[maybe]
        lb = (lengths - 1) // 255 + 1
        sum_lb = np.bincount(owner, weights=lb, minlength=maybe.size)
        sum_lb_long = np.bincount(owner, weights=lb * (lengths > 1), minlength=maybe.size)
        for j, i in enumerate(maybe.tolist()):
            rle = int(runs[i]) * bpc + int(sum_lb[j])
            c = int(colours[i])
            prle = c * bpc + int(runs[i]) + int(sum_lb_long[j]) if c <= PALETTE_RLE_MAX else 1 << 40
            if min(rle, prle) < best[i]:
                choice[i], best[i] = (RLE, rle) if rle <= prle else (PALETTE_RLE, prle)
                a, b = bounds[j], bounds[j + 1]
                run_at[i] = (flat[a:b] - j * n, lengths[a:b])
    choice[runs == 1] = SOLID

    # Run-length tiles, all at once: the runs of every RLE tile in one array and of
    # every palette RLE tile in another, each cut at its tiles' ends (a Python call per
    # tile cost 40 % of a dialog's encoding).
    bodies: dict[int, bytes] = {}
    if run_at:
        tiles = np.fromiter(run_at, dtype=np.intp, count=len(run_at))
        pos = np.concatenate([run_at[i][0] for i in tiles.tolist()])
        lengths = np.concatenate([run_at[i][1] for i in tiles.tolist()])
        counts = np.fromiter((run_at[i][1].size for i in tiles.tolist()), np.intp, tiles.size)
        owner_tile = np.repeat(tiles, counts)
        for kind in (RLE, PALETTE_RLE):
            mine = choice[tiles] == kind
            if not mine.any():
                continue
            runs_mine = mine[np.repeat(np.arange(tiles.size), counts)]
            t, p, ln = owner_tile[runs_mine], pos[runs_mine], lengths[runs_mine]
            if kind == RLE:
                # Each run's pixel value gathered, then its CPIXEL bytes viewed: a
                # third of the time of gathering the (k, n, bpc) CPIXEL view itself.
                data, ends = runs_bytes(pf.pack_cpixels(values[t, p]), ln, True)
                heads = [b"\x80"] * int(mine.sum())
            else:
                # Each run's index in its tile's palette: the tiles' palettes (sorted
                # colours) one after another, searched with the tile in the high bits.
                ptiles = tiles[mine]
                keep = new[ptiles]
                sizes = row_counts(keep)
                colours_all = srt[ptiles][keep]
                first = np.cumsum(sizes) - sizes
                which = np.searchsorted(ptiles, t)
                keys = (np.repeat(np.arange(ptiles.size, dtype=np.uint64), sizes) << 32) | (
                    colours_all.astype(np.uint64)
                )
                wanted = (which.astype(np.uint64) << 32) | values[t, p].astype(np.uint64)
                index = (np.searchsorted(keys, wanted) - first[which]).astype(np.uint8)
                index |= np.where(ln > 1, 128, 0).astype(np.uint8)
                data, ends = runs_bytes(index[:, None], ln, False)
                packed_palettes = pf.pack_cpixels(colours_all).tobytes()
                heads = [
                    bytes([128 + int(c)]) + packed_palettes[int(f) * bpc : int(f + c) * bpc]
                    for f, c in zip(first, sizes, strict=True)
                ]
            stop = ends[np.cumsum(counts[mine]) - 1]
            start = np.concatenate([[0], stop[:-1]])
            blob = data.tobytes()
            for i, head, a, b in zip(
                tiles[mine].tolist(), heads, start.tolist(), stop.tolist(), strict=True
            ):
                bodies[i] = head + blob[a:b]

    out: list[bytes] = []
    raw = 0
    blob_raw = cpixel_blob(values, pf) if bool((choice == RAW).any()) else None
    sizes = np.broadcast_to(size, (k,)).tolist()
    for i, kind in enumerate(choice.tolist()):
        if kind == RAW:
            m = sizes[i]
            if blob_raw is None:
                out.append(b"\x00" + cpixels[i, :m].tobytes())
            else:
                out.append(b"\x00" + blob_raw[i * n * bpc : (i * n + m) * bpc])
            raw += m * bpc
        elif kind == SOLID:
            out.append(b"\x01" + cpixels[i, 0].tobytes())
        elif kind == PACKED:
            palette = srt[i, new[i]]
            head = pf.pack_cpixels(palette).tobytes()
            index = np.searchsorted(palette, values[i, : sizes[i]]).astype(np.uint8)
            shape = (th, tw) if isinstance(th, int) else (int(th[i]), int(tw[i]))  # type: ignore[index]
            body = pack_indices(index.reshape(shape), _bits(palette.size))
            out.append(bytes([palette.size]) + head + body)
        else:
            out.append(bodies[i])
    return out, raw


def encode_tile(values: Values, cpixels: npt.NDArray[np.uint8], pf: PixelFormat) -> bytes:
    """One ZRLE tile (before compression), in its shortest subencoding."""
    th, tw = values.shape
    (tile,), _ = encode_tiles(values.reshape(1, -1), cpixels.reshape(1, th * tw, -1), th, tw, pf)
    return tile


def _tiles(values: Values) -> tuple[Values, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The 64×64 tiles of ``values`` (h, w) in row order as rows of one array, for
    ``encode_tiles``: each tile's pixels row by row, the edge tiles' (narrower, shorter)
    followed by copies of their last pixel; with each tile's height and width."""
    h, w = values.shape
    fh, fw = h // TILE, w // TILE  # whole tiles down and across
    eh, ew = h - fh * TILE, w - fw * TILE  # the edge tiles' height and width (0: none)
    ny, nx = fh + (eh > 0), fw + (ew > 0)
    rows = np.array([TILE] * fh + [eh] * (eh > 0), dtype=np.int64)
    cols = np.array([TILE] * fw + [ew] * (ew > 0), dtype=np.int64)
    if not eh and not ew:
        tiles = values.reshape(fh, TILE, fw, TILE).transpose(0, 2, 1, 3)
        return tiles.reshape(ny * nx, TILE * TILE), np.repeat(rows, nx), np.tile(cols, ny)
    n = int(rows[0] * cols[0])  # the first tile is the largest
    grid = np.empty((ny, nx, n), dtype=values.dtype)

    def put(where: tuple[slice | int, slice | int], pixels: Values, m: int) -> None:
        grid[where][..., :m] = pixels
        grid[where][..., m:] = grid[where][..., m - 1 : m]

    if fh and fw:
        whole = values[: fh * TILE, : fw * TILE].reshape(fh, TILE, fw, TILE)
        grid[:fh, :fw] = whole.transpose(0, 2, 1, 3).reshape(fh, fw, TILE * TILE)
    if fh and ew:
        put((slice(0, fh), fw), values[: fh * TILE, fw * TILE :].reshape(fh, TILE * ew), TILE * ew)
    if eh and fw:
        bottom = values[fh * TILE :, : fw * TILE].reshape(eh, fw, TILE).transpose(1, 0, 2)
        put((fh, slice(0, fw)), bottom.reshape(fw, eh * TILE), eh * TILE)
    if eh and ew:
        put((fh, fw), values[fh * TILE :, fw * TILE :].reshape(eh * ew), eh * ew)
    return grid.reshape(ny * nx, n), np.repeat(rows, nx), np.tile(cols, ny)


#: What a pass of ``encode_tiles`` costs beyond its pixels, in pixels (measured here: about
#: 80 µs a pass and 6 ns a pixel): ``_encode_rect`` pads edge tiles into the pass of the
#: others when that costs fewer pixels than a pass of their own.
PASS_PIXELS = 12_000


#: Up to this many pixels a rectangle is one tile sized up by ``small_tile``: a dozen
#: numpy calls on its own pixels, where ``encode_tiles`` makes sixty for any number of
#: tiles (a key's glyph, 14×14: 41 against 130 µs warm, and a key's echo meets the
#: interpreter cold, after the compositor and the application drew).
SMALL_TILE = 1024


def small_tile(values: Values, pf: PixelFormat) -> tuple[bytes, int]:
    """One small tile (``values`` (h, w), at most SMALL_TILE pixels) in its shortest
    subencoding, byte for byte what ``encode_tiles`` writes; and its raw bytes."""
    h, w = values.shape
    flat = values.reshape(-1)
    n = flat.size
    cpix = pf.pack_cpixels(flat)
    bpc = cpix.shape[-1]
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # where each run after the first begins
    if not starts.size:
        return b"\x01" + cpix[0].tobytes(), 0
    srt = np.sort(flat)
    palette = srt[np.concatenate(([True], srt[1:] != srt[:-1]))]
    c = int(palette.size)
    kind, best = RAW, n * bpc
    if c <= 16:
        packed = c * bpc + (w * _bits(c) + 7) // 8 * h
        if packed < best:
            kind, best = PACKED, packed
    bounds = np.empty(starts.size + 2, dtype=np.int64)
    bounds[0], bounds[1:-1], bounds[-1] = 0, starts, n
    lengths = np.diff(bounds)
    runs = lengths.size
    lb = (lengths - 1) // 255 + 1
    rle = runs * bpc + int(lb.sum())
    prle = c * bpc + runs + int(lb[lengths > 1].sum()) if c <= PALETTE_RLE_MAX else 1 << 40
    if min(rle, prle) < best:
        kind = RLE if rle <= prle else PALETTE_RLE
    if kind == RAW:
        return b"\x00" + cpix.tobytes(), n * bpc
    if kind == PACKED:
        head = pf.pack_cpixels(palette).tobytes()
        index = np.searchsorted(palette, flat).astype(np.uint8)
        return bytes([c]) + head + pack_indices(index.reshape(h, w), _bits(c)), 0
    first = bounds[:-1]
    if kind == RLE:
        data, _ = runs_bytes(cpix[first], lengths, True)
        return b"\x80" + data.tobytes(), 0
    heads = np.searchsorted(palette, flat[first]).astype(np.uint8)
    heads |= np.where(lengths > 1, 128, 0).astype(np.uint8)
    data, _ = runs_bytes(heads[:, None], lengths, False)
    return bytes([128 + c]) + pf.pack_cpixels(palette).tobytes() + data.tobytes(), 0


def _encode_rect(values: Values, pf: PixelFormat) -> tuple[list[bytes], int]:
    """The tiles of a rectangle in row order, and their raw bytes: in one pass of
    ``encode_tiles`` (edge tiles padded), two (the whole bands, then the last, shorter
    one) or one per size of tile (whole, right edge, bottom edge, corner), whichever
    costs least by ``PASS_PIXELS``: a dialog's 480×170 goes in one pass (1.37 against
    1.18 ms), a strip a few rows high below whole bands in two."""
    h, w = values.shape
    if h * w <= SMALL_TILE and h <= TILE and w <= TILE:
        tile, raw = small_tile(values, pf)
        return [tile], raw
    if h <= TILE and w <= TILE:  # one tile (a caret, a glyph): no set-up
        return encode_tiles(values.reshape(1, -1), pf.pack_cpixels(values.reshape(1, -1)), h, w, pf)
    fh, fw = h // TILE, w // TILE
    eh, ew = h - fh * TILE, w - fw * TILE
    nx, ny = fw + (ew > 0), fh + (eh > 0)
    first_w = TILE if fw else ew
    sizes = [fh * fw > 0, fh > 0 and ew > 0, eh > 0 and fw > 0, eh > 0 and ew > 0]
    costs = {
        "one": PASS_PIXELS + ny * nx * (TILE if fh else eh) * first_w,
        "each": PASS_PIXELS * sum(sizes) + h * w,
    }
    if fh and eh:
        costs["bands"] = 2 * PASS_PIXELS + (fh * TILE + eh) * nx * first_w

    def run(part: Values) -> tuple[list[bytes], int]:
        tiles, rows, cols = _tiles(part)
        return encode_tiles(tiles, pf.pack_cpixels(tiles), rows, cols, pf)

    how = min(costs, key=costs.__getitem__)
    if how == "one":
        return run(values)
    if how == "bands":
        top, r1 = run(values[: fh * TILE])
        bottom, r2 = run(values[fh * TILE :])
        return top + bottom, r1 + r2
    y, x = fh * TILE, fw * TILE
    whole, r1 = run(values[:y, :x]) if fh and fw else ([], 0)
    right, r2 = run(values[:y, x:]) if fh and ew else ([], 0)
    bottom, r3 = run(values[y:]) if eh else ([], 0)  # its corner tile last
    parts: list[bytes] = []
    for band in range(fh):
        parts += whole[band * fw : (band + 1) * fw] + right[band : band + 1]
    return parts + bottom, r1 + r2 + r3


def native_tiles(values: Values, pf: PixelFormat) -> tuple[bytes, int] | None:
    """``_encode_rect``'s tiles joined, and their raw bytes, from the compiled core
    (``enkaku.native``): the same bytes; None where it is not built."""
    lib = native.LIB
    if lib is None:
        return None
    if values.dtype != np.uint32 or values.strides[1] != 4:
        values = np.ascontiguousarray(values, dtype=np.uint32)
    h, w = values.shape
    cbytes = pf.cpixel_bytes
    bpc = cbytes.stop - cbytes.start
    out = np.empty(h * w * bpc + (-(-h // TILE)) * (-(-w // TILE)), dtype=np.uint8)
    raw = ctypes.c_int64()
    n = lib.enkaku_zrle_tiles(
        values.ctypes.data, values.strides[0] // 4 if h else 0, h, w,
        pf.bits_per_pixel // 8, int(pf.big_endian), cbytes.start, bpc,
        out.ctypes.data, out.size, ctypes.byref(raw),
    )  # fmt: skip
    if n < 0:  # pragma: no cover - the buffer is sized for the worst case
        raise RuntimeError("the compiled ZRLE core was given too small a buffer")
    return out[:n].tobytes(), raw.value


class ZRLEEncoder:
    """ZRLE with the connection's one persistent zlib stream."""

    code = 16
    #: One wire rectangle per ``encode()`` call: updates may be streamed in bands
    #: (server.py, ``PendingUpdate.stream``).
    one_rect = True

    def __init__(self) -> None:
        self._stream = DeflateStream()

    def encode(self, frame: Frame, pf: PixelFormat, options: EncodeOptions) -> list[EncodedRect]:
        """Encode ``frame`` (a BGRX rectangle) as one ZRLE rectangle."""
        h, w = frame.shape[:2]
        values = pf.values(frame, x_clear=options.x_clear)
        tiles = native_tiles(values, pf) if h and w else (b"", 0)
        if tiles is None:
            parts, raw = _encode_rect(values, pf)
            data = b"".join(parts)
        else:
            data, raw = tiles
        huffman = raw > HUFFMAN_ONLY_SHARE * len(data)
        strategy = zlib.Z_HUFFMAN_ONLY if huffman else zlib.Z_DEFAULT_STRATEGY
        packed = self._stream.compress(data, max(1, options.compress_level), strategy)
        return [EncodedRect(0, 0, w, h, self.code, struct.pack("!I", len(packed)) + packed)]
