"""What a rectangle holds, per 64×64 cell, in a handful of whole-array numpy passes.

For each cell of the grid (aligned to the rectangle's top left, like ZRLE's tiles): is it
one colour, how many distinct colours it has (a sort of every cell at once, no per-cell
np.unique), and how *smooth* it is (the share of pixels equal to their left or upper
neighbour). Text and UI have few colours or long flat stretches; photos and video have
hundreds of colours and almost no pixel equal to its neighbour. ``photo_like`` is the
decision Tight makes from that: JPEG only where both say "photo", so antialiased text
(up to a few hundred blended shades, but mostly flat background) stays lossless at any
JPEG quality.

Where the compiled core is built (``enkaku.native``), ``analyse`` runs there: one pass
over each cell (its colours in a small hash set, runs skipped), the same statistics and
palettes; past ``PHOTO_COLOURS`` colours it stops counting (257), where numpy counts on.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from enkaku import native
from enkaku.protocol.rfb.pixelformat import Values

CELL = 64
#: More colours than this in a cell: a photo unless most pixels repeat a neighbour.
PHOTO_COLOURS = 256
#: ... and it repeats fewer than this share of its pixels.
PHOTO_MAX_SMOOTH = 0.6
#: Between SOME_COLOURS and PHOTO_COLOURS colours, photo only when hardly anything repeats.
SOME_COLOURS = 64
GRAINY_MAX_SMOOTH = 0.2
#: From this many cells on, colours are counted on a sample first (see ``analyse``).
SAMPLE_MIN_CELLS = 16
#: Sample step in both directions: every 4th pixel of every 4th row, 256 per cell.
SAMPLE_STEP = 4
#: A cell whose sample holds more colours than this is taken as many-coloured (more than
#: PHOTO_COLOURS) without sorting it whole: half its sampled pixels are distinct colours.
#: A cell of at most 256 colours could in theory show that many (a 256-colour dither), so
#: such a cell is treated like a photo: JPEG if it is also grainy, lossless otherwise.
SAMPLE_MANY = 128
#: Smoothness is measured on every SMOOTH_STEP-th row (16 rows of a cell).
SMOOTH_STEP = 4


@dataclass(slots=True)
class Cells:
    """Per-cell statistics of a (h, w) array of pixel values, cells in row-major order."""

    ny: int
    nx: int
    #: (ny, nx): the cell is one colour (that of ``first``).
    solid: npt.NDArray[np.bool_]
    first: Values
    #: (ny, nx): distinct colours (1 for solid cells); past PHOTO_COLOURS a lower bound.
    colours: npt.NDArray[np.int64]
    #: (ny, nx): share of pixels equal to their left or upper neighbour (measured on every
    #: SMOOTH_STEP-th row); None if not asked.
    smooth: npt.NDArray[np.float64] | None
    _sorted: Values  # (non-solid cells, CELL*CELL) each cell's values sorted
    _new: npt.NDArray[np.bool_]  # where each sorted row changes value
    _row: npt.NDArray[np.intp]  # (ny*nx,) -> row in _sorted, -1 if solid or many colours
    _counts: npt.NDArray[np.integer]  # (rows of _sorted,) distinct colours of each
    # Made on the first ``palette`` call: every sorted row's distinct colours one after
    # another, and where each row's run of them ends; a palette is then a slice (``plan``
    # asks for each palette cell's about three times, a few numpy calls each before).
    _distinct: Values | None = None
    _ends: list[int] | None = None

    def palette(self, cy: int, cx: int) -> Values:
        """The cell's distinct colours, sorted (cells of at most PHOTO_COLOURS colours)."""
        row = int(self._row[cy * self.nx + cx])
        if row < 0:
            if not self.solid[cy, cx]:
                raise ValueError("too many colours for a palette")
            return self.first[cy, cx : cx + 1].copy()
        if self._distinct is None or self._ends is None:
            keep = np.empty(self._sorted.shape, dtype=bool)
            keep[:, 0] = True
            keep[:, 1:] = self._new
            self._distinct = self._sorted[keep]
            self._ends = np.cumsum(self._counts).tolist()
        end = self._ends[row]
        return self._distinct[end - int(self._counts[row]) : end]

    def photo_like(self) -> npt.NDArray[np.bool_]:
        """(ny, nx): cells that JPEG suits (needs ``smooth``)."""
        if self.smooth is None:
            raise ValueError("analysed without smoothness")
        many = (self.colours > PHOTO_COLOURS) & (self.smooth < PHOTO_MAX_SMOOTH)
        grainy = (self.colours > SOME_COLOURS) & (self.smooth < GRAINY_MAX_SMOOTH)
        result: npt.NDArray[np.bool_] = many | grainy
        return result


