"""Tight encoding (rfbproto "Tight Encoding"), the TightVNC/TigerVNC/noVNC dialect.

The rectangle is looked at in 64×64 cells (``content.analyse``: one sort of every cell
at once gives each cell's colour count, one comparison pass its smoothness), each cell
gets a kind, and neighbouring cells of the same kind are sent as one Tight rectangle:

- **fill**: one colour; runs of the same colour merge across and down;
- **JPEG**: photo-like cells (hundreds of colours, few pixels equal to a neighbour), only
  when the client sent a JPEG quality level and the pixel format has 16 or 32 bits per
  pixel; runs merge across and down into rectangles of at most ``JPEG_MAX_PIXELS``,
  encoded by libjpeg-turbo (simplejpeg) straight from the BGRX pixels, one after another;
  only an update of more than ``PARALLEL_MIN_PIXELS`` of JPEG (a 4K screen) goes to a
  thread pool (libjpeg-turbo runs without the GIL, so the pieces may use a second core).
  The pool costs CPU: on a 1920×1080 slideshow, 20.0 ms of agent CPU per update with it
  against 17.4 ms without (``benchmarks/screen.py``, same run), so a full HD screen stays
  on one thread;
- **palette**: up to 256 colours over the run (1-bit indices on zlib stream 1 for two
  colours, 8-bit on stream 2); runs merge across while the union of their palettes has
  at most 256 colours, and down over the same cells across while it also keeps the
  indices' width (two colours stay two). Text and UI, antialiased CJK text included,
  land here or in fill whatever the JPEG quality: it stays lossless;
- **copy filter** (TPIXELs on zlib stream 0) or **gradient filter** (below) for lossless
  cells with more colours.

Every rectangle is at most 2048 pixels wide (Tight's limit). Basic data shorter than 12
bytes goes uncompressed. The four zlib streams persist across rectangles and are never
reset; a change of compression level continues the stream (``deflate.DeflateStream``).
Lossless cells of more than 256 colours with few pixels equal to a neighbour (photos when
JPEG is off or in the lossless refresh, smooth gradients) take the **gradient filter**
(zlib stream 3) when TPIXELs are 3 bytes; measured on a 1920×1080 photo-like frame of
``benchmarks/screen.py`` at zlib level 2 it gives 3.7 MB instead of 5.9 MB with the copy
filter in less CPU (27 ms of filter, then zlib runs faster on the small residuals: 138 ms
against 168 ms), and on a smooth two-way UI gradient 86 KB instead of 1069 KB. Many-colour
cells that repeat their neighbours (UI, icons) keep the copy filter, where LZ77 finds the
repeats.

Where the compiled core is built (``enkaku.native``), the whole plan runs there in one
call (``plan_native``): the cells' statistics, their kinds, the merges across and down,
and each palette rectangle's indices packed as sent; Python then only frames and
compresses each rectangle. The numpy ``plan`` is the reference and the fallback: the same
rectangles and bytes.
"""

from __future__ import annotations

import ctypes
import io
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

try:  # libjpeg-turbo straight from BGRX (no Pillow image, no channel swap); see jpeg_bytes
    import simplejpeg
except ImportError:  # pragma: no cover - a platform without its wheel: Pillow does it
    simplejpeg = None

from enkaku import native
from enkaku.protocol.rfb.encodings.content import CELL, PHOTO_COLOURS, SOME_COLOURS, analyse
from enkaku.protocol.rfb.encodings.deflate import DeflateStream
from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat, Values

MAX_WIDTH = 2048
#: The largest JPEG rectangle: bounded so that several can be encoded at once and a
#: quality-100 JPEG stays far below Tight's 4 MiB compact length.
JPEG_MAX_PIXELS = 1 << 18
#: JPEG work (pixels in one update) above which the rectangles go to the thread pool:
#: more than 2560×1600, where one thread's JPEG time starts to cap the frame rate.
PARALLEL_MIN_PIXELS = 1 << 22
MIN_TO_COMPRESS = 12
#: Kept for callers that tile by hand: the largest rectangle ``encode_tile`` is given.
TILE = 128

