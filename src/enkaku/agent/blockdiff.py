"""What changed in one damaged block of the screen: the damage step's first look at it.

The agent's damage step (``RFBService._grab_damage``) compares each block the X server
reported damaged with the kept frame: the rows that changed (``BlockDiff.span``), the
columns at a side that did not (``BlockDiff.columns``: a page's fixed sidebar), the
boxes of what changed (``changed_boxes``), and the kept frame brought up to date
(``BlockDiff.copy_in``). Most of a damaged block is often the same (Chromium reports the
box around everything it drew: a spinner and a progress bar 180 rows apart, a chart of
which a few lines moved), so this look is most of the step's work where no scroll or
move is found.

``BlockDiff`` answers from one pass over the block in the compiled core
(``enkaku.native``: each row's first and last changed word, the X bytes cleared on the
way), and with numpy where the core is not built or the block's memory does not suit it:
the same answers, the same kept frame (tests/agent/test_blockdiff.py compares them).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from enkaku import native
from enkaku.agent.motion import diff_box
from enkaku.protocol.rfb.encodings import Rect
from enkaku.protocol.rfb.pixelformat import Frame


def _words(block: Frame) -> npt.NDArray[np.uint32]:
    """A BGRX block as an (h, w) view of its 32-bit words (no copy: compares and hashes
    whole pixels, so the X bytes must have been cleared, see ``_clear_x``)."""
    return block.view("<u4")[..., 0]


def _clear_x(block: Frame) -> Frame:
    """``block`` with its X (padding) bytes zeroed, in place when it is writable (else a
    copy): the damage step keeps the previous frame and new pixels this way, so that it
    compares and hashes them as words without masking a copy of each block."""
    if not block.flags.writeable:
        block = block.copy()
    words = _words(block)
    np.bitwise_and(words, np.uint32(0xFFFFFF), out=words)
    return block


#: Changed pixels of one damaged block further apart than this (rows, then columns
#: within a band of rows) go out as separate rectangles: an application that reports the
#: bounding box of its drawing (Chromium does: a spinner in the header and a progress
#: bar lower down are one 1000×186 box) sends what changed, not the box. Closer ones
#: are one rectangle: each costs a header and an encoder call (some 50 µs), about as
#: much as a few thousand unchanged pixels of a flat area.
SPLIT_ROW_GAP = 16
SPLIT_COL_GAP = 64
#: At most this many rectangles from one block; beyond, the bands of rows whole.
SPLIT_MAX = 16


def changed_boxes(diff: npt.NDArray[np.bool_]) -> list[Rect]:
    """The True cells of a (h, w) change mask as rectangles, in the mask's coordinates:
    runs of changed rows less than ``SPLIT_ROW_GAP`` apart make a band; in each band,
    runs of changed columns less than ``SPLIT_COL_GAP`` apart make a box, trimmed to
    the rows where it changed. Every changed cell is in exactly one box; the boxes do
    not overlap. More than ``SPLIT_MAX`` boxes: the bands (each its changed columns'
    span), or one box (``diff_box``) if there are more bands than that."""
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return []
    bands = _runs(rows, SPLIT_ROW_GAP)
    if len(bands) > SPLIT_MAX:
        box = diff_box(diff)
        return [] if box is None else [box]
    boxes: list[Rect] = []
    whole: list[Rect] = []  # the bands, in case there are too many boxes
    for y0, y1 in bands:
        band = diff[y0:y1]
        cols = np.flatnonzero(band.any(axis=0))
        whole.append(Rect(int(cols[0]), y0, int(cols[-1]) + 1 - int(cols[0]), y1 - y0))
        spans = _runs(cols, SPLIT_COL_GAP)
        if len(spans) == 1:
            boxes.append(whole[-1])
            continue
        for x0, x1 in spans:
            used = np.flatnonzero(band[:, x0:x1].any(axis=1))
            boxes.append(Rect(x0, y0 + int(used[0]), x1 - x0, int(used[-1]) + 1 - int(used[0])))
    return whole if len(boxes) > SPLIT_MAX else boxes


def _runs(indices: npt.NDArray[np.intp], gap: int) -> list[tuple[int, int]]:
    """Sorted ``indices`` as (start, past-the-end) runs, those less than ``gap`` apart
    joined. (Without ``np.r_`` and ``np.diff``: their set-up cost 30 of the 40 µs a call
    took, and the damage step of a web dashboard makes four of them.)"""
    cut = np.flatnonzero(indices[1:] - indices[:-1] > gap)
    first, last = int(indices[0]), int(indices[-1]) + 1
    if not cut.size:
        return [(first, last)]
    starts = [first, *indices[cut + 1].tolist()]
    ends = [*(indices[cut] + 1).tolist(), last]
    return list(zip(starts, ends, strict=True))


def _changed_span(
    old: npt.NDArray[np.uint32], new: npt.NDArray[np.uint32]
) -> tuple[int, int] | None:
    """The first and past-the-last rows where ``new`` differs from ``old``, or None: found
    from each end in growing bands (16, 32, 64, ... rows), so a change that reaches
    both ends (a scroll) compares a few rows, not the block."""
    h = old.shape[0]
    top, step = 0, 16
    while top < h:
        band = (old[top : top + step] != new[top : top + step]).any(axis=1)
        if band.any():
            y0 = top + int(np.argmax(band))
            break
        top, step = top + step, step * 2
    else:
        return None
    bottom, step = h, 16
    while True:
        lo = max(y0, bottom - step)
        band = (old[lo:bottom] != new[lo:bottom]).any(axis=1)
        if band.any():
            return y0, lo + int(np.flatnonzero(band)[-1]) + 1
        bottom, step = lo, step * 2


#: Unchanged columns at a side of a damaged block that narrow it before the searches
#: for scrolls (``_changed_columns``): a page's fixed sidebar, a panel beside a list.
SIDE_MIN_COLS = 64
#: Every so many rows are compared first to find the changed columns.
SIDE_SAMPLE = 8


def _changed_columns(
    old: npt.NDArray[np.uint32], new: npt.NDArray[np.uint32]
) -> tuple[int, int] | None:
    """The first and past-the-last columns where ``new`` differs from ``old`` (rows
    of which the first changed: ``_changed_span``'s), when they leave at least
    ``SIDE_MIN_COLS`` unchanged columns at one side; else None. Every
    ``SIDE_SAMPLE``-th row gives the span, then the columns outside it are compared in
    every row (the span is exact: a change there widens it), so a sidebar costs a
    compare of itself and an eighth of the rest."""
    w = new.shape[1]
    cols = np.flatnonzero((old[::SIDE_SAMPLE] != new[::SIDE_SAMPLE]).any(axis=0))
    if cols.size == 0:
        return None
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    if x0 < SIDE_MIN_COLS and w - x1 < SIDE_MIN_COLS:
        return None
    if x0 > 0 and (left := (old[:, :x0] != new[:, :x0]).any(axis=0)).any():
        x0 = int(np.argmax(left))
    if x1 < w and (right := (old[:, x1:] != new[:, x1:]).any(axis=0)).any():
        x1 += int(np.flatnonzero(right)[-1]) + 1
    if x0 < SIDE_MIN_COLS and w - x1 < SIDE_MIN_COLS:
        return None
    return x0, x1


class BlockDiff:
    """One damaged block: ``old`` the kept frame's pixels there (an (h, w, 4) view, X
    bytes clear, written by ``copy_in``), ``new`` the grab's ((h, w, 4) BGRX; its X
    bytes are cleared here, in place where it is writable, else in a copy: use
    ``self.new`` after). ``cleared``: they are clear already."""

    def __init__(self, old: Frame, new: Frame, *, cleared: bool = False) -> None:
        self.old = old
        h, w = old.shape[:2]
        self.h, self.w = h, w
        lib = native.LIB
        self._first: npt.NDArray[np.int32] | None = None
        self._last: npt.NDArray[np.int32] | None = None
        if lib is not None and _native_ok(old) and _native_ok(new) and new.flags.writeable:
            first = np.empty(h, np.int32)
            last = np.empty(h, np.int32)
            lib.enkaku_diff_rows(
                old.ctypes.data, old.strides[0] // 4, new.ctypes.data, new.strides[0] // 4,
                h, w, 0 if cleared else 1, first.ctypes.data, last.ctypes.data,
            )  # fmt: skip
            self._first, self._last = first, last
            self.new = new
        else:
            self.new = new if cleared else _clear_x(new)
        self.old_v, self.new_v = _words(self.old), _words(self.new)

    @property
    def native(self) -> bool:
        """Whether the compiled core answers for this block."""
        return self._first is not None

    def span(self) -> tuple[int, int] | None:
        """The first and past-the-last changed rows, or None (``_changed_span``)."""
        if self._first is None:
            return _changed_span(self.old_v, self.new_v)
        rows = np.flatnonzero(self._first >= 0)
        if rows.size == 0:
            return None
        return int(rows[0]), int(rows[-1]) + 1

    def columns(self, y0: int, y1: int) -> tuple[int, int] | None:
        """``_changed_columns`` of rows y0 .. y1 - 1 (y0 a changed row)."""
        if self._first is None or self._last is None:
            return _changed_columns(self.old_v[y0:y1], self.new_v[y0:y1])
        first = self._first[y0:y1]
        x0 = int(first[first >= 0].min())
        x1 = int(self._last[y0:y1].max()) + 1
        if x0 < SIDE_MIN_COLS and self.w - x1 < SIDE_MIN_COLS:
            return None
        return x0, x1

    def edges_changed(self, y0: int, y1: int) -> bool:
        """Whether the first and the last column both changed in rows y0 .. y1 - 1."""
        if self._first is None or self._last is None:
            old, new = self.old_v[y0:y1], self.new_v[y0:y1]
            return bool((old[:, 0] != new[:, 0]).any()) and bool((old[:, -1] != new[:, -1]).any())
        return bool((self._first[y0:y1] == 0).any()) and bool(
            (self._last[y0:y1] == self.w - 1).any()
        )

    def boxes(self, y0: int, y1: int) -> list[Rect]:
        """``changed_boxes`` of rows y0 .. y1 - 1, in the block's columns and those rows'
        coordinates."""
        first, last = self._first, self._last
        if first is None or last is None:
            return changed_boxes(self.old_v[y0:y1] != self.new_v[y0:y1])
        lib = native.LIB
        assert lib is not None
        h = y1 - y0
        out = np.empty((2 * SPLIT_MAX, 4), np.int32)
        mask = np.empty(self.w, np.uint8)
        ostride, nstride = self.old.strides[0], self.new.strides[0]
        n = lib.enkaku_changed_boxes(
            self.old.ctypes.data + y0 * ostride, ostride // 4,
            self.new.ctypes.data + y0 * nstride, nstride // 4, h, self.w,
            first.ctypes.data + 4 * y0, last.ctypes.data + 4 * y0,
            SPLIT_ROW_GAP, SPLIT_COL_GAP, SPLIT_MAX, mask.ctypes.data, out.ctypes.data,
        )  # fmt: skip
        return [Rect(x, y, w, h) for x, y, w, h in out[:n].tolist()]

    def copy_in(self, y0: int, y1: int) -> None:
        """Rows y0 .. y1 - 1 of the kept frame made the new pixels' (the rest of the
        block is the same already)."""
        first, last = self._first, self._last
        if first is None or last is None:
            self.old[y0:y1] = self.new[y0:y1]
            return
        lib = native.LIB
        assert lib is not None
        ostride, nstride = self.old.strides[0], self.new.strides[0]
        lib.enkaku_copy_changed(
            self.old.ctypes.data + y0 * ostride, ostride // 4,
            self.new.ctypes.data + y0 * nstride, nstride // 4, y1 - y0,
            first.ctypes.data + 4 * y0, last.ctypes.data + 4 * y0,
        )  # fmt: skip


def _native_ok(block: Frame) -> bool:
    """Whether the compiled core can read ``block`` as rows of 32-bit words: pixels of 4
    bytes side by side, rows a whole number of words apart, aligned."""
    return (
        block.ndim == 3
        and block.shape[2] == 4
        and block.dtype == np.uint8
        and block.strides[1] == 4
        and block.strides[2] == 1
        and block.strides[0] % 4 == 0
        and block.ctypes.data % 4 == 0
    )