def row_counts(flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint16]:
    """The True flags of each row of a (n, < 65536) bool array: summed as bytes into
    16 bits, three times faster than ``flags.sum(axis=1)`` (15 against 47 µs for the
    24 sorted cells of a 480×170 dialog)."""
    counts: npt.NDArray[np.uint16] = flags.view(np.uint8).sum(axis=1, dtype=np.uint16)
    return counts


#: numpy 2's population count (None on numpy 1.26, which the project still allows).
_POPCOUNT = getattr(np, "bitwise_count", None)


def _cell_counts(same: npt.NDArray[np.bool_], ny: int, nx: int) -> npt.NDArray[np.int64]:
    """(ny, nx): the True flags in each cell's part of ``same`` (ny × CELL/SMOOTH_STEP
    rows, nx × CELL columns). With numpy 2, a cell's row of 64 flags is packed into one
    64-bit word and its bits counted: 58 against 244 µs for 1920×1080 (summing the
    flags as bytes across a strided axis)."""
    if _POPCOUNT is not None and CELL == 64:
        words = np.packbits(same, axis=-1).view(np.uint64)
        per_row = _POPCOUNT(words).reshape(ny, CELL // SMOOTH_STEP, nx)
        counts: npt.NDArray[np.int64] = per_row.sum(axis=1, dtype=np.int64)
        return counts
    grid = same.view(np.uint8).reshape(ny, CELL // SMOOTH_STEP, nx, CELL)
    return grid.sum(axis=3, dtype=np.int64).sum(axis=1)


def _edge_pad(values: Values, down: int, across: int) -> Values:
    """``values`` (h, w) with ``down`` more rows and ``across`` more columns repeating
    its last row and column: ``np.pad(values, ((0, down), (0, across)), "edge")``
    without np.pad's set-up (100 µs for a dialog's rectangle, more than the copy)."""
    if not down and not across:
        return values
    h, w = values.shape
    out = np.empty((h + down, w + across), dtype=values.dtype)
    out[:h, :w] = values
    out[h:, :w] = values[h - 1]
    out[:, w:] = out[:, w - 1 : w]
    return out


def _cell_blocks(values: Values, index: npt.NDArray[np.intp], nx: int) -> Values:
    """(index.size, CELL*CELL): the cells ``index`` (row-major in a grid ``nx`` wide) of
    ``values``, each row-major; cells past the bottom or right edge are edge-replicated,
    as ``np.pad(..., "edge")`` of the whole would give, without padding the whole."""
    h, w = values.shape
    fy, fx = h // CELL, w // CELL  # whole cells down and across
    if index.size == 0:
        return np.empty((0, CELL * CELL), dtype=values.dtype)
    cy, cx = index // nx, index % nx
    inside = (cy < fy) & (cx < fx)
    grid = values[: fy * CELL, : fx * CELL].reshape(fy, CELL, fx, CELL)
    if inside.all():  # one copy, no edge cell
        return grid[cy, :, cx].reshape(index.size, CELL * CELL)
    out = np.empty((index.size, CELL, CELL), dtype=values.dtype)
    if inside.any():
        out[inside] = grid[cy[inside], :, cx[inside]]
    bottom = cy == fy  # only when h is not a multiple of CELL
    if bottom.any():
        wp = -(-w // CELL) * CELL
        band = _edge_pad(values[fy * CELL :], CELL - (h - fy * CELL), wp - w)
        out[bottom] = band.reshape(CELL, -1, CELL)[:, cx[bottom]].transpose(1, 0, 2)
    right = (cy < fy) & (cx == fx)  # only when w is not a multiple of CELL
    if right.any():
        wide = CELL - (w - fx * CELL)
        band = _edge_pad(values[: fy * CELL, fx * CELL :], 0, wide)
        out[right] = band.reshape(fy, CELL, CELL)[cy[right]]
    return out.reshape(index.size, CELL * CELL)


def _sorted_cells(
    values: Values,
    index: npt.NDArray[np.intp],
    nx: int,
    gather: Callable[[npt.NDArray[np.intp]], Values],
) -> Values:
    """The cells ``index`` (ascending) of ``values``, each sorted: (index.size,
    CELL*CELL). ``gather`` gives whole (edge-padded) cells; cells of a last, partial
    band of rows at most half a cell high are sorted on their real rows only (a 30-row
    strip sorts 30 rows, not 64: 0.61 -> 0.44 ms for 1280x30 of text), then filled up
    with their largest value, which adds no colour."""
    h, w = values.shape
    fy = h // CELL
    rh = h - fy * CELL
    # Only worth its extra steps when the band is at most half a cell high.
    split = int(np.searchsorted(index, fy * nx)) if 0 < rh <= CELL // 2 else index.size
    if split == index.size:
        out = gather(index)
        out.sort(axis=1)
        return out
    band = values[fy * CELL :]
    if nx * CELL != w:
        band = _edge_pad(band, 0, nx * CELL - w)
    cx = index[split:] - fy * nx
    bottom = band.reshape(rh, nx, CELL)[:, cx].transpose(1, 0, 2).reshape(cx.size, rh * CELL)
    bottom.sort(axis=1)
    bottom = _edge_pad(bottom, 0, (CELL - rh) * CELL)
    if split == 0:
        return bottom
    top = gather(index[:split])
    top.sort(axis=1)
    return np.concatenate([top, bottom])


def analyse(values: Values, *, smoothness: bool) -> Cells:
    """Cell statistics of ``values`` (h, w); ``smoothness`` also measures ``smooth``.

    Colours are counted exactly up to PHOTO_COLOURS; past that, ``colours`` may be a
    lower bound. In a rectangle of SAMPLE_MIN_CELLS cells or more, every cell's sample
    (every SAMPLE_STEP-th pixel of every SAMPLE_STEP-th row) is sorted first; a cell
    whose sample has more than SAMPLE_MANY colours counts as PHOTO_COLOURS + 1 colours,
    and only the others are sorted whole (a photo then costs a sixteenth of the sorting).
    """
    if native.LIB is not None and values.size:
        return _analyse_native(native.LIB, values, smoothness)
    h, w = values.shape
    ny, nx = -(-h // CELL), -(-w // CELL)
    hp, wp = ny * CELL, nx * CELL
    first = values[::CELL, ::CELL]
    colours = np.ones(ny * nx, dtype=np.int64)
    if ny * nx < SAMPLE_MIN_CELLS:
        # Edge replication adds no colour and keeps one-colour cells one colour.
        padded = values
        if (hp, wp) != (h, w):
            padded = _edge_pad(values, hp - h, wp - w)
        grid = padded.reshape(ny, CELL, nx, CELL)
        cells = grid.transpose(0, 2, 1, 3).reshape(ny * nx, CELL * CELL)
        solid = (cells == cells[:, :1]).all(axis=1)
        exact = np.flatnonzero(~solid)
        srt = _sorted_cells(values, exact, nx, lambda index: cells[index])
    else:
        # The sample is padded (a sixteenth of the rectangle); whole cells are gathered
        # from the edge-padded rectangle when most of them are wanted (text, UI), else
        # from the rectangle and its padded edge bands, without padding the whole (a
        # photo, where few cells need more than their sample).
        padded_cells: Values | None = None

        def blocks(index: npt.NDArray[np.intp]) -> Values:
            nonlocal padded_cells
            if 2 * index.size <= ny * nx or (hp, wp) == (h, w):
                return _cell_blocks(values, index, nx)
            if padded_cells is None:
                padded = _edge_pad(values, hp - h, wp - w)
                padded_cells = padded.reshape(ny, CELL, nx, CELL).transpose(0, 2, 1, 3)
            return padded_cells[index // nx, index % nx].reshape(index.size, CELL * CELL)

        side = CELL // SAMPLE_STEP
        sample = values[::SAMPLE_STEP, ::SAMPLE_STEP]
        sh, sw = sample.shape
        down, across = ny * side - sh, nx * side - sw
        if down or across:
            sample = _edge_pad(sample, down, across)
        sample = sample.reshape(ny, side, nx, side).transpose(0, 2, 1, 3)
        sample = sample.reshape(ny * nx, side * side)
        sample.sort(axis=1)
        colours = 1 + row_counts(sample[:, 1:] != sample[:, :-1]).astype(np.int64)
        # Only a cell whose sample has one colour can be one colour.
        uniform = np.flatnonzero(colours == 1)
        flat_whole = blocks(uniform)
        solid = np.zeros(ny * nx, dtype=bool)
        solid[uniform] = (flat_whole == flat_whole[:, :1]).all(axis=1)
        many = colours > SAMPLE_MANY
        colours[many] = PHOTO_COLOURS + 1
        exact = np.flatnonzero(~solid & ~many)
        srt = _sorted_cells(values, exact, nx, blocks)
    new = srt[:, 1:] != srt[:, :-1]
    distinct = 1 + row_counts(new)
    colours[exact] = distinct
    row = np.full(ny * nx, -1, dtype=np.intp)
    row[exact] = np.arange(exact.size)
    smooth = None
    if smoothness:
        # On every SMOOTH_STEP-th row (0, 4, ...): equal to the left, equal to the row above.
        step = SMOOTH_STEP
        rows = values[::step]
        n_rows = rows.shape[0]
        same = np.zeros((hp // step, wp), dtype=bool)
        same[:n_rows, 1:w] = rows[:, 1:] == rows[:, :-1]
        same[1:n_rows, :w] |= rows[1:] == values[step - 1 :: step][: n_rows - 1]
        counts = _cell_counts(same, ny, nx)
        rh = (np.minimum(CELL, h - np.arange(ny) * CELL) + step - 1) // step
        cw = np.minimum(CELL, w - np.arange(nx) * CELL)
        smooth = counts / (rh[:, None] * cw[None, :])
    return Cells(
        ny, nx, solid.reshape(ny, nx), first, colours.reshape(ny, nx),
        smooth, srt, new, row, distinct,
    )  # fmt: skip


_EMPTY = np.empty((0, CELL * CELL), dtype=np.uint32)


def _analyse_native(lib: ctypes.CDLL, values: Values, smoothness: bool) -> Cells:
    """``analyse`` by the compiled core (``enkaku.native``): the same statistics and
    palettes, one pass over each cell instead of sorting it (tests/protocol/rfb/
    test_native.py compares the two)."""
    if values.dtype != np.uint32 or values.strides[1] != 4:
        values = np.ascontiguousarray(values, dtype=np.uint32)
    h, w = values.shape
    ny, nx = -(-h // CELL), -(-w // CELL)
    n = ny * nx
    solid = np.empty(n, dtype=np.uint8)
    colours = np.empty(n, dtype=np.int64)
    smooth = np.empty((ny, nx), dtype=np.float64) if smoothness else None
    palettes = np.empty(n * PHOTO_COLOURS, dtype=np.uint32)
    sizes = np.empty(n, dtype=np.int64)
    done = lib.enkaku_tight_cells(
        values.ctypes.data, values.strides[0] // 4, h, w, solid.ctypes.data,
        colours.ctypes.data, None if smooth is None else smooth.ctypes.data,
        palettes.ctypes.data, sizes.ctypes.data,
    )  # fmt: skip
    if done != 0:  # pragma: no cover - the arguments are checked above
        raise RuntimeError("the compiled cell analysis refused its arguments")
    has = np.flatnonzero(sizes)
    row = np.full(n, -1, dtype=np.intp)
    row[has] = np.arange(has.size)
    kept = sizes[has]
    ends = np.cumsum(kept)
    total = int(ends[-1]) if ends.size else 0
    return Cells(
        ny, nx, solid.view(bool).reshape(ny, nx), values[::CELL, ::CELL],
        colours.reshape(ny, nx), smooth, _EMPTY, _EMPTY.astype(bool), row, kept,
        palettes[:total], ends.tolist(),
    )  # fmt: skip