FILL = 0x80
FILL_BYTE = bytes([FILL])
JPEG = 0x90
READ_FILTER = 0x40
FILTER_PALETTE = 1
FILTER_GRADIENT = 2

STREAM_COPY = 0
STREAM_MONO = 1
STREAM_INDEXED = 2
STREAM_GRADIENT = 3

# Cell kinds.
K_FILL, K_PALETTE, K_FULL, K_PHOTO, K_GRADIENT = range(5)
#: Lossless cells of many colours repeating fewer neighbours than this: gradient filter.
GRADIENT_MAX_SMOOTH = 0.5

_POOL: ThreadPoolExecutor | None = None
#: Colour -> palette index for 24-bit pixel values (16 MiB, made on first use): one gather
#: instead of a binary search per pixel. Entries of other palettes are left behind; they
#: are never read, since a block holds only its own palette's colours.
_LUT: np.ndarray | None = None
_LUT_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), "tight-jpeg")
    return _POOL


def compact_length(n: int) -> bytes:
    """Tight's 1-3 byte length: 7 bits, 7 bits, 8 bits, least significant first."""
    if n < 0 or n >= 1 << 22:
        raise ValueError(f"Tight data length {n} out of range")
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([n & 0x7F | 0x80, n >> 7])
    return bytes([n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14])


@dataclass(slots=True)
class _Region:
    """One planned Tight rectangle, in cell units."""

    kind: int
    cy: int
    cx: int
    ch: int
    cw: int
    colour: int = 0  # fill
    palette: Values | None = None  # palette
    #: A palette region's pixels as indices, packed as sent (from the compiled plan).
    indices: npt.NDArray[np.uint8] | None = None
    #: Where its colours start in the compiled plan's colour list (-1: numpy's plan).
    at: int = -1


def palette_indices(block: Values, palette: Values) -> npt.NDArray[np.uint8]:
    """Each pixel's index in ``palette`` (sorted, at most 256 colours, holds them all)."""
    global _LUT
    if int(palette[-1]) < 1 << 24 and block.size >= 1024 and _LUT_LOCK.acquire(blocking=False):
        try:
            if _LUT is None:
                _LUT = np.zeros(1 << 24, dtype=np.uint8)
            _LUT[palette] = np.arange(palette.size, dtype=np.uint8)
            # take, not _LUT[block]: the same gather without fancy indexing's set-up and
            # index conversion (27 against 66 µs for 64×480 pixels).
            return _LUT.take(block)
        finally:
            _LUT_LOCK.release()
    return np.searchsorted(palette, block).astype(np.uint8)


def gradient_residuals(block: Values, pf: PixelFormat) -> bytes:
    """Tight's gradient filter over 3-byte TPIXELs: per component, the value minus
    clamp(left + up - up-left, 0, 255) modulo 256, neighbours outside the rectangle 0."""
    rgb = pf.pack_tpixels(block).astype(np.int16)
    h, w = block.shape
    padded = np.zeros((h + 1, w + 1, 3), dtype=np.int16)
    padded[1:, 1:] = rgb
    predicted = padded[1:, :-1] + padded[:-1, 1:] - padded[:-1, :-1]
    np.clip(predicted, 0, 255, out=predicted)
    rgb -= predicted
    return rgb.astype(np.uint8).tobytes()


#: Pillow's subsampling number (EncodeOptions.jpeg_subsampling) as simplejpeg names it.
_SUBSAMPLING = {0: "444", 1: "422", 2: "420"}


