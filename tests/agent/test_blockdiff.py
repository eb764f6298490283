"""The damage step's look at a damaged block (enkaku.agent.blockdiff): the compiled core's
answers are numpy's, on blocks of every kind of change, and the kept frame ends the same.

numpy is the reference and the fallback; ``native_lib`` (tests/conftest.py) is this
checkout's library or one built from the same source, never numpy against itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from enkaku import native
from enkaku.agent import blockdiff
from enkaku.agent.blockdiff import (
    SIDE_MIN_COLS,
    SPLIT_COL_GAP,
    SPLIT_MAX,
    SPLIT_ROW_GAP,
    BlockDiff,
    changed_boxes,
)

FRAME_H, FRAME_W = 700, 1700


def _frame(rng: np.random.Generator) -> np.ndarray:
    """A kept frame: a few colours in blocks (a screen's flat areas), X bytes clear."""
    palette = rng.integers(0, 256, (6, 4), dtype=np.uint8)
    frame = palette[rng.integers(0, 6, (FRAME_H // 10 + 1, FRAME_W // 10 + 1))]
    frame = np.repeat(np.repeat(frame, 10, axis=0), 10, axis=1)[:FRAME_H, :FRAME_W].copy()
    frame[..., 3] = 0
    return frame


def _changed(kind: str, old: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The new grab of a block: ``old`` changed in one of the ways a screen changes, with
    junk in its X bytes (the damage step clears them: they are no change)."""
    new = old.copy()
    h, w = old.shape[:2]
    if kind == "one":
        new[rng.integers(h), rng.integers(w), 0] ^= 1
    elif kind == "sparse":
        mask = rng.random((h, w)) < 0.002
        new[mask, 1] ^= 0x40
    elif kind == "dense":
        new[..., :3] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    elif kind == "apart":  # a spinner and a bar far apart, a chart's lines at a side
        new[2:12, 5:20, 2] ^= 0x11
        new[h // 2 : h // 2 + 8, 30 : w // 3, 0] ^= 0x22
        new[h - 40 : h - 3, w - 90 : w - 1, 1] ^= 0x33
    elif kind == "bands":  # more bands than SPLIT_MAX: one box around all
        new[:: max(2, h // 30), ::7, 0] ^= 1
    elif kind == "columns":  # more boxes in a band than SPLIT_MAX: the bands
        new[5 : h - 5 : 40, :: max(1, w // 40), 2] ^= 1
    elif kind == "edges":  # the first and the last column
        new[h // 3, 0, 0] ^= 1
        new[2 * h // 3, w - 1, 0] ^= 1
    elif kind == "gaps":  # changes exactly a gap apart (joined) and one more (apart)
        for row, col in ((3, 5), (3, 5 + SPLIT_COL_GAP), (3, 6 + 2 * SPLIT_COL_GAP)):
            for dy in (0, SPLIT_ROW_GAP, 2 * SPLIT_ROW_GAP + 1):
                if row + dy < h and col < w:
                    new[row + dy, col, 0] ^= 1
    elif kind == "rows":  # SPLIT_MAX + 1 rows a gap apart: one band of two boxes
        for i in range(SPLIT_MAX + 1):
            for col in (3, 5 + SPLIT_COL_GAP):
                if 2 + i * SPLIT_ROW_GAP < h and col < w:
                    new[2 + i * SPLIT_ROW_GAP, col, 1] ^= 1
    elif kind == "sidebar":  # a page beside a still sidebar
        new[:, SIDE_MIN_COLS + 9 :, :3] = np.roll(old[:, SIDE_MIN_COLS + 9 :, :3], 13, axis=0)
    new[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)
    return new


KINDS = ["none", "one", "sparse", "dense", "apart", "bands", "columns", "edges", "gaps", "rows"]
KINDS.append("sidebar")
SHAPES = [(1, 1), (1, 300), (300, 1), (17, 33), (120, 700), (480, 1214), (640, 1600)]


def _answers(old: np.ndarray, new: np.ndarray) -> dict[str, object]:
    """What a BlockDiff says of the block, and the kept frame after its copy-in."""
    look = BlockDiff(old, new)
    span = look.span()
    got: dict[str, object] = {"span": span, "native": look.native}
    if span is not None:
        y0, y1 = span
        got["columns"] = look.columns(y0, y1)
        got["edges"] = look.edges_changed(y0, y1)
        got["boxes"] = look.boxes(y0, y1)
        got["all boxes"] = look.boxes(0, look.h)
        got["part boxes"] = look.boxes(y0, (y0 + y1 + 1) // 2)
        look.copy_in(y0, y1)
    got["new"] = look.new.copy()
    return got


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_the_compiled_look_is_numpys(native_lib, monkeypatch, kind, shape) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(abs(hash((kind, shape))) % 2**32)
    h, w = shape
    y, x = int(rng.integers(0, FRAME_H - h + 1)), int(rng.integers(0, FRAME_W - w + 1))
    results, frames = [], []
    for lib in (native_lib, None):
        monkeypatch.setattr(native, "LIB", lib)
        frame = _frame(np.random.default_rng(5))
        old = frame[y : y + h, x : x + w]  # a view into the kept frame, as in the agent
        new = _changed(kind, old, np.random.default_rng(9))
        results.append(_answers(old, new))
        frames.append(frame)
    compiled, reference = results
    assert compiled.pop("native") is True and reference.pop("native") is False
    for key in reference:
        assert (
            np.array_equal(compiled[key], reference[key])
            if key == "new"
            else (compiled[key] == reference[key])
        ), key
    assert np.array_equal(frames[0], frames[1])
    want = _frame(np.random.default_rng(5))
    block = want[y : y + h, x : x + w]
    block[:] = _changed(kind, block, np.random.default_rng(9))
    want[..., 3] = 0
    assert np.array_equal(frames[0], want), "the kept frame is not the new screen"
    before = _frame(np.random.default_rng(5))[y : y + h, x : x + w]
    changed = (before[..., :3] != want[y : y + h, x : x + w, :3]).any(axis=2)
    assert (compiled["span"] is None) == (not changed.any())


def test_boxes_cover_every_change_and_split_far_apart_ones(native_lib, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The compiled boxes on the 'apart' block: the three changes, each its own box."""
    monkeypatch.setattr(native, "LIB", native_lib)
    frame = _frame(np.random.default_rng(3))
    old = frame[100:580, 200:1414]
    new = _changed("apart", old, np.random.default_rng(4))
    look = BlockDiff(old, new)
    assert look.native
    boxes = look.boxes(*look.span())  # type: ignore[misc]
    assert len(boxes) == 3 and len(boxes) <= SPLIT_MAX
    mask = old.view("<u4")[..., 0] != (new.view("<u4")[..., 0] & 0xFFFFFF)
    covered = np.zeros_like(mask)
    y0 = look.span()[0]  # type: ignore[index]
    for b in boxes:
        covered[y0 + b.y : y0 + b.y + b.h, b.x : b.x + b.w] = True
    assert not (mask & ~covered).any()
    assert boxes == changed_boxes(mask[y0:])


def test_a_read_only_grab_is_looked_at_in_a_copy(native_lib, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A grab the core cannot clear in place (read-only) goes the numpy way: its X
    bytes cleared in a copy, the caller's array left as it was."""
    monkeypatch.setattr(native, "LIB", native_lib)
    frame = _frame(np.random.default_rng(1))
    old = frame[10:60, 10:90]
    new = _changed("one", old, np.random.default_rng(2))
    new.flags.writeable = False
    before = new.copy()
    look = BlockDiff(old, new)
    assert not look.native
    assert np.array_equal(new, before)
    assert not look.new[..., 3].any()
    assert look.span() is not None


def test_the_library_is_the_one_with_the_damage_functions(native_lib) -> None:  # type: ignore[no-untyped-def]
    """The loaded core is of the version that has the damage step's functions."""
    assert native_lib.enkaku_rfbcore_version() == native.VERSION >= 4
    assert blockdiff.native is native
