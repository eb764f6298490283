"""Find a block of the screen that moved diagonally: one CopyRect instead of its pixels.

On X11 the window manager's moves come from the X server (``take_moves()``); on
Wayland (wlr-screencopy, GNOME's screen cast) nothing says that a window moved, and a
window dragged with both dx and dy non-zero is neither a vertical nor a sideways
scroll: the damage step would send all of its pixels every frame. ``find_moved_block``
looks for such a move in a changed area from the pixels alone, with numpy only.

How (all on 32-bit words, one per pixel, X bytes cleared as the damage step keeps them):

1. **Anchors.** ``ANCHOR_ROWS`` rows spread over the changed box are sampled and cut
   in ``ANCHOR_SPLITS`` parts; each part gives its ``ANCHOR_LEN``-pixel run of ``new``
   with the most colour changes, if it has at least ``ANCHOR_MIN_EDGES`` (a run of one
   colour, or of a soft gradient, would match everywhere: it never votes) and differs
   from ``old`` there. They are tried nearest the middle of the box first, the box's
   quarters in turn (``_slot_order``).
2. **Search.** Each anchor run is looked for in ``old`` within ``max_shift`` pixels of
   its place: the region is compared with the run's least common pixel (in a photo,
   one compare leaves a handful of places; two-colour text needs a few more pixels),
   then the places left are checked against the whole run. An anchor found at more
   than ``MAX_MATCHES`` places (a repeated pattern) does not vote; each place of the
   others votes for its shift (dx, dy).
3. **Give up fast.** A new picture, a video frame or a dialog has anchors found
   nowhere (or, on a new page of text, at too many places): after ``GIVE_UP`` such
   anchors (two more for each anchor found at exactly one place) the search stops, at
   the cost of the sampling and those compares (about 0.5 ms for an 800×600 box of a
   1920×1080 screen, ``python -m benchmarks.motion``). A flat change has no anchors at
   all (about 40 µs).
4. **Verify.** When a shift has two votes (every shift with as many: text repeats, and
   the same line further down matches too), it is first tried in a patch about its
   anchors (a word found again elsewhere has no block about it), then checked pixel
   for pixel over the box: the largest rectangle around a voting anchor where ``new``
   equals ``old`` shifted, grown rows first and columns first. A copy that leaves
   little to send is taken at once; otherwise the search goes on and the largest copy
   found wins (the best single votes are checked at the end: a small block, one
   anchor). At most ``MAX_VERIFY`` shifts are checked.

The copy is exact by construction (every pixel of ``dest`` compared), ``(0, 0)`` is
never a move, and ``rest`` lists what is left to send: the changed pixels of the box
beside the copy, fewer than the changed box whole.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from enkaku.protocol.geometry import Rect

#: Length of an anchor run (pixels of one row) and the fewest colour changes it must hold.
ANCHOR_LEN = 24
ANCHOR_MIN_EDGES = 4
#: The fewest pixels of an anchor run that must differ from the previous frame.
ANCHOR_MIN_CHANGED = 3
#: Rows of the changed box sampled for anchors.
ANCHOR_ROWS = 24
#: Parts of each sampled row that give one anchor each (their most textured run).
ANCHOR_SPLITS = 4
#: Anchors searched at most.
MAX_ANCHORS = 10
#: An anchor found at more places than this in the searched region does not vote (each
#: place of one found at fewer votes for its shift: text repeats lines and words).
MAX_MATCHES = 16
#: Places an anchor may still have after the compares of its pixels with the whole
#: searched region (at most ``MAX_PIVOTS`` of them); beyond, it is skipped (too
#: common to tell anything).
MAX_CANDIDATES = 4096
MAX_PIVOTS = 6
#: Anchors found nowhere after which the search gives up (no move: a new picture).
GIVE_UP = 3
#: Shifts with as many votes as the best checked at most at a time (text repeats
#: itself), and shifts checked at most in all (each check compares the whole box).
MAX_TIES = 3
MAX_VERIFY = 4
#: Anchors searched at most once a copy was found that leaves much to send (a window
#: dragged far: the place it left; or part of a page of text that repeats itself).
MORE_AFTER_FOUND = 2
#: The smallest copy worth finding (pixels, and rows and columns).
MIN_AREA = 32 * 32
MIN_SIDE = 16
#: The side of the patch about an anchor where a shift is tried first (``_plausible``),
#: and the most places of an anchor tried so before they vote.
_PATCH = 96
MAX_PLAUSIBLE = 2
#: How far a block may have moved, in each direction.
MAX_SHIFT = 256


@dataclass(frozen=True, slots=True)
class Move:
    """``new`` at ``dest`` equals ``old`` at ``dest`` moved by (dx, dy), pixel for pixel:
    a CopyRect from ``src``. ``rest``: the changed areas of the box the copy does not
    cover (bounding boxes of what differs, in frame coordinates), to send as pixels."""

    dest: Rect
    dx: int
    dy: int
    rest: list[Rect] = field(default_factory=list)

    @property
    def src(self) -> Rect:
        return Rect(self.dest.x + self.dx, self.dest.y + self.dy, self.dest.w, self.dest.h)

    @property
    def pixels_left(self) -> int:
        return sum(r.w * r.h for r in self.rest)


@dataclass(slots=True)
class _Anchor:
    x: int
    y: int
    run: npt.NDArray[np.uint32]
    #: Its sampled row across the box: how common each of its pixels is, roughly.
    row: npt.NDArray[np.uint32]
    #: Shifts ``_plausible`` already said yes to.
    plausible: set[tuple[int, int]] = field(default_factory=set)


def find_moved_block(
    old: npt.NDArray[np.uint32],
    new: npt.NDArray[np.uint32],
    box: Rect,
    *,
    max_shift: int = MAX_SHIFT,
) -> Move | None:
    """The largest block of ``box`` in ``new`` that is a copy of ``old`` moved by some
    (dx, dy) other than (0, 0), or None.

    ``old``, ``new``: (h, w) words of the previous and the current frame (same shape;
    the whole screen, or any part of it holding the box and where the block came
    from); ``box``: the bounding box of the change (in those arrays' coordinates);
    ``max_shift``: how far the block may have come from, in x and in y.
    """
    if old.shape != new.shape or old.ndim != 2:
        raise ValueError("old and new must be (h, w) arrays of the same shape")
    height, width = new.shape
    clipped = Rect(0, 0, width, height).intersect(box)
    if clipped is None or clipped.w < max(ANCHOR_LEN, MIN_SIDE) or clipped.h < MIN_SIDE:
        return None
    box = clipped
    anchors = _anchors(old, new, box)
    votes: Counter[tuple[int, int]] = Counter()
    voters: dict[tuple[int, int], list[_Anchor]] = {}
    tried: set[tuple[int, int]] = set()
    misses = unique = 0
    found: Move | None = None
    after = 0  # anchors searched since a copy was found
    for anchor in anchors:
        if found is not None:
            after += 1
            if after > MORE_AFTER_FOUND:
                return found
        shifts = _search(old, anchor, max_shift)
        if shifts and len(shifts) <= MAX_PLAUSIBLE:
            # A run found at one or two places: a chance match (a word of a new page
            # found elsewhere) has no block about it, and must not keep the search on.
            shifts = [s for s in shifts if _plausible(old, new, box, s, anchor)]
        if shifts is None or not shifts or len(shifts) > MAX_MATCHES:
            # Found nowhere (a new picture), or too common to tell (repeated text): the
            # work is spent either way. Give up after ``GIVE_UP`` of them, and two more
            # for each anchor found at one place only (a window dragged far has only
            # part of the box; a word found again elsewhere on a new page does not
            # count).
            misses += 1
            if found is None and misses >= GIVE_UP + 2 * unique:
                return None
            continue
        unique += len(shifts) == 1
        for shift in shifts:
            votes[shift] += 1
            voters.setdefault(shift, []).append(anchor)
        n = votes.most_common(1)[0][1]
        if n >= 2:
            # Every shift with as many votes: text repeats (the same line further down
            # matches too), and the real move is the one that copies the most.
            move = _largest(old, new, box, [s for s, c in votes.items() if c == n], voters, tried)
            found = _larger(found, move)
            if found is not None and 4 * found.pixels_left <= box.area:
                return found  # little is left: no other shift could copy much more
        if len(tried) >= MAX_VERIFY:
            return found
    # The best single votes too (a small block, one anchor), then the largest copy.
    return _larger(
        found, _largest(old, new, box, [s for s, _ in votes.most_common(2)], voters, tried)
    )


def _larger(a: Move | None, b: Move | None) -> Move | None:
    if a is None or (b is not None and b.dest.area > a.dest.area):
        return b
    return a


def _largest(
    old: npt.NDArray[np.uint32],
    new: npt.NDArray[np.uint32],
    box: Rect,
    shifts: list[tuple[int, int]],
    voters: dict[tuple[int, int], list[_Anchor]],
    tried: set[tuple[int, int]],
) -> Move | None:
    """The copy with the largest destination among ``shifts`` not tried yet (at most
    ``MAX_TIES`` of them are checked), or None; they count as tried after."""
    best: Move | None = None
    budget = min(MAX_TIES, MAX_VERIFY - len(tried))
    for shift in [s for s in shifts if s not in tried][: max(0, budget)]:
        tried.add(shift)
        best = _larger(best, _verify(old, new, box, shift, voters[shift]))
    return best


def _anchors(old: npt.NDArray[np.uint32], new: npt.NDArray[np.uint32], box: Rect) -> list[_Anchor]:
    """Textured changed runs of ``new`` in sampled rows of ``box``, in the order of
    ``_slot_order``: per sampled row, the run with the most colour changes in each
    part of the row (one cumulative sum over the rows), if it has enough of them and
    differs from the previous frame there."""
    n = min(ANCHOR_ROWS, box.h)
    ys = box.y + ((np.arange(n) + 0.5) * box.h / n).astype(np.intp)
    x0, x1 = box.x, box.x + box.w
    rows = new[ys, x0:x1]  # (n, w) copies: small
    length = ANCHOR_LEN
    runs = box.w - length + 1
    if runs < ANCHOR_SPLITS:
        return []
    changes = np.zeros(rows.shape, dtype=np.bool_)  # [:, x]: pixel x differs from x-1
    np.not_equal(rows[:, 1:], rows[:, :-1], out=changes[:, 1:])
    if np.count_nonzero(changes) < ANCHOR_MIN_EDGES:
        return []  # flat: nothing here can tell one place from another
    # edges[:, x]: colour changes up to pixel x (a running count), so a run x..x+L-1
    # holds edges[:, x+L-1] - edges[:, x] of them. One count over all the rows (a flat
    # cumulative sum is several times faster than one per row): differences within a
    # row are the same.
    edges = np.cumsum(changes.view(np.int8).ravel(), dtype=np.int32).reshape(rows.shape)
    # The best run of each part of each row (the last few starts left out so that the
    # parts are equal): (n, parts) scores, picked without a loop.
    part = runs // ANCHOR_SPLITS
    used = part * ANCHOR_SPLITS
    score = (edges[:, length - 1 : length - 1 + used] - edges[:, :used]).reshape(
        n, ANCHOR_SPLITS, part
    )
    best = np.argmax(score, axis=2).ravel()
    slots = np.arange(n * ANCHOR_SPLITS)
    value = score.reshape(n * ANCHOR_SPLITS, part)[slots, best]
    order = _slot_order(n)
    order = order[value[order] >= ANCHOR_MIN_EDGES]
    idx = order // ANCHOR_SPLITS
    xs = best[order] + (order % ANCHOR_SPLITS) * part
    cols = xs[:, None] + np.arange(length)
    runs_new = rows[idx[:, None], cols]
    # A run that did not change finds itself where it is: (0, 0), no vote. (Text that
    # moved still has most of its background where background was: a few will do.)
    runs_old = old[ys[idx][:, None], x0 + cols]
    moved = np.count_nonzero(runs_new != runs_old, axis=1) >= ANCHOR_MIN_CHANGED
    return [
        _Anchor(x0 + int(xs[j]), int(ys[idx[j]]), runs_new[j], rows[idx[j]])
        for j in np.flatnonzero(moved)[:MAX_ANCHORS].tolist()
    ]


@functools.lru_cache(maxsize=64)
def _slot_order(n: int) -> npt.NDArray[np.intp]:
    """The order in which to try the anchors of ``n`` sampled rows (``ANCHOR_SPLITS``
    parts each, slot ``row * ANCHOR_SPLITS + part``): nearest the middle of the box
    first (a block dragged a little covers the middle, while the strips it uncovered,
    which match nothing, lie along the edges), taking the quarters of the box in turn,
    so that something else that changed beside the move (which matches nothing either)
    spoils one anchor in four, not the first few."""
    ay = (np.arange(n) + 0.5) / n - 0.5
    ax = (np.arange(ANCHOR_SPLITS) + 0.5) / ANCHOR_SPLITS - 0.5
    dist = (np.abs(ay)[:, None] + np.abs(ax)[None, :]).ravel()
    quarter = ((ay >= 0)[:, None] * 2 + (ax >= 0)[None, :]).ravel()
    by_dist = np.argsort(dist, kind="stable")
    rank = np.empty_like(by_dist)
    for q in range(4):
        mine = by_dist[quarter[by_dist] == q]
        rank[mine] = np.arange(mine.size) * 4 + q
    order = np.argsort(rank, kind="stable")
    order.flags.writeable = False
    return order


def _search(
    old: npt.NDArray[np.uint32], anchor: _Anchor, max_shift: int
) -> list[tuple[int, int]] | None:
    """The shifts (dx, dy) that bring ``anchor`` onto a run of ``old`` with its pixels
    (other than 0, 0); None when the run's pixels are too common in ``old`` to look."""
    height, width = old.shape
    run = anchor.run
    length = run.size
    y0, y1 = max(0, anchor.y - max_shift), min(height, anchor.y + max_shift + 1)
    x0 = max(0, anchor.x - max_shift)
    x1 = min(width, anchor.x + max_shift + length)
    region = old[y0:y1, x0:x1]
    starts = region.shape[1] - length + 1
    if starts <= 0:
        return []
    # Compare the region with the run's pixels one at a time, least common in its row
    # first (one compare of the region when that pixel is rare in it, as in a photo or
    # antialiased text), until few places are left (two-colour text needs a few); then
    # those places with the next pixels, then with the whole run.
    common = np.count_nonzero(run[:, None] == anchor.row[None, :], axis=1)
    order = np.argsort(common, kind="stable").tolist()
    hits = region[:, order[0] : order[0] + starts] == run[order[0]]
    count = int(np.count_nonzero(hits))
    used = 1
    while count > MAX_CANDIDATES and used < MAX_PIVOTS:
        k = order[used]
        hits &= region[:, k : k + starts] == run[k]
        count = int(np.count_nonzero(hits))
        used += 1
    if count == 0:
        return []
    if count > MAX_CANDIDATES:
        return None
    # Where the run would start in the region (flat indices: a 2-d ``nonzero`` costs
    # a millisecond here however few the hits).
    rows, cols = np.divmod(np.flatnonzero(hits), starts)
    for k in order[used:]:
        if rows.size <= 64:
            break
        ok = region[rows, cols + k] == run[k]
        rows, cols = rows[ok], cols[ok]
    cand = region[rows[:, None], cols[:, None] + np.arange(length)]
    ok = (cand == run).all(axis=1)
    rows, cols = rows[ok], cols[ok]
    shifts = [
        (int(x0 + c) - anchor.x, int(y0 + r) - anchor.y)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
    ]
    return [s for s in shifts if s != (0, 0)]


def _run_around(mask: npt.ArrayLike, lo: int, hi: int) -> tuple[int, int]:
    """The run of True in a 1-d mask that holds lo..hi-1: (start, end); empty (lo, lo)
    when one of those is False (so that a rectangle grown from it is always exact)."""
    mask = np.asarray(mask, dtype=np.bool_)
    if not mask[lo:hi].all():
        return lo, lo
    off = np.flatnonzero(~mask)
    before = off[off < lo]
    after = off[off >= hi]
    return (int(before[-1]) + 1 if before.size else 0, int(after[0]) if after.size else mask.size)


def _grow(eq: npt.NDArray[np.bool_], x: int, y: int, length: int) -> tuple[int, int, int, int]:
    """The larger of two exact rectangles (top, bottom, left, right) around the run at
    x..x+length-1 of row y of ``eq``: rows first, then columns; columns first, then rows."""
    # Rows first: the exact run of row y, the rows exact over it, widened over those.
    left, right = _run_around(eq[y], x, x + length)
    top, bottom = _run_around(eq[:, left:right].all(axis=1), y, y + 1)
    left, right = _run_around(eq[top:bottom].all(axis=0), left, right)
    best = (top, bottom, left, right)
    if 2 * (bottom - top) * (right - left) >= eq.size:
        return best  # most of the box: enough
    # Columns first: the exact run of the anchor's columns, the columns exact over it.
    top, bottom = _run_around(eq[:, x : x + length].all(axis=1), y, y + 1)
    left, right = _run_around(eq[top:bottom].all(axis=0), x, x + length)
    top, bottom = _run_around(eq[:, left:right].all(axis=1), top, bottom)
    if (bottom - top) * (right - left) > (best[1] - best[0]) * (best[3] - best[2]):
        best = (top, bottom, left, right)
    return best


def diff_box(diff: npt.NDArray[np.bool_]) -> Rect | None:
    """The bounding box of the True cells of a (h, w) change mask, or None."""
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(diff.any(axis=0))
    y0, x0 = int(rows[0]), int(cols[0])
    return Rect(x0, y0, int(cols[-1]) + 1 - x0, int(rows[-1]) + 1 - y0)


def _plausible(
    old: npt.NDArray[np.uint32],
    new: npt.NDArray[np.uint32],
    area: Rect,
    shift: tuple[int, int],
    seed: _Anchor,
) -> bool:
    """Whether a block of at least ``MIN_AREA`` pixels moved by ``shift`` may hold the
    anchor ``seed``: the exact rectangle grown around it within a patch of
    ``_PATCH`` rows and columns about it is that large (a few thousand compares, where
    checking the whole box costs a compare of all of it)."""
    dx, dy = shift
    height, width = new.shape
    patch = area.intersect(
        Rect(seed.x - _PATCH // 2, seed.y - _PATCH // 2, _PATCH + seed.run.size, _PATCH)
    )
    if patch is not None:
        patch = patch.intersect(Rect(-dx, -dy, width, height))  # the source in the frame
    if patch is None or patch.intersect(Rect(seed.x, seed.y, seed.run.size, 1)) is None:
        return False
    px0, py0, px1, py1 = patch.x, patch.y, patch.x + patch.w, patch.y + patch.h
    eq = new[py0:py1, px0:px1] == old[py0 + dy : py1 + dy, px0 + dx : px1 + dx]
    top, bottom, left, right = _grow(eq, seed.x - px0, seed.y - py0, seed.run.size)
    if (bottom - top) * (right - left) < MIN_AREA:
        return False
    seed.plausible.add(shift)
    return True


def _verify(
    old: npt.NDArray[np.uint32],
    new: npt.NDArray[np.uint32],
    box: Rect,
    shift: tuple[int, int],
    seeds: list[_Anchor],
) -> Move | None:
    """The copy for ``shift``: the largest exact rectangle of ``box`` around one of
    ``seeds``, if it is large enough and saves pixels; None otherwise."""
    height, width = new.shape
    dx, dy = shift
    # The part of the box whose source lies inside the frame.
    area = box.intersect(Rect(-dx, -dy, width, height))
    if area is None or area.w < MIN_SIDE or area.h < MIN_SIDE:
        return None
    seeds = [s for s in seeds if area.intersect(Rect(s.x, s.y, s.run.size, 1))][:3]
    seeds = [s for s in seeds if shift in s.plausible or _plausible(old, new, area, shift, s)]
    if not seeds:
        return None  # a chance match (a word found elsewhere): no block around it
    ax0, ay0, ax1, ay1 = area.x, area.y, area.x + area.w, area.y + area.h
    eq = new[ay0:ay1, ax0:ax1] == old[ay0 + dy : ay1 + dy, ax0 + dx : ax1 + dx]
    best = (0, 0, 0, 0)
    for seed in seeds:
        x, y = seed.x - ax0, seed.y - ay0
        if not (0 <= y < area.h and x >= 0 and x + seed.run.size <= area.w):
            continue
        top, bottom, left, right = _grow(eq, x, y, seed.run.size)
        if (bottom - top) * (right - left) > (best[1] - best[0]) * (best[3] - best[2]):
            best = (top, bottom, left, right)
        if 2 * (best[1] - best[0]) * (best[3] - best[2]) >= eq.size:
            break  # most of the box: another seed would not find much more
    top, bottom, left, right = best
    if min(bottom - top, right - left) < MIN_SIDE or (bottom - top) * (right - left) < MIN_AREA:
        return None
    dest = Rect(ax0 + left, ay0 + top, right - left, bottom - top)
    # Worth a copy when it covers changed pixels (counted on every ``step``-th row):
    # then what is left to send, the changed pixels of the box beside it (disjoint
    # bands, each cut to what differs in it), is fewer than the changed box whole.
    dy0, dy1, dx0, dx1 = dest.y, dest.y + dest.h, dest.x, dest.x + dest.w
    step = 8
    covered = np.count_nonzero(new[dy0:dy1:step, dx0:dx1] != old[dy0:dy1:step, dx0:dx1])
    if covered * step < MIN_AREA:
        return None
    rest: list[Rect] = []
    for piece in box.subtract(dest):
        px0, py0, px1, py1 = piece.x, piece.y, piece.x + piece.w, piece.y + piece.h
        if (b := diff_box(new[py0:py1, px0:px1] != old[py0:py1, px0:px1])) is not None:
            rest.append(Rect(px0 + b.x, py0 + b.y, b.w, b.h))
    return Move(dest, dx, dy, rest)
