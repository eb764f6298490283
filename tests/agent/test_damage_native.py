"""The damage step's compares in the compiled core (enkaku.native) give exactly the numpy
reference's results: the changed rows and columns of a block, the boxes of what changed
(``changed_boxes``), the sampled rows, and row hashes the scroll search can vote with.

The numpy code (``enkaku.agent.rfbservice``) is the reference and the fallback; the
library is this checkout's or one built from the same source (tests/protocol/rfb/
test_native.py's fixtures), never numpy tested against itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from enkaku import native
from enkaku.agent import rfbservice as rs
from tests.protocol.rfb.decoders import sample_image
from tests.protocol.rfb.test_native import built, with_lib  # noqa: F401  (fixtures)

needs_lib = pytest.mark.usefixtures("with_lib")


def _numpy(monkeypatch: pytest.MonkeyPatch, call, *args):  # type: ignore[no-untyped-def]
    """``call(*args)`` with the library turned off."""
    lib = native.LIB
    monkeypatch.setattr(native, "LIB", None)
    try:
        return call(*args)
    finally:
        monkeypatch.setattr(native, "LIB", lib)


def _blocks(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An old and a new block of words: a few patches changed (some pixels of them,
    some everywhere), now and then sparse pixels, dots in a grid or a thin line across
    every row, and
    now and then a view that starts at a column of a wider block (the damage step's
    narrowed blocks)."""
    grid = rng.random() < 0.2
    h, w = int(rng.integers(300, 500) if grid else rng.integers(1, 160)), int(rng.integers(1, 400))
    old = rng.integers(0, 4, (h, w), dtype=np.uint32)
    new = old.copy()
    for _ in range(int(rng.integers(0, 8))):
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        ph, pw = min(int(rng.integers(1, 40)), h - y), min(int(rng.integers(1, 160)), w - x)
        if rng.random() < 0.5:
            new[y : y + ph, x : x + pw] += 9
        else:
            new[y : y + ph, x : x + pw] += rng.integers(0, 2, (ph, pw), dtype=np.uint32)
    if rng.random() < 0.3:
        new[rng.random((h, w)) < rng.random() * 0.05] += 7
    if grid:  # dots further apart than a box joins: many boxes, many bands
        gy, gx = int(rng.integers(8, 30)), int(rng.integers(60, 90))
        new[int(rng.integers(0, gy)) :: gy, int(rng.integers(0, gx)) :: gx] += 5
    if rng.random() < 0.15:  # a chart's line: a pixel or two in every row
        rows = np.arange(h)
        new[rows, (rows * int(rng.integers(1, 5))) % w] += 3
    if rng.random() < 0.3 and w > 1:
        x0 = int(rng.integers(1, w))
        return old[:, x0:], new[:, x0:]
    return old, new


@needs_lib
def test_changed_boxes_match_the_numpy_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """3000 blocks: the same boxes as ``changed_boxes(old != new)``, including blocks
    of more bands than ``SPLIT_MAX`` (one box), of more boxes than that (the bands), of
    several boxes in a band, of one changed pixel, and of none."""
    rng = np.random.default_rng(10)
    kinds = {"none": 0, "one": 0, "split": 0, "bands": 0, "many": 0}
    for _ in range(3000):
        old, new = _blocks(rng)
        want = _numpy(monkeypatch, rs._boxes, old, new, 3, 5)
        assert want == rs.changed_boxes(old != new, 3, 5)
        assert rs._boxes(old, new, 3, 5) == want
        rows = np.flatnonzero((old != new).any(axis=1))
        bands = rs._runs(rows, rs.SPLIT_ROW_GAP) if rows.size else []
        if not want:
            kinds["none"] += 1
        elif len(bands) > rs.SPLIT_MAX:
            kinds["many"] += 1
        elif (
            len(want)
            == len(bands)
            < sum(
                len(rs._runs(np.flatnonzero((old[a:b] != new[a:b]).any(axis=0)), rs.SPLIT_COL_GAP))
                for a, b in bands
            )
        ):
            kinds["bands"] += 1  # more boxes than SPLIT_MAX: each band whole
        elif len(want) > len(bands):
            kinds["split"] += 1
        else:
            kinds["one"] += 1
    assert all(n >= 10 for n in kinds.values()), str(kinds)


@needs_lib
def test_changed_rows_and_columns_match_the_numpy_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first and last changed rows (``_changed_span``), the changed columns between
    them when a side is unchanged (``_changed_columns``: its rows' first one changed,
    as the damage step calls it) and the sampled rows' verdict (``_sample_scattered``)."""
    rng = np.random.default_rng(11)
    sides = 0
    for _ in range(3000):
        old, new = _blocks(rng)
        span = _numpy(monkeypatch, rs._changed_span, old, new)
        assert rs._changed_span(old, new) == span
        assert _numpy(monkeypatch, rs._sample_scattered, old, new) == rs._sample_scattered(old, new)
        if span is None:
            continue
        y0, y1 = span
        columns = _numpy(monkeypatch, rs._changed_columns, old[y0:y1], new[y0:y1])
        assert rs._changed_columns(old[y0:y1], new[y0:y1]) == columns
        sides += columns is not None
    assert sides >= 100


@needs_lib
def test_a_screen_and_its_scrolled_copy() -> None:
    """A UI-like screen with a part scrolled and a line drawn: the compiled compares
    agree with numpy on full-HD blocks too, and the scroll is found with the compiled
    row hashes (equal rows, equal hashes; none of the screen's distinct rows collide)."""
    old = rs._words(rs._clear_x(sample_image(1080, 1920, seed=5)))
    new = old.copy()
    new[200:900, 300:1500] = old[230:930, 300:1500]  # a list scrolled 30 rows
    new[50, 100:700] = 0x00FF0000  # a rule drawn above it
    assert rs._boxes(old, new) == rs.changed_boxes(old != new)
    hashes = rs._row_hashes(new)
    assert isinstance(hashes, np.ndarray)
    rows = {new[y].tobytes(): int(hashes[y]) for y in range(new.shape[0])}
    assert len(set(rows.values())) == len(rows)  # distinct rows, distinct hashes
    block_old, block_new = old[:, 300:1500], new[:, 300:1500]
    view = rs._row_hashes(block_new)  # rows of a view, where they lie
    assert list(view) == list(rs._row_hashes(np.ascontiguousarray(block_new)))
    assert rs._find_vertical_copy(block_old, block_new) == (200, 900, 30)


def test_without_the_library_the_same_scroll_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy fallback (CRC-32 per row) finds the same scroll."""
    monkeypatch.setattr(native, "LIB", None)
    old = rs._words(rs._clear_x(sample_image(600, 800, seed=6)))
    new = old.copy()
    new[100:500] = old[120:520]
    assert isinstance(rs._row_hashes(new), list)
    assert rs._find_vertical_copy(old, new) == (100, 500, 20)