def jpeg_bytes(frame: Frame, options: EncodeOptions) -> bytes:
    """A JPEG of a BGRX frame at the client's quality.

    simplejpeg hands the BGRX rows (strided views too) to libjpeg-turbo, which converts
    them itself: against Pillow (a BGRX to RGB copy into an image first, then its
    encoder's set-up) that is 5.5 against 7.1 ms for a 1920x1080 photo at quality 80,
    4:2:0, with the same bytes and PSNR. Pillow remains the fallback where simplejpeg
    has no wheel.
    """
    assert options.jpeg_quality is not None
    if simplejpeg is not None:
        rows = frame if frame.strides[1:] == (4, 1) else np.ascontiguousarray(frame)
        sub = "Gray" if options.jpeg_grayscale else _SUBSAMPLING[options.jpeg_subsampling]
        data: bytes = simplejpeg.encode_jpeg(
            rows, quality=options.jpeg_quality, colorspace="BGRX", colorsubsampling=sub,
            fastdct=False,
        )  # fmt: skip
        return data
    h, w = frame.shape[:2]
    image = Image.frombuffer("RGB", (w, h), np.ascontiguousarray(frame), "raw", "BGRX", 0, 1)
    buf = io.BytesIO()
    if options.jpeg_grayscale:
        image.convert("L").save(buf, "JPEG", quality=options.jpeg_quality)
    else:
        image.save(buf, "JPEG", quality=options.jpeg_quality, subsampling=options.jpeg_subsampling)
    return buf.getvalue()


def _jpeg_payload(frame: Frame, options: EncodeOptions) -> bytes:
    data = jpeg_bytes(frame, options)
    return bytes([JPEG]) + compact_length(len(data)) + data


def _union(a: Values, b: Values) -> Values:
    """The sorted distinct values of two sorted palettes (``np.union1d`` without its
    layers of checks: about a third of its time on palettes of a few hundred colours,
    and plan merges a row's cells one by one)."""
    merged = np.concatenate((a, b))
    merged.sort(kind="stable")  # two sorted runs: merged, not sorted again
    keep = np.empty(merged.size, dtype=bool)
    keep[0] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def plan(values: Values, jpeg: bool, gradient: bool = True) -> list[_Region]:
    """Cut a rectangle of pixel values into Tight rectangles by content (cell units)."""
    cells = analyse(values, smoothness=True)
    assert cells.smooth is not None
    full = np.where(gradient & (cells.smooth < GRADIENT_MAX_SMOOTH), K_GRADIENT, K_FULL)
    kinds = np.where(cells.colours <= 256, K_PALETTE, full)
    if jpeg:
        kinds = np.where(cells.photo_like(), K_PHOTO, kinds)
    kinds = np.where(cells.solid, K_FILL, kinds)
    max_cells = MAX_WIDTH // CELL
    out: list[_Region] = []
    open_: dict[tuple[int, int, int, int], _Region] = {}  # fill/photo runs that may grow down
    # Palette runs that may grow down: over the same cells across, while the palettes'
    # union keeps to 256 colours and to the indices' width (two colours stay two: a
    # monochrome run is packed a bit a pixel). A dialog is then a few rectangles, not
    # one per row of cells: each costs a palette, a header and an encoder call.
    open_palettes: dict[tuple[int, int], _Region] = {}
    kind_rows = kinds.tolist()
    first_rows = cells.first.tolist()
    for cy in range(cells.ny):
        row = kind_rows[cy]
        firsts = first_rows[cy]
        still_open: dict[tuple[int, int, int, int], _Region] = {}
        palettes_open: dict[tuple[int, int], _Region] = {}
        cx = 0
        while cx < cells.nx:
            kind = row[cx]
            end = cx + 1
            palette = None
            if kind == K_PALETTE:
                palette = cells.palette(cy, cx)
                while end < cells.nx and end - cx < max_cells and row[end] == K_PALETTE:
                    union = _union(palette, cells.palette(cy, end))
                    if union.size > 256:
                        break
                    palette = union
                    end += 1
            else:
                while (
                    end < cells.nx
                    and end - cx < max_cells
                    and row[end] == kind
                    and (kind != K_FILL or firsts[end] == firsts[cx])
                ):
                    end += 1
            if kind in (K_FILL, K_PHOTO):
                key = (kind, cx, end, firsts[cx] if kind == K_FILL else 0)
                region = open_.get(key)
                limit = JPEG_MAX_PIXELS // (CELL * CELL * (end - cx))
                if region is not None and (kind == K_FILL or region.ch < limit):
                    region.ch += 1
                    still_open[key] = region
                    cx = end
                    continue
                region = _Region(kind, cy, cx, 1, end - cx, colour=firsts[cx])
                still_open[key] = region
            else:
                above = open_palettes.get((cx, end))
                if above is not None and palette is not None and above.palette is not None:
                    union = _union(above.palette, palette)
                    if union.size <= 2 or (
                        union.size <= 256 and above.palette.size > 2 and palette.size > 2
                    ):
                        above.palette = union
                        above.ch += 1
                        palettes_open[(cx, end)] = above
                        cx = end
                        continue
                region = _Region(kind, cy, cx, 1, end - cx, palette=palette)
                if palette is not None:
                    palettes_open[(cx, end)] = region
            out.append(region)
            cx = end
        open_ = still_open
        open_palettes = palettes_open
    return out


