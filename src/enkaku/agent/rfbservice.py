"""Serve one RFB connection from a ScreenCapture and an InputInjector (the IO adapter).

The protocol lives in ``enkaku.protocol.rfb.RFBServer``; this module moves bytes, runs
capture, damage detection and encoding on worker threads (never on the event loop),
and hands input to the injector when the customer allows control.

Two tasks per connection (three with a clipboard), all owned by ``run()``:

- the **reader** feeds ``read()`` into the server, answers with ``write()`` and injects
  input events in order;
- the **updater** waits until the client wants an update and the screen changed, and
  sends the changed rectangles (the whole requested area for non-incremental requests),
  at most ``max_fps`` updates a second. Writes are awaited, so a slow peer slows capture
  down instead of filling memory. Areas sent as JPEG are sent again losslessly once
  they have stayed unchanged for ``LOSSLESS_REFRESH_DELAY`` (TigerVNC does the same), so
  the viewer's picture ends up exact; noVNC always asks for JPEG. With PyAV installed
  and a viewer that lists H.264 (encoding 50), a screen playing video goes out as one
  H.264 picture per update instead (``encodings/h264.py``, docs/h264.md).

With a capture that reports damage as events (``X11Capture``: ``fileno()``,
``events_queued()``, ``grab_rects()``), the updater is **event-driven**: it sleeps until
the X server reports damage (nothing is read or compared while the screen is still),
captures only the damaged rectangles into its own copy of the screen, trims each to the
pixels that really changed, finds vertical scrolls in them (row hashes against the
previous pixels: a CopyRect plus the newly exposed strip instead of the whole area), else
sideways scrolls (column hashes over a few sampled rows: a CopyRect plus the uncovered
columns, when that leaves fewer pixels to send), and windows the capture saw move
(``take_moves()``: one CopyRect when the pixels match) or, on captures that name no
moves (Wayland), a block moved any way, found in the pixels (``enkaku.agent.motion``),
and sends the update as soon as
one is allowed: at once for the first change after input from the viewer or after a
quiet spell, else one frame interval after the previous update (damage meanwhile is
coalesced into that one update). Other captures are polled
``max_fps`` times a second and compared tile by tile.

Monitors (docs/performance.md, "Monitors"): with a capture that lists them
(``monitors()``, ``monitors_changed()``: X11 RandR), the ExtendedDesktopSize screen list
holds one screen per monitor, numbered from 1 left to right, and follows changes. The
viewer may show just one: ``monitor=N`` when the stream opens (``enkaku connect
--monitor N``), or at any time a SetDesktopSize whose layout is that one screen alone
(its id, at 0, 0, with its size; noVNC's ``RFB.messages.setDesktopSize`` sends exactly
that); a SetDesktopSize of the whole desktop's size goes back to all of it, anything else
is refused ("prohibited": the customer's screen is never resized). With one monitor
shown, the framebuffer is that monitor's rectangle (``MonitorView``) and pointer
coordinates are moved by its offset.

With a ``Clipboard``, a third task, the **clipboard** watcher, reads the customer's
clipboard when another program copies and offers the text to the viewer
(ExtendedClipboard notify, the text when asked; plain ServerCutText otherwise), and the
reader puts text from the viewer on the customer's clipboard. Both only while
``clipboard_allowed()``: otherwise the clipboard is neither read nor written, nothing is
requested from the viewer, and text that arrives anyway is dropped and counted
(``clipboard_dropped``). ``on_clipboard(direction, n_chars)`` hears of every text that
crossed, for the audit trail; clipboard text itself is never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import math
import os
import select
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from enkaku.agent.capture.base import CursorImage, ScreenCapture
from enkaku.agent.capture.monitors import Monitor, MonitorView
from enkaku.agent.clipboard.base import Clipboard, ClipboardError
from enkaku.agent.input.base import InputInjector
from enkaku.agent.motion import diff_box, find_moved_block
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.rfb import RFBServer, State, UpdateRequest
from enkaku.protocol.rfb import messages as m
from enkaku.protocol.rfb.encodings import Rect, RectLike, h264
from enkaku.protocol.rfb.encodings.copyrect import Copy
from enkaku.protocol.rfb.encodings.deflate import ISAL
from enkaku.protocol.rfb.pixelformat import Frame
from enkaku.protocol.rfb.server import (
    ClipboardAnnounced,
    ClipboardDropped,
    ClipboardRequested,
    DesktopSizeReason,
    DesktopSizeStatus,
    PendingUpdate,
)

logger = logging.getLogger(__name__)

#: Row hashes for scroll detection: ISA-L's CRC-32 (SIMD) when installed, else zlib's.
_crc32: Callable[..., int] = ISAL.crc32 if ISAL is not None else zlib.crc32

TILE = 64
#: Beyond this many damaged rectangles, one capture of their bounding box is cheaper than
#: a round trip to the X server per rectangle.
MAX_GRAB_RECTS = 32
#: The first screen change within this many seconds of input from the viewer goes out
#: at once, without waiting for the frame interval (key-to-screen latency).
INPUT_FAST_PATH = 0.25
#: Scroll detection: the smallest damaged area (rows, columns) worth hashing, and the
#: fewest rows a copy must cover to be sent as one.
SCROLL_MIN_ROWS = 24
SCROLL_MIN_COLS = 64
COPY_MIN_ROWS = 8
#: Sideways scrolls: the fewest columns a copy must cover, and the sampled rows whose
#: columns are hashed: ``_H_SETS`` sets of ``_H_ROWS`` rows spread over the middle
#: three quarters of the changed rows (a horizontal scroll bar or a status line at the
#: edge is left out), interleaved and tried one after another, so that a row that did
#: not move (a cursor line) spoils one set only. The search gives up after
#: ``_H_GIVE_UP`` sets in a row found no shift: a new picture (a slideshow, a video, a
#: dialog over text) then costs two sets, not four.
COPY_MIN_COLS = 16
_H_SETS = 4
_H_GIVE_UP = 2
_H_ROWS = 16
#: Every so many changed columns vote for the shift (the vote's look-ups are its cost).
_H_VOTERS = COPY_MIN_COLS // (COPY_MIN_ROWS // 2)
#: Odd 64-bit multipliers for the column hashes of a set (a weighted sum, mod 2**64).
_H_WEIGHTS = (
    np.random.default_rng(0x5C0).integers(0, 2**63, _H_ROWS, dtype=np.uint64) * np.uint64(2)
    + np.uint64(1)
)[:, None]
#: Before a copy search, a quick look whether anything can have moved: ``_PROBES`` short
#: runs of ``_PROBE_LEN`` words of the new block (rows for vertical moves, columns for
#: sideways ones) are looked for in the old block where a move would have taken them
#: from. A new picture (a dialog opening or closing, a slide, video) then costs a few
#: thousand comparisons instead of the searches' hashing: a dialog's damage step took
#: 0.5-0.7 ms instead of 0.9-1.2 (median of 79 recorded steps, replayed). A block that
#: moved in the previous step is searched without a look (a scroll goes on).
_PROBES = 16
_PROBE_LEN = 16
#: Diagonal moves (``enkaku.agent.motion``): a window dragged on Wayland (nothing says
#: where it went), a map, a page or a picture panned both ways inside a window (X11 names
#: moved windows, ``take_moves``, but not what moves inside them). Searched in a damaged
#: area of at least ``MOTION_MIN_AREA`` pixels (smaller changes are cheap to send) and at
#: most ``MOTION_MAX_AREA`` (its old pixels are put together for the search from the rows
#: the damage step overwrote) where no other copy was found, when the pixels left to send are at
#: least ``MOTION_MIN_AREA``. A new picture there costs about 0.5-1 ms more (1 ms at
#: 1080p, the copy aside included), so after ``MOTION_MISSES`` searches in a row that found
#: nothing (a slideshow, a video, new pages) the search rests for a number of polls that
#: doubles with each further miss, up to ``MOTION_REST_MAX`` (about a second at 30 fps).
MOTION_MIN_AREA = 128 * 128
MOTION_MAX_AREA = 1920 * 1200
MOTION_MISSES = 3
MOTION_REST_MAX = 32
#: A move found that copies fewer pixels than this is sent, but counts as a miss for the
#: rest above: on a terminal whose rows reorder (a process monitor), the search found a
#: row or two that changed places at nearly every refresh, 6 ms a search for 8-23 K
#: pixels (about 0.2 ms of encoding), and so never rested. A dragged window or a panned
#: picture copies far more.
MOTION_WORTH = 32 * 1024
#: ``on_clipboard`` directions (also the audit event names the session reports).
TO_CUSTOMER = "clipboard_to_customer"
FROM_CUSTOMER = "clipboard_from_customer"
#: Seconds without screen changes after which areas sent as JPEG are resent losslessly.
LOSSLESS_REFRESH_DELAY = 0.5
#: Seconds a change on a quiet screen is left to settle before it is captured (not after
#: the viewer's input): toolkits paint a new window in steps (Tk: the window, then its
#: widgets), and each step would otherwise go out as an update of its own. Measured on
#: the dialogs workload on an idle machine: 0.6-3.9 ms between steps; a loaded one
#: stretches them: at 4 ms, 4-12 % more updates than dialogs opened and closed (load 7);
#: at 8 ms, 0-1 %.
DAMAGE_SETTLE = 0.008
#: A key's update (the first poll after input from the viewer) is captured, compared and
#: encoded on the event loop when its damage is at most this many pixels: each hop to a
#: worker thread and back costs 0.1-0.2 ms on the key-to-screen path (Wayland, sway).
INLINE_MAX_AREA = 64 * 64


def changed_tiles(old: Frame, new: Frame, tile: int = TILE) -> list[Rect]:
    """Rectangles (merged tile runs) where ``new`` differs from ``old``; X bytes ignored."""
    h, w = new.shape[:2]
    diff = (old[..., :3] != new[..., :3]).any(axis=2)
    rows = np.logical_or.reduceat(diff, np.arange(0, h, tile), axis=0)
    tiles = np.logical_or.reduceat(rows, np.arange(0, w, tile), axis=1)
    rects: list[Rect] = []
    open_runs: dict[tuple[int, int], Rect] = {}  # (x, w) of a run -> rect growing down
    for ty in range(tiles.shape[0]):
        runs: dict[tuple[int, int], Rect] = {}
        row = tiles[ty]
        tx = 0
        while tx < row.size:
            if not row[tx]:
                tx += 1
                continue
            start = tx
            while tx < row.size and row[tx]:
                tx += 1
            x0, x1 = start * tile, min(tx * tile, w)
            y0, y1 = ty * tile, min((ty + 1) * tile, h)
            above = open_runs.pop((x0, x1 - x0), None)
            if above is not None and above.y + above.h == y0:
                runs[(x0, x1 - x0)] = Rect(x0, above.y, x1 - x0, y1 - above.y)
            else:
                if above is not None:
                    rects.append(above)
                runs[(x0, x1 - x0)] = Rect(x0, y0, x1 - x0, y1 - y0)
        rects.extend(open_runs.values())
        open_runs = runs
    rects.extend(open_runs.values())
    return rects


def fit(frame: Frame, width: int, height: int) -> Frame:
    """``frame`` cropped or padded (black) to width×height."""
    out = np.zeros((height, width, 4), dtype=np.uint8)
    h, w = min(height, frame.shape[0]), min(width, frame.shape[1])
    out[:h, :w] = frame[:h, :w]
    return out


@dataclass(slots=True)
class _Poll:
    frame: Frame | None = None
    resized: tuple[int, int] | None = None
    cursor: CursorImage | None = None
    #: More damage was reported while this poll ran: poll again.
    more: bool = False
    copies: list[Copy] = field(default_factory=list)
    #: Copy destinations whose source the viewer has only as JPEG: lossy too.
    lossy_copies: list[Rect] = field(default_factory=list)
    #: The capture reported a change of monitors or resolution: lay out again first.
    monitors_changed: bool = False


@dataclass(slots=True)
class _Step:
    """What one poll led to (``RFBService._step``, on a worker thread)."""

    poll: _Poll
    started: float  # when the poll began (loop time: the frame interval runs from it)
    #: The update begun for it (``end_framebuffer_update`` is the loop's), or None.
    pending: PendingUpdate | None = None
    encoded: bool = False  # ``pending`` is encoded already
    #: Nothing to send: the changes are outside the request, or there were none.
    idle: bool = False
    lossless: bool = False
    video: bool = False
    copies: list[Copy] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)


def _values(block: Frame) -> npt.NDArray[np.uint32]:
    """A BGRX block as 0x00RRGGBB words (a new contiguous array; the X bytes dropped)."""
    return block.view("<u4")[..., 0] & np.uint32(0xFFFFFF)


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


def _xywh(r: RectLike) -> tuple[int, int, int, int]:
    return r.x, r.y, r.w, r.h


def _within(block: npt.NDArray[Any], at: Rect, area: Rect) -> npt.NDArray[Any]:
    """The part of ``block`` (the pixels of ``at``) that shows ``area`` (inside ``at``)."""
    x, y = area.x - at.x, area.y - at.y
    return block[y : y + area.h, x : x + area.w]


def _covers(rects: list[Rect], area: Rect) -> bool:
    """Whether ``rects`` together cover ``area``."""
    rest = [area]
    for r in rects:
        rest = [piece for a in rest for piece in a.subtract(r)]
        if not rest:
            return True
    return False


#: Damage in a few blocks that are each too low or narrow to search for scrolls, or
#: small (``SMALL_DAMAGE_BLOCK``, ``SMALL_DAMAGE_LOOK``) with changes no scroll
#: explains, and that changed fewer pixels than a diagonal search needs, takes
#: ``_small_damage``'s short path: a key's echo (on sway the damage is the text row, the
#: change one glyph), a caret, a clock, a web page's spinner and progress bar (Chromium
#: reports the box around both). A 14×14 glyph cost 150 µs warm through the general
#: path, most of it its bookkeeping, and a key's echo meets the interpreter cold; a
#: dashboard's spinner and bar in a 459×186 box cost about 1 ms of scroll searches that
#: could find nothing.
SMALL_DAMAGE_AREA = MOTION_MIN_AREA
#: The short path takes at most this many blocks (a key's echo is one or two).
SMALL_DAMAGE_BLOCKS = 4
#: Blocks up to this many pixels may take the short path even where a scroll could be
#: searched, when their changed rows are scattered (``_small_damage``).
SMALL_DAMAGE_BLOCK = 128 * 1024
#: Blocks up to this many pixels may too, after a look at every ``SMALL_DAMAGE_SAMPLE``-th
#: row found their changed rows scattered there (``_sample_scattered``): a page's spinner
#: and its progress bar once the bar is long (Chromium's box around both grows with it,
#: 1214×186 on the benchmark's dashboard: 0.43× the damage step's time of the general
#: path's searches in a replay). A block whose sampled rows changed densely (a dialog
#: drawn, a list scrolled) goes to the general path for a quarter of a compare. Larger
#: blocks (a terminal, a page) go there unexamined, which compares a scroll's rows
#: once, not twice.
SMALL_DAMAGE_LOOK = 256 * 1024
SMALL_DAMAGE_SAMPLE = 4


def _short_path_may_fit(rects: list[Rect]) -> bool:
    """Whether ``_small_damage`` may take ``rects``: a few blocks apart from each
    other, each unsearchable or at most ``SMALL_DAMAGE_LOOK`` pixels."""
    return _few_apart(rects) and all(
        not _searchable(r) or r.w * r.h <= SMALL_DAMAGE_LOOK for r in rects
    )


def _sample_scattered(old: npt.NDArray[np.uint32], new: npt.NDArray[np.uint32]) -> bool:
    """``_scattered`` as every ``SMALL_DAMAGE_SAMPLE``-th row of a block tells it: True
    when those rows changed nowhere, over fewer than ``SCROLL_MIN_ROWS`` rows, or, with
    the changed ones less than ``SPLIT_ROW_GAP`` apart joined as ``changed_boxes`` joins
    them (a text's blank rows between its lines), in at most half of those between the
    first and the last that changed."""
    step = SMALL_DAMAGE_SAMPLE
    rows = np.flatnonzero((old[::step] != new[::step]).any(axis=1))
    if rows.size == 0:
        return True
    span = int(rows[-1]) - int(rows[0]) + 1
    if (span - 1) * step < SCROLL_MIN_ROWS:
        return True
    changed = sum(b - a for a, b in _runs(rows, SPLIT_ROW_GAP // step))
    return 2 * changed <= span


def _searchable(r: Rect) -> bool:
    """Whether a block is high and wide enough to be searched for a scroll."""
    return r.h >= SCROLL_MIN_ROWS and r.w >= SCROLL_MIN_COLS


def _few_apart(rects: list[Rect]) -> bool:
    """Whether ``rects`` are a few blocks apart from each other (the general path
    compares each against the frame the blocks before it updated)."""
    if len(rects) > SMALL_DAMAGE_BLOCKS:
        return False
    return not any(a.intersect(b) for i, a in enumerate(rects) for b in rects[i + 1 :])


def _scattered(boxes: list[Rect]) -> bool:
    """Whether the changed boxes of one block (``changed_boxes``) leave no room for a
    scroll: their rows span fewer than ``SCROLL_MIN_ROWS``, or at most half of the rows
    between the first and the last changed one changed (a scroll changes nearly every
    row it moves: a text's lines, the few blank rows between them do not change)."""
    y0, y1 = min(b.y for b in boxes), max(b.y + b.h for b in boxes)
    if y1 - y0 < SCROLL_MIN_ROWS:
        return True
    changed, end = 0, y0
    for b in sorted(boxes, key=lambda b: b.y):
        top = max(b.y, end)
        if b.y + b.h > top:
            changed += b.y + b.h - top
            end = b.y + b.h
    return 2 * changed <= y1 - y0


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


def changed_boxes(diff: npt.NDArray[np.bool_], x: int = 0, y: int = 0) -> list[Rect]:
    """The True cells of a (h, w) change mask as rectangles, in the mask's coordinates
    moved by ``x``, ``y`` (where the mask's first cell lies):
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
        return [] if box is None else [Rect(x + box.x, y + box.y, box.w, box.h)]
    boxes: list[Rect] = []
    whole: list[Rect] = []  # the bands, in case there are too many boxes
    for y0, y1 in bands:
        band = diff[y0:y1]
        cols = np.flatnonzero(band.any(axis=0))
        whole.append(Rect(x + int(cols[0]), y + y0, int(cols[-1]) + 1 - int(cols[0]), y1 - y0))
        spans = _runs(cols, SPLIT_COL_GAP)
        if len(spans) == 1:
            boxes.append(whole[-1])
            continue
        for x0, x1 in spans:
            used = np.flatnonzero(band[:, x0:x1].any(axis=1))
            top, h = y + y0 + int(used[0]), int(used[-1]) + 1 - int(used[0])
            boxes.append(Rect(x + x0, top, x1 - x0, h))
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


def _row_hashes(values: npt.NDArray[np.uint32]) -> list[int]:
    """One hash per row of words: its CRC-32 (ISA-L's when installed: SIMD, about 1 ms
    for a 1920×1080 screen; zlib's otherwise). Rows are hashed where they lie, without
    a copy. Collisions are possible, so matches are checked pixel by pixel after."""
    if values.strides[1] != values.itemsize:
        values = np.ascontiguousarray(values)
    crc = _crc32
    return [crc(row) for row in values]


_Probes = tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.uint32]]


def _probes(old: npt.NDArray[np.uint32], new: npt.NDArray[np.uint32]) -> _Probes | None:
    """Runs of ``new`` to look for in ``old`` before a copy search (a changed block's
    words): in ``_PROBES`` rows spread over the block, the ``_PROBE_LEN`` words from a
    changed one where the row changes colour (a run of one colour, a background, is
    found anywhere). Returns their rows, first columns and words, or None when no
    row has such a run (nothing to tell: search)."""
    h, w = new.shape
    n = min(_PROBE_LEN, w)
    k = min(_PROBES, h)
    at = np.arange(k) * (h - 1) // max(k - 1, 1)
    rows = new[at]
    edges = (rows[:, :-1] != old[at, :-1]) & (rows[:, 1:] != rows[:, :-1])
    useful = edges.any(axis=1)
    if not useful.any():
        return None
    at, rows, edges = at[useful], rows[useful], edges[useful]
    # The first such place from the middle on, else the last before it: a sideways move
    # leaves new columns at one end, which the old row does not have.
    mid = (w - 1) // 2
    right = edges[:, mid:]
    last = w - 2 - edges[:, ::-1].argmax(axis=1)
    start = np.where(right.any(axis=1), mid + right.argmax(axis=1), last)
    start = np.minimum(start, w - n)
    probes = np.take_along_axis(rows, start[:, None] + np.arange(n), axis=1)
    return at, start, probes


def _agreed(shifts: npt.NDArray[np.intp], probes: int, size: int) -> bool:
    """Whether found probes agree on a move (``shifts``: one per probe found somewhere,
    each less than ``size`` either way): a third of them, and at least two, on the same
    shift (one run alone, a thick stroke of a glyph or a rule across a table, often
    repeats elsewhere)."""
    if shifts.size == 0:
        return False
    agree = int(np.bincount(shifts + size).max())
    return agree >= min(probes, max(2, -(-probes // 3)))


def _may_scroll(old: npt.NDArray[np.uint32], found: _Probes | None) -> bool:
    """Whether a vertical move is possible in a changed block (its old words and the
    probes of its new ones, ``_probes``): whether the probes are in other rows of
    ``old`` at the same columns."""
    if found is None:
        return True
    at, start, probes = found
    across = start[:, None] + np.arange(probes.shape[1])
    # Rows whose first two words there match (a change of colour), then two more, then
    # the whole run.
    row, probe = np.nonzero(
        (old[:, across[:, 0]] == probes[:, 0]) & (old[:, across[:, 1]] == probes[:, 1])
    )
    keep = row != at[probe]  # its own row: no move
    for j in (probes.shape[1] // 2, -1):
        keep &= old[row, across[probe, j]] == probes[probe, j]
    row, probe = row[keep], probe[keep]
    same = (old[row[:, None], across[probe]] == probes[probe]).all(axis=1)
    return _agreed((row - at[probe])[same], at.size, old.shape[0])


def _may_slide(old: npt.NDArray[np.uint32], found: _Probes | None) -> bool:
    """Whether a sideways move is possible in a changed block (its old words and the
    probes of its new ones, ``_probes``): whether the probes are elsewhere in their own
    rows of ``old``."""
    if found is None:
        return True
    at, start, probes = found
    n = probes.shape[1]
    rows = old[at]
    w = rows.shape[1]
    first = (rows[:, : w - n + 1] == probes[:, :1]) & (rows[:, 1 : w - n + 2] == probes[:, 1:2])
    probe, col = np.nonzero(first)
    keep = col != start[probe]  # where it is: no move
    for j in (n // 2, n - 1):
        keep &= rows[probe, col + j] == probes[probe, j]
    probe, col = probe[keep], col[keep]
    same = (rows[probe[:, None], col[:, None] + np.arange(n)] == probes[probe]).all(axis=1)
    return _agreed((col - start[probe])[same], at.size, w)


def find_vertical_copy(old: Frame, new: Frame) -> tuple[int, int, int] | None:
    """A vertical move inside a block: (first row, end row, dy) such that ``new`` rows
    first..end-1 equal ``old`` rows first+dy..end-1+dy exactly; None when no run of at
    least ``COPY_MIN_ROWS`` rows moved.

    Rows whose content is common in ``old`` (blank lines) cast no vote for the shift, so
    a mostly empty terminal still scrolls by the distance its text moved.
    """
    return _find_vertical_copy(_values(old), _values(new))


def _find_vertical_copy(
    old: npt.NDArray[np.uint32],
    new: npt.NDArray[np.uint32],
    old_h: Sequence[int] | npt.NDArray[np.int64] | None = None,
    new_h: Sequence[int] | npt.NDArray[np.int64] | None = None,
    min_run: int = COPY_MIN_ROWS,
    every: int = 1,
) -> tuple[int, int, int] | None:
    """``find_vertical_copy`` on words; ``old_h``, ``new_h``: their row hashes, if known;
    ``min_run``: the fewest rows the copy must cover; ``every``: only every so many
    changed rows vote (fewer look-ups; a run of ``min_run`` rows must still hold
    ``COPY_MIN_ROWS // 2`` voters)."""
    h = new.shape[0]
    oh = np.asarray(_row_hashes(old) if old_h is None else old_h, dtype=np.int64)
    nh = np.asarray(_row_hashes(new) if new_h is None else new_h, dtype=np.int64)
    # Each changed row votes for the shifts that bring it to a row of ``old`` with its
    # content: at most 4 such rows, so common rows (blank lines) do not vote.
    order = np.argsort(oh, kind="stable")
    known = oh[order]
    rows = np.flatnonzero(nh != oh)[::every]
    wanted = nh[rows]
    first = np.searchsorted(known, wanted, "left")
    last = known.size - 1
    hit = known[np.minimum(first, last)] == wanted  # equal hashes start at ``first``
    rows, first, wanted = rows[hit], first[hit], wanted[hit]
    count = np.ones(rows.size, dtype=np.intp)  # how many, up to 5 (5: common)
    for k in range(1, 5):
        at = first + k
        count += (at <= last) & (known[np.minimum(at, last)] == wanted)
    ok = count <= 4
    rows, first, count = rows[ok], first[ok], count[ok]
    if rows.size < COPY_MIN_ROWS // 2:
        return None  # too few voters for any shift to win (a row votes once per shift)
    voter = np.repeat(np.arange(rows.size), count)
    nth = np.arange(voter.size) - np.repeat(np.cumsum(count) - count, count)
    shifts = order[first[voter] + nth] - rows[voter]
    values, seen_at, votes = np.unique(shifts, return_index=True, return_counts=True)
    top = np.flatnonzero(votes == votes.max())
    pick = top[np.argmin(seen_at[top])]  # among equals, the one voted for first
    dy = int(values[pick])
    if votes[pick] < COPY_MIN_ROWS // 2:
        return None
    # The longest run of rows that equal ``old``'s rows dy further (the first of equals).
    lo, hi = max(0, -dy), min(h, h - dy)
    same = np.zeros(hi - lo + 2, dtype=np.int8)
    same[1:-1] = nh[lo:hi] == oh[lo + dy : hi + dy]
    edges = np.flatnonzero(np.diff(same))
    starts, ends = edges[::2], edges[1::2]
    if starts.size == 0:
        return None
    longest = int(np.argmax(ends - starts))
    best = (lo + int(starts[longest]), lo + int(ends[longest]))
    if best[1] - best[0] < min_run:
        return None
    a, b = best
    if not np.array_equal(new[a:b], old[a + dy : b + dy]):
        return None  # a hash collision
    return a, b, dy


def _predicted_copy(
    old: npt.NDArray[np.uint32], new: npt.NDArray[np.uint32], shifts: Sequence[int]
) -> tuple[int, int, int] | None:
    """A vertical move of a block by one of ``shifts`` (those of a scroll that goes on),
    as ``_find_vertical_copy`` gives it, without hashing rows: ``_PROBES`` rows spread
    over the block tell whether a shift is worth a full compare (most of them must
    match), and the longest run of rows equal at that shift must hold at least half the
    rows the shift leaves. None when no shift does (the search runs instead)."""
    h = new.shape[0]
    for dy in shifts:
        lo, hi = max(0, -dy), min(h, h - dy)
        if hi - lo < max(COPY_MIN_ROWS, 2):
            continue
        k = min(_PROBES, hi - lo)
        rows = lo + np.arange(k) * (hi - lo - 1) // max(k - 1, 1)
        if 2 * int((new[rows] == old[rows + dy]).all(axis=1).sum()) < k:
            continue
        a, b = _longest_run((new[lo:hi] == old[lo + dy : hi + dy]).all(axis=1))
        if b - a >= max(COPY_MIN_ROWS, (hi - lo) // 2):
            return lo + a, lo + b, dy
    return None


def _extend_copy(
    old: npt.NDArray[np.uint32],
    new: npt.NDArray[np.uint32],
    diff: npt.NDArray[np.bool_],
    a: int,
    b: int,
    dy: int,
) -> tuple[int, int, list[Rect]]:
    """Grow a found move's rows ``a..b`` over the neighbouring rows (e.g. those a
    scroll bar's thumb or a fixed sidebar cut out of the exact run) as far as the copy
    then gets fewer pixels wrong there than sending nothing would (``diff``: what
    changed; on a tie, the taller copy). Returns the new rows and the boxes (block
    coordinates) the copy gets wrong in them, to be sent as pixels after it."""
    h = new.shape[0]
    lo, hi = max(0, -dy), min(h, h - dy)
    top, bottom = a, b
    boxes: list[Rect] = []
    # Above (rows a-1, a-2 .. lo), then below (b .. hi-1): per row, the pixels the copy
    # gets wrong less those that changed anyway; the best stopping place is where the
    # running sum is lowest (the farthest of the minima), if that is not above zero.
    for start, end, up in ((lo, a, True), (b, hi, False)):
        if end <= start:
            continue
        wrong = new[start:end] != old[start + dy : end + dy]
        delta = wrong.sum(axis=1, dtype=np.int64) - diff[start:end].sum(axis=1, dtype=np.int64)
        sums = (delta[::-1] if up else delta).cumsum()
        j = sums.size - 1 - int(np.argmin(sums[::-1]))
        if sums[j] > 0:
            continue
        if up:
            top = a - 1 - j
            grown, first = wrong[top - start :], top
        else:
            bottom = b + j + 1
            grown, first = wrong[: bottom - b], b
        for band in range(0, grown.shape[0], TILE):
            if (box := diff_box(grown[band : band + TILE])) is not None:
                boxes.append(Rect(box.x, first + band + box.y, box.w, box.h))
    return top, bottom, boxes


def _longest_run(mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """The first longest run of True in a 1-d mask: (start, end); (0, 0) when none."""
    padded = np.zeros(mask.size + 2, dtype=np.int8)
    padded[1:-1] = mask
    edges = np.flatnonzero(np.diff(padded))
    if edges.size == 0:
        return 0, 0
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest])


def find_horizontal_copy(old: Frame, new: Frame) -> tuple[int, int, int, int, int] | None:
    """A sideways move inside a block: (top, bottom, left, right, dx) such that ``new``'s
    rows top..bottom-1, columns left..right-1 equal ``old``'s at columns left+dx..right-1+dx
    exactly; None when no area of at least ``COPY_MIN_ROWS`` rows and ``COPY_MIN_COLS``
    columns moved sideways.

    Columns are hashed over a few sampled changed rows only (not the whole block), and
    columns whose content is common in ``old`` (blank ones) cast no vote.
    """
    old_v, new_v = _values(old), _values(new)
    changed = np.flatnonzero((old_v != new_v).any(axis=1))
    return _find_horizontal_copy(old_v, new_v, changed)


def _find_horizontal_copy(
    old: npt.NDArray[np.uint32],
    new: npt.NDArray[np.uint32],
    changed: npt.NDArray[np.intp],
) -> tuple[int, int, int, int, int] | None:
    """``find_horizontal_copy`` on words; ``changed``: the block's changed rows, sorted.

    Each set of ``_H_ROWS`` sampled rows gives one hash per column (a weighted sum of
    its words in those rows), and the vertical finder's vote runs on the columns; a shift
    it finds is then checked on every row of the block: the longest run of rows exact
    over the found columns, widened to every column exact over those rows."""
    w = new.shape[1]
    n = changed.size
    if n < _H_ROWS or w < 2 * COPY_MIN_COLS:
        return None
    tried: set[int] = set()
    picked: set[bytes] = set()
    misses = 0  # sets in a row that found no shift
    spread = (np.arange(_H_ROWS) + 0.5 / _H_SETS) / _H_ROWS  # set 0's fractions
    for j in range(_H_SETS):
        at = n * (0.125 + 0.75 * (spread + j / (_H_SETS * _H_ROWS)))
        rows = changed[np.minimum(at.astype(np.intp), n - 1)]
        if rows.tobytes() in picked:
            continue  # few changed rows: the sets coincide
        picked.add(rows.tobytes())
        sample_old, sample_new = old[rows], new[rows]  # (rows, w): small copies
        old_h = (sample_old * _H_WEIGHTS).sum(axis=0, dtype=np.uint64).view(np.int64)
        new_h = (sample_new * _H_WEIGHTS).sum(axis=0, dtype=np.uint64).view(np.int64)
        found = _find_vertical_copy(
            sample_old.T, sample_new.T, old_h, new_h, min_run=COPY_MIN_COLS, every=_H_VOTERS
        )
        if found is None:
            misses += 1
            if misses >= _H_GIVE_UP:
                return None
            continue
        misses = 0
        if found[2] in tried or found[2] == 0:
            continue
        a, b, dx = found
        tried.add(dx)
        lo, hi = max(0, -dx), min(w, w - dx)
        same = new[:, lo:hi] == old[:, lo + dx : hi + dx]  # one compare for rows and columns
        top, bottom = _longest_run(same[:, a - lo : b - lo].all(axis=1))
        if bottom - top < COPY_MIN_ROWS:
            continue
        off = np.flatnonzero(~same[top:bottom].all(axis=0))
        left = lo + int(off[off < a - lo].max(initial=-1)) + 1
        right = lo + int(off[off >= b - lo].min(initial=hi - lo))
        return top, bottom, left, right, dx
    return None


class RFBService:
    """One RFB connection between a viewer and this machine's screen and input."""

    def __init__(
        self,
        capture: ScreenCapture,
        injector: InputInjector,
        read: Callable[[], Awaitable[bytes]],
        write: Callable[[bytes], Awaitable[None]],
        *,
        name: str,
        control_allowed: Callable[[], bool] = lambda: True,
        max_fps: float = 60,
        clipboard: Clipboard | None = None,
        clipboard_allowed: Callable[[], bool] = lambda: False,
        on_clipboard: Callable[[str, int], Awaitable[None] | None] | None = None,
        monitor: int | None = None,
    ) -> None:
        self._source = capture  # the whole screen
        self._capture: ScreenCapture = capture  # what is served: the source or a monitor
        self._monitor_choice = monitor  # asked for when the stream opened (1-based)
        self._monitors: list[Monitor] = []  # the whole desktop's, in viewer order
        self._shown: Monitor | None = None  # the one monitor served, None: all of them
        self._wanted: str | None = None  # the chosen monitor's name, while it is chosen
        self._desktop = (0, 0)  # the whole screen's size
        self._layout_requests: list[m.SetDesktopSize] = []  # from the viewer, to answer
        self._monitors_dirty = False
        self._injector = injector
        self._read = read
        self._write = write
        self._name = name
        self._control_allowed = control_allowed
        self._interval = 1.0 / max_fps
        self._server: RFBServer | None = None
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # run()'s, for the workers
        self._flusher: asyncio.Task[None] | None = None  # sends a streamed update's parts
        self._flush_more = False
        #: Held by the loop around every use of ``_server`` outside the updater, and by
        #: the worker while it plans an update (``_step``): the reader may take messages
        #: in meanwhile.
        self._server_lock = threading.Lock()
        self._settle_cut = threading.Event()  # input: the worker's settle ends now
        # The worker waits for damage itself (X11; see _wait_for_damage): the reader
        # ends that wait through this pipe, and the end of run() waits for it.
        self._wait_pipe: tuple[int, int] | None = None
        # That worker is a thread of the connection's own: waits as long as the screen
        # stays still must not hold one of the event loop's shared workers.
        self._waiter: concurrent.futures.ThreadPoolExecutor | None = None
        self._waiting = False  # a worker waits for damage (loop side)
        self._worker_idle = threading.Event()  # no worker waits for damage
        self._worker_idle.set()
        self._previous: Frame | None = None
        self._kept_hashes: tuple[Frame, Rect, list[int]] | None = None  # see _grab_damage
        # Blocks where the last damage step found a copy, and the vertical shift if any.
        self._moved_in: list[tuple[Rect, int | None]] = []
        self._panned_in: list[Rect] = []  # where the last one found a diagonal move
        self._damage: list[Rect] = []
        self._lossy: list[Rect] = []  # sent as JPEG and not resent since
        self._changed_at = 0.0  # loop time of the last update with screen changes
        self._cursor_serial: int | None = None
        self._controlling = False
        self._clipboard = clipboard
        self._clipboard_allowed = clipboard_allowed
        self._on_clipboard = on_clipboard
        self._clipboard_changed = asyncio.Event()
        self._offered: str | None = None  # the customer's text we last offered the viewer
        self._last_text: str | None = None  # the last text that crossed either way
        self._lossy_copies: list[Rect] = []  # set by each _grab_damage
        self._event_fd: int | None = None  # the capture reports damage as events on it
        self._armed = False  # watching _event_fd
        self._dirty = True  # damage reported and not polled yet
        self._dirty_since = -math.inf  # when the X server first reported it (loop time)
        self._input_at: float | None = None  # input not yet followed by a poll
        #: The loop's time of the last key or pointer event injected (None: none yet):
        #: the owner closes the injector a settle after it (input.settle).
        self.last_input: float | None = None
        self._h264: h264.H264Policy | None = None  # with PyAV: video as H.264 (docs/h264.md)
        #: Screen polls (capture calls) so far: for tests and benchmarks.
        self.polls = 0
        self._motion_misses = 0  # diagonal searches in a row that found nothing
        self._motion_rest_until = 0  # no diagonal search before this poll
        #: Texts and offers from the viewer dropped: clipboard not allowed, or too long.
        self.clipboard_dropped = 0

    @property
    def server(self) -> RFBServer | None:
        """The protocol state, once ``run()`` started (for diagnostics and tests)."""
        return self._server

    async def run(self) -> None:
        """Serve the connection until the peer closes it or it fails; always cleans up."""
        self._loop = asyncio.get_running_loop()
        width, height = await asyncio.to_thread(lambda: self._capture.size)
        self._desktop = (width, height)
        if callable(getattr(self._source, "monitors", None)):
            self._desktop, self._monitors = await asyncio.to_thread(self._read_monitors)
            choice = self._monitor_choice
            if choice is not None and 1 <= choice <= len(self._monitors):
                self._show(self._monitors[choice - 1])
                self._wanted = self._monitors[choice - 1].name
            elif choice is not None:
                logger.info(
                    "rfb monitor %d asked for, %d present: the whole desktop",
                    choice, len(self._monitors),
                )  # fmt: skip
            width, height = self._capture.size if self._shown else self._desktop
        self._server = RFBServer(width, height, self._name, self._layout())
        self._server.layout_requests = True
        if await asyncio.to_thread(h264.available):
            self._h264 = h264.H264Policy()
        fileno = getattr(self._source, "fileno", None)
        if callable(fileno) and callable(getattr(self._source, "grab_rects", None)):
            self._event_fd = await asyncio.to_thread(fileno)
            if self._event_fd is not None and not getattr(self._source, "nonblocking", False):
                r, w = os.pipe()
                os.set_blocking(r, False)
                os.set_blocking(w, False)
                self._wait_pipe = (r, w)
                self._waiter = concurrent.futures.ThreadPoolExecutor(1, "enkaku-rfb-damage")
        reader = asyncio.create_task(self._read_loop(), name="rfb-reader")
        updater = asyncio.create_task(self._update_loop(), name="rfb-updater")
        tasks = {reader, updater}
        background: set[asyncio.Task[None]] = set()  # a failing clipboard ends no screen
        unwatch: Callable[[], None] | None = None
        if self._clipboard is not None:
            loop = asyncio.get_running_loop()
            changed = self._clipboard_changed

            def on_change() -> None:
                loop.call_soon_threadsafe(changed.set)

            unwatch = self._clipboard.watch(on_change)
            background.add(asyncio.create_task(self._clipboard_loop(), name="rfb-clipboard"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    if isinstance(exc, (ProtocolError, ConnectionError, EOFError)):
                        logger.info("rfb connection ended: %s", exc)
                    else:
                        raise exc
        finally:
            self._disarm()
            if unwatch is not None:
                unwatch()
            if self._flusher is not None:
                background.add(self._flusher)
            for task in tasks | background:
                task.cancel()
            for task in tasks | background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._wait_pipe is not None:
                # A worker may still wait for damage: end its wait before the pipe goes
                # (and before the owner closes the capture it uses).
                with contextlib.suppress(BlockingIOError):
                    os.write(self._wait_pipe[1], b"!")
                await asyncio.to_thread(self._worker_idle.wait, 30)
                for fd in self._wait_pipe:
                    os.close(fd)
                self._wait_pipe = None
            if self._waiter is not None:
                self._waiter.shutdown(wait=False)
                self._waiter = None
            await asyncio.to_thread(self._injector.release_all)
            logger.debug("rfb connection closed")

    async def _flush(self) -> None:
        assert self._server is not None
        async with self._write_lock:
            with self._server_lock:
                data = self._server.data_to_send()
            if data:
                await self._write(data)

    # -- reader --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        server = self._server
        assert server is not None
        await self._flush()  # ProtocolVersion
        while True:
            data = await self._read()
            if not data:
                return
            try:
                with self._server_lock:
                    events = server.receive_data(data)
            finally:
                await self._flush()  # also a failure reason, if there is one
            for event in events:
                await self._handle_event(event)

    async def _handle_event(self, event: object) -> None:
        match event:
            case m.KeyEvent(down=down, keysym=keysym):
                if await self._may_control():
                    self._note_input()
                    if getattr(self._injector, "nonblocking", False):
                        self._injector.key(keysym, down)  # queues and flushes: no wait
                    else:
                        await asyncio.to_thread(self._injector.key, keysym, down)
            case m.QEMUExtendedKeyEvent(down=down, keysym=keysym, keycode=keycode):
                if await self._may_control():
                    self._note_input()
                    if getattr(self._injector, "nonblocking", False):
                        self._injector.key(keysym, down, keycode)
                    else:
                        await asyncio.to_thread(self._injector.key, keysym, down, keycode)
            case m.PointerEvent(buttons=buttons, x=x, y=y):
                if await self._may_control():
                    self._note_input()
                    x, y = self._to_screen(x, y)
                    await asyncio.to_thread(self._injector.pointer, x, y, buttons)
            case m.SetDesktopSize():
                self._layout_requests.append(event)  # answered by the updater, in order
                self._wake_up()
            case m.ClientCutText(text=text):
                await self._handle_cut_text(text)
            case ClipboardAnnounced(text=True):
                if self._may_use_clipboard():
                    assert self._server is not None
                    with self._server_lock:
                        self._server.request_clipboard()
                    await self._flush()
                else:
                    self._drop("offer")
            case ClipboardRequested():
                await self._handle_clipboard_request()
            case ClipboardDropped():
                self._drop("text over the limit")
            case ClipboardAnnounced():
                pass  # the viewer's clipboard is empty now: nothing to do
            case _:
                self._wake_up()  # requests, pixel format, encodings, continuous updates

    def _to_screen(self, x: int, y: int) -> tuple[int, int]:
        """Framebuffer coordinates -> the screen's (the shown monitor's offset added)."""
        shown = self._shown
        if shown is None:
            return x, y
        r = shown.rect
        return r.x + min(max(x, 0), r.w - 1), r.y + min(max(y, 0), r.h - 1)

    def _note_input(self) -> None:
        """Input is about to reach the screen: its result goes out without pacing."""
        self._input_at = self.last_input = asyncio.get_running_loop().time()
        self._settle_cut.set()

    async def _may_control(self) -> bool:
        allowed = self._control_allowed()
        if not allowed and self._controlling:
            # Control was just paused: let go of anything the technician held down.
            await asyncio.to_thread(self._injector.release_all)
        self._controlling = allowed
        if not allowed:
            logger.debug("rfb input dropped: control not allowed")
        return allowed

    # -- clipboard -----------------------------------------------------------------

    def _may_use_clipboard(self) -> bool:
        return self._clipboard is not None and self._clipboard_allowed()

    def _drop(self, what: str) -> None:
        self.clipboard_dropped += 1
        logger.debug("rfb clipboard %s from the viewer dropped", what)

    async def _handle_cut_text(self, text: str) -> None:
        """Text from the viewer: onto the customer's clipboard, if allowed."""
        if not self._may_use_clipboard():
            self._drop("text")
            return
        assert self._clipboard is not None
        try:
            await asyncio.to_thread(self._clipboard.set_text, text)
        except ClipboardError as exc:
            logger.info("rfb clipboard text not set: %s", exc)
            return
        self._last_text = text
        await self._report(TO_CUSTOMER, len(text))

    async def _handle_clipboard_request(self) -> None:
        """The viewer asks for the text we offered: send it if still allowed."""
        text = self._offered
        if text is None or not self._may_use_clipboard():
            return
        await self._send_text(text)

    async def _clipboard_loop(self) -> None:
        """Offer the customer's clipboard to the viewer whenever another program copies."""
        try:
            await self._offer_changes()
        except Exception:  # nobody awaits this task until the end: say so now
            logger.exception("rfb clipboard watcher failed")

    async def _offer_changes(self) -> None:
        server = self._server
        clipboard = self._clipboard
        assert server is not None and clipboard is not None
        while True:
            await self._clipboard_changed.wait()
            self._clipboard_changed.clear()
            if server.state is not State.RUNNING or not self._clipboard_allowed():
                continue  # not read at all
            try:
                text = await asyncio.to_thread(clipboard.read_text)
            except ClipboardError as exc:
                logger.warning("rfb clipboard not read, no more offers: %s", exc)
                return
            if text is None or text == self._last_text or not self._clipboard_allowed():
                continue
            self._last_text = self._offered = text
            with self._server_lock:
                announced = server.announce_clipboard(True)
            if announced:
                await self._flush()  # the text goes when the viewer asks for it
            else:
                await self._send_text(text)

    async def _send_text(self, text: str) -> None:
        server = self._server
        assert server is not None
        message = await asyncio.to_thread(server.cut_text_message, text)  # zlib
        with self._server_lock:
            server.send_cut_text_message(message)
        await self._flush()
        await self._report(FROM_CUSTOMER, len(text))

    async def _report(self, direction: str, n_chars: int) -> None:
        if self._on_clipboard is None:
            return
        try:
            result = self._on_clipboard(direction, n_chars)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("rfb clipboard audit callback failed")

    # -- updater -------------------------------------------------------------------

    async def _update_loop(self) -> None:
        server = self._server
        assert server is not None
        loop = asyncio.get_running_loop()
        next_at = 0.0
        while True:
            if self._layout_requests or self._monitors_dirty:
                await self._relayout()
                continue
            request = server.update_requested
            if request is None:
                self._wake.clear()
                await self._flush()  # a ping the link's state may have queued
                # Held back by the link: its estimate may leave room before the next
                # answer arrives (congestion.py, in_flight_estimate).
                await self._wait_wake(server.held_for)
                continue
            now = loop.time()
            settle = 0.0
            waited: _Step | None = None
            if request.incremental and self._event_fd is not None and self._previous is not None:
                if not self._dirty and not server.has_pending_pseudo:
                    if not any(request.region.intersect(d) for d in self._damage):
                        due = self._changed_at + LOSSLESS_REFRESH_DELAY if self._lossy else None
                        if due is None or due > now:
                            timeout = None if due is None else due - now
                            if self._wait_pipe is None:
                                self._arm(loop)
                                await self._sleep_or_wake(timeout)
                                continue
                            waited = await self._wait_for_damage(request, next_at, timeout)
                            if waited is None:
                                continue  # the viewer asked for something, or a refresh
                elif not self._input_recent(now):
                    # Coalesce damage until the next frame, and for DAMAGE_SETTLE after
                    # the first damage of a quiet screen: the worker waits that long
                    # before it polls (cut short by input). The X connection is not
                    # watched meanwhile: the poll is due anyway, and every event the
                    # application's drawing sends would otherwise wake this loop.
                    settle = max(0.0, max(next_at, self._dirty_since + DAMAGE_SETTLE) - now)
            elif request.incremental and (delay := next_at - now) > 0:
                await self._sleep_or_wake(delay)
                continue
            # Input is answered by the first poll that finds a change; one that finds
            # none (the application has not drawn yet) leaves the fast path open.
            input_at, self._input_at = self._input_at, None
            self._disarm()  # the poll reads the X connection itself
            self._dirty = False
            self._settle_cut.clear()
            if waited is not None:
                step = waited
            elif (
                input_at is not None
                and settle == 0
                and getattr(self._capture, "nonblocking", False)
            ):
                # A key's damage: small, and the path is short. The encode too, unless
                # the update is larger than a key's few pixels.
                step = self._step(request, now, settle, INLINE_MAX_AREA)
                if step.pending is not None and not step.encoded:
                    await asyncio.to_thread(self._encode, step.pending)
            else:
                # One hop for the settle, the poll and the encode (each hop costs
                # about as much CPU as a small update's damage step).
                step = await asyncio.to_thread(self._step, request, now, settle, None)
            poll, started = step.poll, step.started
            if poll.more:
                self._dirty, self._dirty_since = True, -math.inf
            if poll.monitors_changed:
                self._monitors_dirty = True
                self._input_at = self._input_at or input_at
                continue
            if poll.resized is not None:
                self._lossy = []
                if self._h264 is not None:
                    self._h264.reset()
                self._desktop = poll.resized
                self._monitors_dirty = True  # sent with the new layout
                continue
            pending = step.pending
            if pending is None:
                if step.idle:
                    if self._event_fd is None:  # polling: the next poll a frame later
                        next_at = started + self._interval
                    self._input_at = self._input_at or input_at
                continue
            with self._server_lock:
                server.end_framebuffer_update(pending)
            if (step.rects or step.copies) and not step.lossless:
                self._changed_at = started
            self._note_lossy([*step.rects, *(c.dest for c in step.copies)], pending.lossy)
            sent = {c.dest for c in step.copies}
            self._lossy.extend(Rect(*_xywh(d)) for d in poll.lossy_copies if d in sent)
            await self._flush()
            next_at = started + self._interval

    # -- monitors ------------------------------------------------------------------

    def _read_monitors(self) -> tuple[tuple[int, int], list[Monitor]]:
        """Worker thread: the whole screen's size and its monitors (none without RandR)."""
        monitors = getattr(self._source, "monitors", None)
        if not callable(monitors):
            return self._desktop, []
        found: list[Monitor] = monitors()
        screen_size = getattr(self._source, "screen_size", None)
        size = screen_size() if callable(screen_size) else self._source.size
        return size, found

    def _show(self, monitor: Monitor | None) -> None:
        self._shown = monitor
        self._capture = self._source if monitor is None else MonitorView(self._source, monitor.rect)

    def _layout(self) -> list[m.Screen]:
        """The screen list the viewer gets: every monitor, or the one shown at 0, 0."""
        if self._shown is not None:
            number = next(
                (i + 1 for i, mon in enumerate(self._monitors) if mon == self._shown), 0
            )  # fmt: skip
            return [m.Screen(number, 0, 0, self._shown.rect.w, self._shown.rect.h)]
        return [
            m.Screen(i + 1, mon.rect.x, mon.rect.y, mon.rect.w, mon.rect.h)
            for i, mon in enumerate(self._monitors)
        ]

    def _chosen(self, request: m.SetDesktopSize) -> tuple[bool, Monitor | None]:
        """What a SetDesktopSize asks for: (acceptable, the monitor; None: all of them)."""
        width, height = self._desktop
        if (request.w, request.h) == (width, height):
            whole = sorted((s.x, s.y, s.w, s.h, s.id) for s in self._layout_of_desktop())
            asked = sorted((s.x, s.y, s.w, s.h, s.id) for s in request.screens)
            one = [(s.x, s.y, s.w, s.h) for s in request.screens]
            if asked == whole or one == [(0, 0, width, height)]:
                return True, None
        if len(request.screens) == 1:
            s = request.screens[0]
            if 1 <= s.id <= len(self._monitors):
                mon = self._monitors[s.id - 1]
                if (request.w, request.h) == (s.w, s.h) == (mon.rect.w, mon.rect.h) and (
                    s.x, s.y,
                ) == (0, 0):  # fmt: skip
                    return True, mon
        return False, None

    def _layout_of_desktop(self) -> list[m.Screen]:
        shown, self._shown = self._shown, None
        try:
            return self._layout() or [m.Screen(0, 0, 0, *self._desktop)]
        finally:
            self._shown = shown

    async def _relayout(self) -> None:
        """Follow monitor changes and answer the viewer's SetDesktopSize requests (in
        order): serve the whole desktop or one monitor, tell the viewer size and screens."""
        server = self._server
        assert server is not None
        requests, self._layout_requests = self._layout_requests, []
        if self._monitors_dirty:
            self._monitors_dirty = False
            self._desktop, self._monitors = await asyncio.to_thread(self._read_monitors)
            # The chosen monitor (by name), wherever it went; the whole desktop while it
            # is gone, and that monitor again if it comes back (unplugged, or redefined).
            wanted = self._wanted
            target = next((mon for mon in self._monitors if mon.name == wanted), None)
            self._apply(target, answer=False)
        for request in requests:
            ok, chosen = self._chosen(request)
            if ok:
                self._wanted = chosen.name if chosen is not None else None
                self._apply(chosen, answer=True)
            else:
                logger.info("rfb screen layout refused (%d screens)", len(request.screens))
                server.refuse_desktop_size(DesktopSizeStatus.PROHIBITED)
        await self._flush()

    def _apply(self, target: Monitor | None, *, answer: bool) -> None:
        """Serve ``target`` (None: the whole desktop) and tell the viewer what changed;
        ``answer``: this answers its SetDesktopSize (always sent, even if nothing did)."""
        server = self._server
        assert server is not None
        old = self._shown.rect if self._shown is not None else None
        new_view = old != (target.rect if target is not None else None)
        if new_view:
            self._show(target)
        else:
            self._shown = target  # the same rectangle (its number may have changed)
        width, height = (target.rect.w, target.rect.h) if target is not None else self._desktop
        resized = (width, height) != (server.width, server.height)
        if answer:
            server.send_desktop_size(width, height, self._layout(), reason=DesktopSizeReason.CLIENT)
        elif (resized or tuple(self._layout()) != server.screens) and not server.send_desktop_size(
            width, height, self._layout()
        ):
            logger.info("rfb viewer cannot resize; screen size change not shown")
        if new_view or resized:
            self._previous = None  # the next poll grabs the whole new framebuffer
            self._damage = []
            self._lossy = []
            self._lossy_copies = []
            if self._h264 is not None:
                self._h264.reset()

    async def _sleep_or_wake(self, delay: float | None) -> None:
        self._wake.clear()
        await self._wait_wake(delay)

    async def _wait_wake(self, delay: float | None) -> None:
        """Until ``_wake`` is set or ``delay`` seconds passed (None: no limit).
        ``asyncio.timeout`` rather than ``wait_for``: no task per wait (the loop waits
        two or three times per update)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    def _input_recent(self, now: float) -> bool:
        return self._input_at is not None and now - self._input_at < INPUT_FAST_PATH

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the capture's X connection for damage (once; see ``_on_damage``)."""
        if not self._armed and self._event_fd is not None:
            loop.add_reader(self._event_fd, self._on_damage)
            self._armed = True

    def _disarm(self) -> None:
        if self._armed and self._event_fd is not None:
            asyncio.get_running_loop().remove_reader(self._event_fd)
        self._armed = False

    def _on_damage(self) -> None:
        # Level-triggered: stop watching until the next poll has read the events.
        self._disarm()
        if not self._dirty:
            self._dirty_since = asyncio.get_running_loop().time()
        self._dirty = True
        self._wake.set()

    def _take_damage(self, request: UpdateRequest) -> list[Rect]:
        """Damage inside the request (all of ``full``); the rest stays for later."""
        inside: list[Rect] = []
        keep: list[Rect] = []
        for rect in self._damage:
            part = request.region.intersect(rect)
            if part is not None:
                inside.append(part)
            if part != rect:
                keep.append(rect)
        self._damage = keep
        if request.full is not None:
            inside = [request.full, *(r for r in inside if request.full.intersect(r) != r)]
        return inside

    def _take_lossy(self, region: Rect, limit: int | None = None) -> list[Rect]:
        """The lossily sent areas inside ``region``, at most ``limit`` pixels of them (a
        slow link's refresh goes out in parts, so new changes never wait behind all of
        it); the rest stays for later."""
        inside = [part for r in self._lossy if (part := region.intersect(r)) is not None]
        self._lossy = [r for r in self._lossy if region.intersect(r) != r]
        if limit is None:
            return inside
        taken: list[Rect] = []
        for i, r in enumerate(inside):
            if limit <= 0:
                self._lossy.extend(inside[i:])
                break
            rows = max(1, min(r.h, limit // max(r.w, 1)))
            taken.append(Rect(r.x, r.y, r.w, rows))
            if rows < r.h:
                self._lossy.append(Rect(r.x, r.y + rows, r.w, r.h - rows))
            limit -= rows * r.w
        return taken

    def _note_lossy(self, sent: Sequence[RectLike], lossy: list[Rect]) -> None:
        """Forget lossy areas that ``sent`` covered again, remember the new ones."""
        covered = [Rect(s.x, s.y, s.w, s.h) for s in sent]
        self._lossy = [r for r in self._lossy if not any(c.intersect(r) == r for c in covered)]
        self._lossy.extend(lossy)
        if len(self._lossy) > 256:  # bounded, like the damage list
            box = self._lossy[0]
            for r in self._lossy[1:]:
                box = box.union(r)
            self._lossy = [box]

    def _poll(self, request: UpdateRequest) -> _Poll:
        """Worker thread: capture, detect damage and size changes, pick up the cursor."""
        server = self._server
        assert server is not None
        self.polls += 1
        monitors_changed = getattr(self._source, "monitors_changed", None)
        if callable(monitors_changed) and monitors_changed():
            # Lay out first; damage stays with the capture, and events it read are polled.
            return _Poll(monitors_changed=True, more=True)
        regions = self._capture.changed_regions()
        event = self._event_fd is not None
        if event and regions is not None and self._previous is not None and request.incremental:
            copies = self._grab_damage(regions)
            if copies is not None:
                cursor = self._new_cursor()  # before looking at the queue: it reads events
                more = self._capture.events_queued()  # type: ignore[attr-defined]
                return _Poll(
                    self._previous, cursor=cursor, more=more, copies=copies,
                    lossy_copies=self._lossy_copies,
                )  # fmt: skip
        elif regions == [] and self._previous is not None and request.incremental:
            return _Poll(self._previous, cursor=self._new_cursor())
        frame = self._capture.grab()
        h, w = frame.shape[:2]
        if (w, h) != (server.width, server.height):
            if server.supports(m.Encoding.EXTENDED_DESKTOP_SIZE) or server.supports(
                m.Encoding.DESKTOP_SIZE
            ):
                self._previous = None
                self._damage = [Rect(0, 0, w, h)]
                return _Poll(resized=(w, h))
            frame = fit(frame, server.width, server.height)  # the viewer cannot resize
        if self._previous is None:
            self._damage = [Rect(0, 0, w, h)]
        elif regions is not None:
            self._add_damage(regions)
        else:
            self._add_damage(changed_tiles(self._previous, frame))
        # Event-driven updates keep the X bytes clear (see ``_grab_damage``).
        self._previous = _clear_x(frame) if event else frame
        cursor = self._new_cursor()
        more = event and self._capture.events_queued()  # type: ignore[attr-defined]
        return _Poll(self._previous, cursor=cursor, more=more)

    def _wake_up(self) -> None:
        """The updater has something new to look at (a request, a layout, encodings)."""
        self._wake.set()
        if self._waiting and self._wait_pipe is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._wait_pipe[1], b"!")

    async def _wait_for_damage(
        self, request: UpdateRequest, next_at: float, timeout: float | None
    ) -> _Step | None:
        """A worker waits for the X server's damage and then settles, polls and encodes
        in the same call: the event loop is not woken by the damage, only by the update
        (one thread wake-up less per update). None: the viewer asked for something
        meanwhile, or ``timeout`` passed."""
        self._settle_cut.clear()
        self._waiting = True
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._waiter, self._damage_step, request, next_at, timeout
            )
        finally:
            self._waiting = False

    def _damage_step(
        self, request: UpdateRequest, next_at: float, timeout: float | None
    ) -> _Step | None:
        """Worker thread: ``_wait_for_damage``."""
        assert self._wait_pipe is not None and self._event_fd is not None
        self._worker_idle.clear()
        try:
            waiter = select.poll()
            waiter.register(self._event_fd, select.POLLIN)
            waiter.register(self._wait_pipe[0], select.POLLIN)
            # A colour-mapped screen changes colour without damage: look at its colour
            # map now and then while it is idle (X11Capture.colours_changed).
            check = getattr(self._source, "colour_check_interval", None)
            checking = check is not None and (timeout is None or check <= timeout)
            wait = check if checking else timeout
            ready = {fd for fd, _ in waiter.poll(None if wait is None else wait * 1000)}
            if self._wait_pipe[0] in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wait_pipe[0], 512)
                return None
            if not ready:
                if checking and getattr(self._source, "colours_changed")():  # noqa: B009
                    return self._step(request, time.monotonic(), 0.0, None)
                return None
            now = time.monotonic()  # the loop's clock
            input_at = self._input_at  # set by the loop: a key typed meanwhile
            if input_at is not None and now - input_at < INPUT_FAST_PATH:
                settle = 0.0
            else:
                settle = max(next_at, now + DAMAGE_SETTLE) - now
            return self._step(request, now, settle, None)
        finally:
            self._worker_idle.set()

    def _step(
        self, request: UpdateRequest, now: float, settle: float, encode_max: int | None
    ) -> _Step:
        """Worker thread (or the loop, for a key on a capture that cannot block): wait
        ``settle`` seconds (less if input comes), poll, and begin the update the poll
        calls for, encoded unless it has more than ``encode_max`` pixels (None: any).
        Touches the protocol state only under ``_server_lock``; what the reader also
        changes (input, wake-ups) is left to the loop."""
        if settle > 0:
            self._settle_cut.wait(settle)
            now = time.monotonic()  # the loop's clock
        poll = self._poll(request)
        step = _Step(poll, now)
        if poll.monitors_changed or poll.resized is not None:
            return step
        server = self._server
        assert server is not None
        with self._server_lock:
            if poll.cursor is not None:
                server.send_cursor(poll.cursor)
            request_now = server.update_requested
            if request_now is None or poll.frame is None:
                return step
            request = request_now
            copies = [c for c in poll.copies if request.region.intersect(c.dest) == c.dest]
            # A copy the request does not wholly cover goes out as pixels instead.
            self._add_damage([c.dest for c in poll.copies if c not in copies])
            rects = self._take_damage(request)
            lossless = False
            if not rects and not copies and request.incremental and not server.has_pending_pseudo:
                if self._lossy and now - self._changed_at >= LOSSLESS_REFRESH_DELAY:
                    rects = self._take_lossy(request.region, server.refresh_pixels)
                    lossless = True
                if not rects:
                    step.idle = True
                    return step
            video = None
            if self._h264 is not None and rects and not lossless and request.incremental:
                video = self._h264.choose(
                    now, request.region, rects, [c.dest for c in copies], poll.frame,
                    offered=server.supports(h264.H264), options=server.options,
                    pixel_format=server.pixel_format,
                )  # fmt: skip
            refresh: list[Rect] = []
            if video is not None and self._h264 is not None:
                # The video's region first, as one H.264 picture; then the rest as usual,
                # and lossy areas beside it that stayed still, losslessly (the screen is
                # never still for the refresh above while a video plays).
                rest = [part for r in rects for part in r.subtract(video)]
                still = self._h264.still_lossy(
                    now, self._lossy, video, request.region, rest, LOSSLESS_REFRESH_DELAY
                )
                self._lossy = [r for r in self._lossy if r not in still]
                refresh = [part for r in still for part in r.subtract(video)]
                rects = [video, *rest, *refresh]
            # Event-driven frames are kept with their X bytes clear (``_poll``).
            pending = server.begin_framebuffer_update(
                poll.frame, rects, copies, lossless=lossless, x_clear=self._event_fd is not None
            )
            if video is not None and self._h264 is not None:
                pending.encoder = self._h264.wrap(
                    pending.encoder, video, len(rects) - 1 - len(refresh), len(refresh)
                )
        step.pending, step.rects, step.copies = pending, rects, copies
        step.lossless, step.video = lossless, video is not None
        if encode_max is None or (video is None and sum(r.w * r.h for r in rects) <= encode_max):
            self._encode(pending)  # a failure ends the connection: the loop ends the update
            step.encoded = True
        return step

    def _encode(self, pending: PendingUpdate) -> None:
        """Worker thread: encode ``pending``. A large update is streamed: each band goes
        to the connection as soon as it is encoded (server.py, ``PendingUpdate.stream``),
        so the link carries the top of a full-screen change while the rest is encoded."""
        if not pending.streams or self._loop is None:
            pending.encode()
            return
        server, loop = self._server, self._loop
        assert server is not None

        def emit(data: bytes) -> None:
            with self._server_lock:
                server.stream_part(data)
            # The loop is gone when the connection ended meanwhile: nothing to send to.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._flush_soon)

        pending.stream(emit)

    def _flush_soon(self) -> None:
        """Loop: send what a streamed update queued so far (one flusher at a time; it
        goes round again while more is queued)."""
        self._flush_more = True
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_queued(), name="rfb-stream")

    async def _flush_queued(self) -> None:
        try:
            while self._flush_more:
                self._flush_more = False
                await self._flush()
        except Exception as exc:
            # The connection is gone: the updater's own flush at the update's end meets
            # the same error and ends the service; this is not a second report of it.
            logger.debug("rfb streamed part not sent: %s", type(exc).__name__)

    def _grab_damage(self, regions: list[Rect]) -> list[Copy] | None:
        """Worker thread: capture the damaged rectangles into ``_previous``, add what
        really changed to the damage, and return the moves found in it (vertical, else
        sideways, and moved windows); None when the screen must be grabbed whole (its
        size changed)."""
        frame = self._previous
        assert frame is not None
        h, w = frame.shape[:2]
        bounds = Rect(0, 0, w, h)
        rects = [c for r in regions if (c := bounds.intersect(r)) is not None]
        if len(rects) > MAX_GRAB_RECTS:
            box = rects[0]
            for r in rects[1:]:
                box = box.union(r)
            rects = [box]
        if not rects:
            return []
        # Views of the capture's shared memory where it offers them (X11): each part
        # is compared and its changed rows copied into ``frame`` below, before any
        # other grab, so the pixels are not copied out of the segment first.
        shared = getattr(self._capture, "grab_rects_shared", None)
        grab = shared if callable(shared) else self._capture.grab_rects  # type: ignore[attr-defined]
        parts = grab(rects)
        if parts is None:
            return None
        # The previous frame's X bytes are clear (``_poll``, and every block copied in
        # below), so whole words compare and hash without masked copies.
        news = [_clear_x(part) for part in parts]
        copies: list[Copy] = []
        self._lossy_copies = []
        take_moves = getattr(self._capture, "take_moves", None)
        moves = take_moves() if callable(take_moves) else []
        if not moves and _short_path_may_fit(rects) and self._small_damage(frame, rects, news):
            return copies
        # Windows moved (the X server says where from). Where the window's new place was
        # grabbed whole (in one block or several), it is checked at once against its old
        # pixels in the frame, and a move that holds goes out as a copy: the blocks it
        # covers are then not searched for scrolls (``window_moves``). Elsewhere its old
        # pixels are kept, to check once the new ones are in.
        moved_windows = []
        window_moves: list[Rect] = []
        for src, dest in moves:
            if bounds.intersect(src) != src or bounds.intersect(dest) != dest:
                continue
            old_window = _words(frame[src.y : src.y + src.h, src.x : src.x + src.w])
            if not _covers(rects, dest):
                moved_windows.append((src, dest, old_window.copy()))
                continue
            if self._copy_allowed(src, dest, copies) and all(
                np.array_equal(_words(_within(new, r, c)), _within(old_window, dest, c))
                for r, new in zip(rects, news, strict=True)
                if (c := r.intersect(dest)) is not None
            ):
                self._add_copy(src, dest, copies)
                window_moves.append(dest)
        # Windows mapped or unmapped (a menu, a tooltip, a dialog): damage within one of
        # them is that window or what it covered, not a scroll: no copy is searched.
        recently_shown = getattr(self._capture, "recently_shown", None)
        shown: list[Rect] = recently_shown() if callable(recently_shown) else []
        # Diagonal moves: searched after the loop below, which overwrites the old
        # pixels. The old rows of what changed are kept aside as it goes, until a copy
        # is found (then no diagonal search runs: a scroll, a moved window), and the
        # area's old pixels are put together only when the search runs. With one block
        # (a picture panned in its window), its new rows are copied in only after the
        # search instead, which then compares the frame with the grab: nothing is kept.
        area = rects[0]
        for r in rects[1:]:
            area = area.union(r)
        motion = (
            self.polls >= self._motion_rest_until
            and MOTION_MIN_AREA <= area.w * area.h <= MOTION_MAX_AREA
            and not any(s.intersect(area) == area for s in shown)
        )
        kept_old: list[tuple[int, int, npt.NDArray[np.uint32]]] = []  # x, y, old rows
        defer = motion and len(rects) == 1 and not moved_windows and not window_moves
        deferred: tuple[int, int] | None = None  # rows of the one block to copy in
        changed: list[Rect] = []
        moved_before, self._moved_in = self._moved_in, []
        panned_before, self._panned_in = self._panned_in, []
        for r, new in zip(rects, news, strict=True):
            old = frame[r.y : r.y + r.h, r.x : r.x + r.w]
            if any(d.intersect(r) == r for d in window_moves):
                # Wholly within a moved window's copy: its pixels are the copy's.
                old[:] = new
                self._forget_hashes(r)
                continue
            old_v, new_v = _words(old), _words(new)
            changed_span = _changed_span(old_v, new_v)
            if changed_span is None:
                continue
            y0, y1 = changed_span
            columns = None
            if y1 - y0 >= SCROLL_MIN_ROWS and r.w >= SCROLL_MIN_COLS:
                # Columns at a side of the block that did not change (a page's fixed
                # sidebar beside what scrolled): the block is what changed between them,
                # so a scroll's rows match there. Not narrower than a scroll is searched
                # in (a terminal's short lines beside blank columns keep the width).
                columns = _changed_columns(old_v[y0:y1], new_v[y0:y1])
                if columns is not None and columns[1] - columns[0] < SCROLL_MIN_COLS:
                    columns = None
                if columns is not None:
                    cx0, cx1 = columns
                    r = Rect(r.x + cx0, r.y, cx1 - cx0, r.h)
                    old, new = old[:, cx0:cx1], new[:, cx0:cx1]
                    old_v, new_v = old_v[:, cx0:cx1], new_v[:, cx0:cx1]
            # What changed, per pixel of rows y0..y1 of the block: a scroll compares only
            # the rows outside its copy (most of the block is not compared twice: the
            # copy is checked exactly where it is found); anything else, every row.
            diff = np.zeros((y1 - y0, r.w), dtype=bool)
            moved = None
            span = Rect(r.x, r.y + y0, r.w, y1 - y0)  # the rows copied in below
            new_h = None
            searched = y1 - y0 >= SCROLL_MIN_ROWS and r.w >= SCROLL_MIN_COLS
            if searched and window_moves:
                # Mostly a moved window's copy: the rest is what it uncovered.
                covered = sum(c.w * c.h for d in window_moves if (c := d.intersect(span)))
                searched = 2 * covered < span.w * span.h
            diffed = False
            if searched and any(s.intersect(span) for s in shown):
                # What changed lies in a window just mapped or unmapped (its widgets
                # redrawn beside it are the same pixels): no copy to look for.
                np.not_equal(old_v[y0:y1], new_v[y0:y1], out=diff)
                diffed = True
                cols = np.flatnonzero(diff.any(axis=0))
                box = Rect(r.x + int(cols[0]), span.y, int(cols[-1]) + 1 - int(cols[0]), span.h)
                searched = not any(s.intersect(box) == box for s in shown)
            if searched and motion and any(span.intersect(p) for p in panned_before):
                # Panned both ways last time (a map dragged about): the diagonal search
                # below finds the next step, and any straight one; the vertical and
                # sideways searches would look at it in vain first.
                searched = False
            # A block that moved last time (a scroll goes on) is searched without a look,
            # and first tried at the shift it moved by, twice that and half that (one
            # and two steps of a scroll in one update, in either order).
            probes = None
            before = [dy for m, dy in moved_before if span.intersect(m)]
            if searched and not before:
                probes = _probes(old_v[y0:y1], new_v[y0:y1])
            shifts = [
                s
                for dy in before
                if dy is not None
                for s in (dy, 2 * dy, dy // 2 if dy % 2 == 0 else 0)
                if s
            ]
            if searched and shifts:
                moved = _predicted_copy(old_v[y0:y1], new_v[y0:y1], list(dict.fromkeys(shifts)))
            if searched and moved is None and _may_scroll(old_v[y0:y1], probes):
                # The damaged width, not just the changed columns: a scroll moves whole
                # lines, most of whose pixels may be the same before and after.
                new_h = _row_hashes(new_v[y0:y1])
                old_h = self._hashes_kept(frame, span)
                moved = _find_vertical_copy(old_v[y0:y1], new_v[y0:y1], old_h, new_h)
            fixes: list[Rect] = []
            if moved is not None:
                diffed = False  # the copy's steps below write their own rows of it
                a, b, dy = moved
                n = y1 - y0
                if a > 0:
                    diff[:a] = old_v[y0 : y0 + a] != new_v[y0 : y0 + a]
                if b < n:
                    diff[b:] = old_v[y0 + b : y1] != new_v[y0 + b : y1]
                a, b, fixes = _extend_copy(old_v[y0:y1], new_v[y0:y1], diff, a, b, dy)
                dest = Rect(r.x, r.y + y0 + a, r.w, b - a)
                src = Rect(r.x, r.y + y0 + a + dy, r.w, b - a)
                if not self._copy_allowed(src, dest, copies):
                    moved = None
                else:
                    self._add_copy(src, dest, copies)
                    self._moved_in.append((span, dy))
                    # The rows outside the copy (the exposed strip, and whatever else
                    # changed there: a page's header clock above a scrolled list) as
                    # what changed in them, not their bounding box.
                    for top, bottom in ((y0, y0 + a), (y0 + b, y1)):
                        changed.extend(changed_boxes(diff[top - y0 : bottom - y0], r.x, r.y + top))
                    # What the copy got wrong in the rows it grew over, after it.
                    changed.extend(Rect(r.x + f.x, r.y + y0 + f.y, f.w, f.h) for f in fixes)
            if moved is None:
                # Large enough to search, no vertical move: a sideways one?
                slide = searched and _may_slide(old_v[y0:y1], probes)
                if (
                    not diffed
                    and not slide
                    and columns is None  # narrowed: its edge columns changed by definition
                    and bool((old_v[y0:y1, 0] != new_v[y0:y1, 0]).any())
                    and bool((old_v[y0:y1, -1] != new_v[y0:y1, -1]).any())
                ):
                    # Changed in the first and the last column: those are the bounds,
                    # with no pixel-by-pixel comparison (a full-screen picture's 2 ms).
                    pieces = [Rect(r.x, r.y + y0, r.w, y1 - y0)]
                else:
                    if not diffed:
                        np.not_equal(old_v[y0:y1], new_v[y0:y1], out=diff)
                    # What changed, not its bounding box (``changed_boxes``).
                    pieces = changed_boxes(diff, r.x, r.y + y0)
                whole = pieces[0]
                for piece in pieces[1:]:
                    whole = whole.union(piece)
                side = None
                if slide:
                    rows = np.flatnonzero(diff.any(axis=1))
                    side = self._sideways(old_v[y0:y1], new_v[y0:y1], diff, rows)
                if side is not None:
                    box, dx, after = side
                    dest = Rect(r.x + box.x, r.y + y0 + box.y, box.w, box.h)
                    src = Rect(dest.x + dx, dest.y, dest.w, dest.h)
                    after = [Rect(r.x + a.x, r.y + y0 + a.y, a.w, a.h) for a in after]
                    if sum(a.w * a.h for a in after) >= whole.w * whole.h:
                        side = None  # saves no pixels: the changed area as it is
                    elif self._copy_allowed(src, dest, copies):
                        self._add_copy(src, dest, copies)
                        self._moved_in.append((span, None))
                        changed.extend(after)
                    else:
                        side = None
                if side is None:
                    changed.extend(pieces)
            if defer:
                deferred = y0, y1
            else:
                if motion and not copies:
                    kept_old.append((r.x, r.y + y0, old_v[y0:y1].copy()))
                old[y0:y1] = new[y0:y1]  # the rows outside are the same words already
            if new_h is not None:
                # These rows' hashes are the kept frame's now: the next scroll of the
                # same area hashes only its new pixels.
                self._kept_hashes = (frame, span, new_h)
            else:
                self._forget_hashes(span)
        for src, dest, pixels in moved_windows:
            now = frame[dest.y : dest.y + dest.h, dest.x : dest.x + dest.w]
            if not self._copy_allowed(src, dest, copies) or not np.array_equal(_words(now), pixels):
                continue  # covered, redrawn or overlapping another copy: pixels it is
            self._add_copy(src, dest, copies)
            window_moves.append(dest)
        for dest in window_moves:
            changed = [piece for c in changed for piece in c.subtract(dest)]
        if motion and not copies and sum(c.w * c.h for c in changed) >= MOTION_MIN_AREA:
            motion_new = _words(frame[area.y : area.y + area.h, area.x : area.x + area.w])
            if deferred is not None:  # one block: the frame still holds its old pixels
                motion_old, motion_new = motion_new, _words(news[0])
            else:
                # The area's old pixels: the new ones, with the old rows kept put back
                # (the first block's last where blocks overlap: it saw them first).
                motion_old = motion_new.copy()
                for x, y, old_rows in reversed(kept_old):
                    h, w = old_rows.shape
                    motion_old[y - area.y : y - area.y + h, x - area.x : x - area.x + w] = old_rows
            found = self._diagonal(area, motion_old, motion_new, changed, copies)
            if found:
                self._motion_misses = 0
            elif found is not None:
                self._motion_misses += 1
                if self._motion_misses >= MOTION_MISSES:
                    rest = min(MOTION_REST_MAX, 1 << (self._motion_misses - MOTION_MISSES))
                    self._motion_rest_until = self.polls + 1 + rest  # polls skipped
        if deferred is not None:
            y0, y1 = deferred
            r = rects[0]
            frame[r.y + y0 : r.y + y1, r.x : r.x + r.w] = news[0][y0:y1]
        self._add_damage(changed)
        return copies

    def _small_damage(
        self, frame: Frame, rects: list[Rect], news: list[npt.NDArray[np.uint8]]
    ) -> bool:
        """``_grab_damage`` for blocks no scroll search can use (``_short_path_may_fit``):
        each block's changed rows and columns found, and, when they are too few for a
        diagonal search (``SMALL_DAMAGE_AREA``) and, in a block a scroll could be
        searched in, scattered (``_scattered``), copied in and added to the damage. For
        unsearchable blocks, the same damage and frame as the general path (tested side
        by side); a small block's scattered change goes out as it is, where the general
        path might have found a copy of a few rows in it. False, with nothing changed,
        when the change is large enough to search: the general path then runs."""
        found = []  # (block, its new pixels, the boxes of what changed in it)
        for r, new in zip(rects, news, strict=True):
            old_v, new_v = _words(frame[r.y : r.y + r.h, r.x : r.x + r.w]), _words(new)
            if (
                r.w * r.h > SMALL_DAMAGE_BLOCK
                and _searchable(r)
                and not _sample_scattered(old_v, new_v)
            ):
                return False
            boxes = changed_boxes(old_v != new_v)
            if boxes and _searchable(r) and not _scattered(boxes):
                return False
            if boxes:
                found.append((r, new, boxes))
        if sum(b.w * b.h for _, _, boxes in found for b in boxes) >= SMALL_DAMAGE_AREA:
            return False
        self._moved_in, self._panned_in = [], []  # nothing moved this time
        for r, new, boxes in found:
            y0, y1 = min(b.y for b in boxes), max(b.y + b.h for b in boxes)
            frame[r.y + y0 : r.y + y1, r.x : r.x + r.w] = new[y0:y1]
            self._forget_hashes(Rect(r.x, r.y + y0, r.w, y1 - y0))
        self._add_damage(
            [Rect(r.x + b.x, r.y + b.y, b.w, b.h) for r, _, boxes in found for b in boxes]
        )
        return True

    def _forget_hashes(self, area: Rect) -> None:
        """The kept row hashes no longer hold where ``area`` was copied in."""
        kept = self._kept_hashes
        if kept is not None and kept[1].intersect(area) is not None:
            self._kept_hashes = None

    def _add_copy(self, src: Rect, dest: Rect, copies: list[Copy]) -> None:
        """A copy from ``src`` to ``dest`` goes out with this update."""
        copies.append(Copy(dest, src.x, src.y))
        if any(src.intersect(u) for u in self._lossy):
            # The viewer copies its JPEG approximation: refreshed losslessly with the
            # rest once the screen is still.
            self._lossy_copies.append(dest)

    def _diagonal(
        self,
        area: Rect,
        old: npt.NDArray[np.uint32],
        new: npt.NDArray[np.uint32],
        changed: list[Rect],
        copies: list[Copy],
    ) -> bool | None:
        """Worker thread: a block of ``area`` that moved diagonally (or any way the
        searches above did not find), searched in what is left to send (``changed``,
        replaced in place by what is left after the copy, which goes into ``copies``);
        ``old`` and ``new``: the area's words before and after this damage step.
        Whether a moved block of at least ``MOTION_WORTH`` pixels was found (even one
        that could not be sent as a copy; a smaller one is sent but does not count);
        None when what is left to send was too small to search."""
        union = changed[0]
        for c in changed[1:]:
            union = union.union(c)
        box = area.intersect(union)
        if box is None or box.w * box.h < MOTION_MIN_AREA:
            return None
        move = find_moved_block(old, new, Rect(box.x - area.x, box.y - area.y, box.w, box.h))
        if move is None:
            return False
        dest = Rect(move.dest.x + area.x, move.dest.y + area.y, move.dest.w, move.dest.h)
        src = Rect(dest.x + move.dx, dest.y + move.dy, dest.w, dest.h)
        worth = dest.w * dest.h >= MOTION_WORTH
        if not self._copy_allowed(src, dest, copies):
            return worth  # read from an area the viewer has not received yet
        self._add_copy(src, dest, copies)
        if move.dx and move.dy:
            self._panned_in.append(dest)
        changed[:] = [piece for c in changed for piece in c.subtract(dest)]
        return worth

    def _copy_allowed(self, src: Rect, dest: Rect, copies: list[Copy]) -> bool:
        """Whether a copy from ``src`` to ``dest`` may go out: not from an area whose
        latest change the viewer has not received yet, and not reading or writing where
        another copy of this update writes or reads."""
        return not any(src.intersect(u) for u in self._damage) and not any(
            src.intersect(c.dest) or dest.intersect(Rect(c.src_x, c.src_y, c.dest.w, c.dest.h))
            for c in copies
        )

    @staticmethod
    def _sideways(
        old: npt.NDArray[np.uint32],
        new: npt.NDArray[np.uint32],
        diff: npt.NDArray[np.bool_],
        changed: npt.NDArray[np.intp],
    ) -> tuple[Rect, int, list[Rect]] | None:
        """A sideways move in a changed block (words, the change mask, its changed rows):
        the copy's destination and dx, and the pixels to send after it (the changed
        areas beside, above and below it, and what it gets wrong in the rows it grew
        over), all in block coordinates; None when nothing moved sideways."""
        found = _find_horizontal_copy(old, new, changed)
        if found is None:
            return None
        top, bottom, left, right, dx = found
        # Grown over rows that are nearly right (a cursor line, a thumb), as vertically.
        top, bottom, fixes = _extend_copy(
            old[:, left + dx : right + dx], new[:, left:right], diff[:, left:right],
            top, bottom, 0,
        )  # fmt: skip
        pixels = [Rect(left + f.x, f.y, f.w, f.h) for f in fixes]
        h, w = diff.shape
        for y, y1, x, x1 in (
            (0, top, 0, w),  # above
            (bottom, h, 0, w),  # below
            (top, bottom, 0, left),  # left of it
            (top, bottom, right, w),  # right of it
        ):
            if y < y1 and x < x1:  # what changed there, apart where it lies apart
                pixels.extend(changed_boxes(diff[y:y1, x:x1], x, y))
        return Rect(left, top, right - left, bottom - top), dx, pixels

    def _hashes_kept(self, frame: Frame, span: Rect) -> list[int] | None:
        """The row hashes of ``span`` in the kept ``frame`` if the last scroll search
        hashed those rows (same columns) and nothing was copied over them since."""
        kept = self._kept_hashes
        if kept is None or kept[0] is not frame:
            return None
        area, hashes = kept[1], kept[2]
        if (area.x, area.w) != (span.x, span.w) or area.intersect(span) != span:
            return None
        return hashes[span.y - area.y : span.y - area.y + span.h]

    def _add_damage(self, rects: Sequence[RectLike]) -> None:
        bounds = Rect(0, 0, *self._previous.shape[1::-1]) if self._previous is not None else None
        for r in rects:
            clipped = bounds.intersect(r) if bounds is not None else Rect(r.x, r.y, r.w, r.h)
            if clipped is not None and not any(
                d.intersect(clipped) == clipped for d in self._damage
            ):
                self._damage.append(clipped)
        if len(self._damage) > 256:  # keep the bookkeeping bounded: one bounding box
            box = self._damage[0]
            for d in self._damage[1:]:
                box = box.union(d)
            self._damage = [box]

    def _new_cursor(self) -> CursorImage | None:
        """Worker thread: the pointer shape if it changed and the viewer draws cursors."""
        server = self._server
        assert server is not None
        if not server.supports(m.Encoding.CURSOR):
            return None
        cursor = self._capture.cursor()
        if cursor is None or cursor.serial == self._cursor_serial:
            return None
        self._cursor_serial = cursor.serial
        return cursor