class PlanSpace:
    """``plan_native``'s work space, kept by an encoder from one rectangle to the next
    and grown when a larger one comes: three buffers and their addresses, not three
    allocations and four address look-ups (each a few µs of numpy) for every rectangle,
    most of which are a glyph or a spinner. It keeps the size of the largest rectangle
    planned (a whole 1920x1080 screen: about 2.6 MB). What a plan returns points into
    it, so it is valid until the next plan."""

    __slots__ = ("addresses", "cells", "colours", "data", "fields", "pixels", "used")

    def __init__(self) -> None:
        self.cells = self.pixels = -1
        self.fields = np.empty((0, 6), dtype=np.int32)
        self.colours = np.empty(0, dtype=np.uint32)
        self.data = np.empty(0, dtype=np.uint8)
        self.addresses = (0, 0, 0)
        self.used = 0  # colours the last plan wrote into ``colours``

    def fit(self, cells: int, pixels: int) -> None:
        """Make room for a rectangle of ``cells`` cells and ``pixels`` pixels (+ rows)."""
        if cells <= self.cells and pixels <= self.pixels:
            return
        self.cells, self.pixels = max(cells, self.cells), max(pixels, self.pixels)
        self.fields = np.empty((self.cells, 6), dtype=np.int32)
        self.colours = np.empty(self.cells * PHOTO_COLOURS, dtype=np.uint32)
        self.data = np.empty(self.pixels, dtype=np.uint8)
        self.addresses = (self.fields.ctypes.data, self.colours.ctypes.data, self.data.ctypes.data)


def plan_native(
    lib: ctypes.CDLL, values: Values, jpeg: bool, gradient: bool, space: PlanSpace | None = None
) -> list[_Region]:
    """``plan`` by the compiled core (``enkaku.native``): the same regions and palettes,
    and each palette region's indices as sent, in one call (tests/protocol/rfb/
    test_native.py compares the two). Each region's ``at`` is where its colours start in
    ``space.colours``. ``space``: a work space to reuse (the regions then point into it);
    None: a fresh one."""
    if values.dtype != np.uint32 or values.strides[1] != 4:
        values = np.ascontiguousarray(values, dtype=np.uint32)
    h, w = values.shape
    if space is None:
        space = PlanSpace()
    space.fit(-(-h // CELL) * -(-w // CELL), h * w + h)
    fields, colours, data = space.addresses
    count = lib.enkaku_tight_plan(
        values.ctypes.data, values.strides[0] // 4, h, w, int(jpeg), int(gradient),
        fields, colours, data,
    )  # fmt: skip
    if count < 0:
        raise MemoryError("the compiled Tight plan could not allocate its work space")
    out = []
    c = o = 0
    for kind, cy, cx, ch, cw, k in space.fields[:count].tolist():
        if kind == K_PALETTE:
            rh, rw = min(ch * CELL, h - cy * CELL), min(cw * CELL, w - cx * CELL)
            size = rh * ((rw + 7) // 8 if k == 2 else rw)
            indices = space.data[o : o + size]
            palette = space.colours[c : c + k]
            out.append(_Region(kind, cy, cx, ch, cw, palette=palette, indices=indices, at=c))
            o += size
        else:
            out.append(_Region(kind, cy, cx, ch, cw, colour=int(space.colours[c]), at=c))
        c += k
    space.used = c
    return out


class TightEncoder:
    """Tight with fill, palette, copy and JPEG chosen per region; holds the zlib streams."""

    code = 7

    def __init__(self) -> None:
        self._streams = [DeflateStream(small=0) for _ in range(4)]  # see deflate.SMALL
        self._space = PlanSpace()

    def encode(self, frame: Frame, pf: PixelFormat, options: EncodeOptions) -> list[EncodedRect]:
        """Encode ``frame`` (a BGRX rectangle) as Tight rectangles chosen by content."""
        h, w = frame.shape[:2]
        if h == 0 or w == 0:
            return []
        values = pf.values(frame, x_clear=options.x_clear)
        jpeg = options.jpeg_quality is not None and pf.bits_per_pixel in (16, 32)
        lib = native.LIB
        if lib is None and h <= CELL and w <= CELL:
            # One cell (a scroll bar's thumb, a caret, a glyph): what ``plan`` chooses
            # for a cell that is one colour or a palette JPEG could not take (at most
            # SOME_COLOURS colours, or 256 without JPEG), without its set-up: 0.82
            # against 1.29 ms of encoding per update of a page scrolled in Chromium.
            # Any other cell goes through ``plan``. (numpy only: the compiled plan has
            # no such set-up.)
            flat = values.ravel()
            if bool((flat == flat[0]).all()):
                payload = FILL_BYTE + pf.pack_tpixels(flat[:1]).tobytes()
                return [EncodedRect(0, 0, w, h, self.code, payload, False)]
            palette = np.unique(flat)
            if palette.size <= (SOME_COLOURS if jpeg else 256):
                payload = self._palette(values, palette, pf, options)
                return [EncodedRect(0, 0, w, h, self.code, payload, False)]
        # The compiled plan's colours as TPIXELs, all at once (``size`` bytes each), not
        # a conversion for each of a chart's dozens of rectangles.
        tpixels, size = b"", 0
        if lib is not None:
            regions = plan_native(lib, values, jpeg, pf.tpixel_is_rgb, self._space)
            if self._space.used:
                tpixels = pf.pack_tpixels(self._space.colours[: self._space.used]).tobytes()
                size = len(tpixels) // self._space.used
        else:
            regions = plan(values, jpeg, pf.tpixel_is_rgb)
        photos = [r for r in regions if r.kind == K_PHOTO]
        work = sum(r.ch * r.cw for r in photos) * CELL * CELL
        futures: dict[int, Future[bytes]] = {}
        if len(photos) > 1 and work >= PARALLEL_MIN_PIXELS:
            pool = _pool()
            for r in photos:
                y, x = r.cy * CELL, r.cx * CELL
                piece = frame[y : y + r.ch * CELL, x : x + r.cw * CELL]
                futures[id(r)] = pool.submit(_jpeg_payload, piece, options)
        out = []
        for r in regions:
            y, x = r.cy * CELL, r.cx * CELL
            rh, rw = min(r.ch * CELL, h - y), min(r.cw * CELL, w - x)
            if r.kind == K_FILL:
                if r.at >= 0:
                    payload = FILL_BYTE + tpixels[r.at * size : (r.at + 1) * size]
                else:
                    colour = np.array([r.colour], np.uint32)
                    payload = FILL_BYTE + pf.pack_tpixels(colour).tobytes()
            elif r.kind == K_PHOTO:
                future = futures.get(id(r))
                if future is not None:
                    payload = future.result()
                else:
                    payload = _jpeg_payload(frame[y : y + rh, x : x + rw], options)
            elif r.kind == K_PALETTE:
                assert r.palette is not None
                if r.indices is not None:
                    k = len(r.palette)
                    head = tpixels[r.at * size : (r.at + k) * size]
                    payload = self._palette_payload(k, head, r.indices.tobytes(), options)
                else:
                    block = values[y : y + rh, x : x + rw]
                    payload = self._palette(block, r.palette, pf, options)
            elif r.kind == K_GRADIENT:
                payload = self._gradient(values[y : y + rh, x : x + rw], pf, options)
            else:
                payload = self._copy(values[y : y + rh, x : x + rw], pf, options)
            out.append(EncodedRect(x, y, rw, rh, self.code, payload, r.kind == K_PHOTO))
        return out

    def encode_tile(self, tile: Frame, pf: PixelFormat, options: EncodeOptions) -> bytes:
        """One Tight rectangle's payload for the whole of ``tile`` (at most 2048 wide)."""
        if tile.shape[1] > MAX_WIDTH:
            raise ValueError("Tight rectangles are at most 2048 pixels wide")
        values = pf.values(tile, x_clear=options.x_clear)
        flat = values.ravel()
        if bool((flat == flat[0]).all()):
            return FILL_BYTE + pf.pack_tpixels(flat[:1]).tobytes()
        jpeg = options.jpeg_quality is not None and pf.bits_per_pixel in (16, 32)
        if jpeg and bool(analyse(values, smoothness=True).photo_like().mean() >= 0.5):
            return _jpeg_payload(tile, options)
        palette = np.unique(flat)
        if palette.size <= 256:
            return self._palette(values, palette, pf, options)
        return self._copy(values, pf, options)

    def _palette(
        self, block: Values, palette: Values, pf: PixelFormat, options: EncodeOptions
    ) -> bytes:
        indices = palette_indices(block, palette)
        packed = np.packbits(indices, axis=1) if palette.size == 2 else indices
        colours = pf.pack_tpixels(palette).tobytes()
        return self._palette_payload(palette.size, colours, packed.tobytes(), options)

    def _palette_payload(
        self, count: int, colours: bytes, data: bytes, options: EncodeOptions
    ) -> bytes:
        """A palette rectangle from its ``count`` colours (as TPIXELs) and its indices
        (packed as sent)."""
        stream = STREAM_MONO if count == 2 else STREAM_INDEXED
        head = bytes([FILTER_PALETTE, count - 1]) + colours
        return self._basic(stream, READ_FILTER, head, data, options)

    def _gradient(self, block: Values, pf: PixelFormat, options: EncodeOptions) -> bytes:
        """Gradient filter (888 TPIXELs only): each component minus its prediction."""
        head = bytes([FILTER_GRADIENT])
        return self._basic(
            STREAM_GRADIENT, READ_FILTER, head, gradient_residuals(block, pf), options, photo=True
        )

    def _copy(self, block: Values, pf: PixelFormat, options: EncodeOptions) -> bytes:
        data = pf.pack_tpixels(block).tobytes()
        return self._basic(STREAM_COPY, 0, b"", data, options, photo=True)

    def _basic(
        self,
        stream: int,
        filter_bit: int,
        head: bytes,
        data: bytes,
        options: EncodeOptions,
        *,
        photo: bool = False,
    ) -> bytes:
        ctl = stream << 4 | filter_bit
        if len(data) < MIN_TO_COMPRESS:
            return bytes([ctl]) + head + data
        level = max(1, options.compress_level)
        packed = self._streams[stream].compress(data, level, photo=photo)
        return bytes([ctl]) + head + compact_length(len(packed)) + packed
