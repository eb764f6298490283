"""The diagonal move search (``enkaku.agent.motion``) on synthetic screens.

Every found move is checked the way a viewer would apply it: the previous screen, the
copy from ``src`` to ``dest``, then the new pixels of ``rest``, must give the new screen
exactly. Searches that must find nothing (a new picture, a flat change) return None;
where a copy would be correct but is not the point (scrolled text, repeated patterns),
whatever comes back must still be exact. Timings are printed, never asserted.
"""

from __future__ import annotations

import random
import time

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw, ImageFont

from enkaku.agent.motion import Move, find_moved_block
from enkaku.protocol.geometry import Rect

W, H = 1024, 768
Words = npt.NDArray[np.uint32]

LINES = [
    "def find_moved_block(old, new, box, *, max_shift=256) -> Move | None:",
    "    anchors = _anchors(old, new, box)  # textured runs of changed rows",
    "2026-11-30 03:12:38 INFO session 4821 connected from 192.0.2.17",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod",
]


def noise(rng: np.random.Generator, h: int, w: int) -> Words:
    return rng.integers(0, 1 << 24, (h, w), dtype=np.uint32)


def photo(rng: np.random.Generator, h: int, w: int) -> Words:
    """Smooth colour fields with fine noise, like a decoded photo."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), dtype=np.uint32)
    for shift in (16, 8, 0):
        a, b = rng.uniform(0.003, 0.03, 2)
        ch = 128 + 80 * np.sin(xx * a + yy * b + rng.uniform(0, 6)) + rng.normal(0, 5, (h, w))
        out |= np.clip(ch, 0, 255).astype(np.uint32) << np.uint32(shift)
    return out


def text(
    h: int,
    w: int,
    *,
    fg: int = 0x1E1E1E,
    bg: int = 0xFAFAFA,
    aa: bool = True,
    lines: list[str] = LINES,
) -> Words:
    """Lines of real text (Pillow's font; antialiased, or two colours with ``aa=False``)."""
    img = Image.new("RGB", (w, h), (bg >> 16, (bg >> 8) & 255, bg & 255))
    draw = ImageDraw.Draw(img)
    if not aa:
        draw.fontmode = "1"
    font = ImageFont.load_default(size=14)
    for i, y in enumerate(range(3, h - 16, 18)):
        draw.text(
            (4, y), lines[i % len(lines)], font=font, fill=(fg >> 16, (fg >> 8) & 255, fg & 255)
        )
    rgb = np.asarray(img).astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def place(screen: Words, block: Words, x: int, y: int) -> Rect:
    """``block`` drawn at x, y (clipped to the screen); its visible rectangle."""
    r = Rect(0, 0, screen.shape[1], screen.shape[0]).intersect(
        Rect(x, y, block.shape[1], block.shape[0])
    )
    assert r is not None
    screen[r.y : r.y + r.h, r.x : r.x + r.w] = block[
        r.y - y : r.y - y + r.h, r.x - x : r.x - x + r.w
    ]
    return r


def drag(
    background: Words, window: Words, at: tuple[int, int], by: tuple[int, int]
) -> tuple[Words, Words, Rect, Rect]:
    """Screens before and after ``window`` moved from ``at`` by ``by``: old, new, the
    changed box (both places), the window's new visible rectangle."""
    old, new = background.copy(), background.copy()
    before = place(old, window, *at)
    after = place(new, window, at[0] + by[0], at[1] + by[1])
    return old, new, before.union(after), after


def sl(r: Rect) -> tuple[slice, slice]:
    return slice(r.y, r.y + r.h), slice(r.x, r.x + r.w)


def check_exact(old: Words, new: Words, box: Rect, move: Move) -> None:
    """The copy is exact and, with ``rest``, turns the old screen into the new one
    (in ``box``: the tests change nothing outside it but where they say so)."""
    assert (move.dx, move.dy) != (0, 0)
    assert box.intersect(move.dest) == move.dest
    np.testing.assert_array_equal(new[sl(move.dest)], old[sl(move.src)])
    view = old.copy()
    view[sl(move.dest)] = old[sl(move.src)]  # what the viewer holds after the CopyRect
    for r in move.rest:
        assert box.intersect(r) == r
        assert r.intersect(move.dest) is None
        view[sl(r)] = new[sl(r)]
    np.testing.assert_array_equal(view[sl(box)], new[sl(box)])


def timed(old: Words, new: Words, box: Rect) -> Move | None:
    t = time.perf_counter()
    move = find_moved_block(old, new, box)
    print(f"find_moved_block {box.w}x{box.h}: {(time.perf_counter() - t) * 1e6:.0f} µs")
    return move


@pytest.mark.parametrize("by", [(37, 23), (-50, 31), (1, -1), (-200, -150), (130, 255)])
def test_a_window_dragged_diagonally_over_a_textured_background_is_one_copy(by) -> None:
    rng = np.random.default_rng(1)
    window = noise(rng, 240, 320)
    old, new, box, after = drag(photo(rng, H, W), window, (300, 260), by)
    move = timed(old, new, box)
    assert move is not None
    check_exact(old, new, box, move)
    # The wallpaper around it matches nothing: the copy is the window, nothing more.
    assert move.dest == after
    assert (move.dx, move.dy) == (-by[0], -by[1])
    # Left to send: only what the window uncovered.
    assert move.pixels_left <= 320 * 240 * 2 - after.w * after.h + 320 * 240 - after.w * after.h


@pytest.mark.parametrize("by", [(24, 40), (-61, -17), (90, -90)])
def test_a_window_dragged_over_a_flat_desktop_is_one_copy(by) -> None:
    rng = np.random.default_rng(2)
    window = photo(rng, 300, 400)
    old, new, box, after = drag(np.full((H, W), 0x2D5A8C, np.uint32), window, (250, 200), by)
    move = timed(old, new, box)
    assert move is not None
    check_exact(old, new, box, move)
    # The flat desktop moved with it matches too: the copy may hold more than the window.
    assert move.dest.intersect(after) == after
    assert (move.dx, move.dy) == (-by[0], -by[1])


@pytest.mark.parametrize("aa", [True, False], ids=["antialiased", "two-colour"])
def test_a_text_window_dragged_diagonally_is_one_copy(aa) -> None:
    window = text(360, 520, aa=aa)
    old, new, box, after = drag(np.full((H, W), 0x404040, np.uint32), window, (200, 150), (-33, 47))
    move = timed(old, new, box)
    assert move is not None
    check_exact(old, new, box, move)
    assert move.dest.intersect(after) == after


def test_a_window_dragged_past_the_screen_edge() -> None:
    rng = np.random.default_rng(3)
    window = noise(rng, 200, 300)
    old, new, box, after = drag(photo(rng, H, W), window, (60, 500), (-100, 40))
    assert after.x == 0 and after.w == 260  # partly off the screen now
    move = timed(old, new, box)
    assert move is not None
    check_exact(old, new, box, move)
    assert move.dest == after


def test_other_changes_beside_the_move_are_left_to_send() -> None:
    rng = np.random.default_rng(4)
    window = noise(rng, 260, 340)
    old, new, box, after = drag(photo(rng, H, W), window, (320, 240), (45, -35))
    # A clock redrawn and a progress bar grown beside it, in the same changed box.
    clock, bar = Rect(720, 150, 60, 20), Rect(300, 520, 200, 12)
    new[sl(clock)] = noise(rng, 20, 60)
    new[sl(bar)] = 0x00FF00
    box = box.union(clock).union(bar)
    move = timed(old, new, box)
    assert move is not None
    check_exact(old, new, box, move)
    assert move.dest == after


def test_a_window_whose_content_changed_while_moving_is_copied_where_it_did_not() -> None:
    rng = np.random.default_rng(5)
    window = noise(rng, 300, 400)
    old, new, box, after = drag(photo(rng, H, W), window, (200, 200), (30, 30))
    new[after.y + 100 : after.y + 140, after.x : after.x + after.w] = noise(rng, 40, after.w)
    move = timed(old, new, box)
    assert move is not None
    check_exact(old, new, box, move)
    assert move.dest.w == after.w and move.dest.h >= 150


def test_a_box_of_bands_that_holds_the_destination_only() -> None:
    """The source may lie outside the box: it is searched in the whole previous frame."""
    rng = np.random.default_rng(6)
    window = noise(rng, 200, 260)
    old, new, _, after = drag(photo(rng, H, W), window, (400, 300), (20, 20))
    move = timed(old, new, after)
    assert move is not None
    check_exact(old, new, after, move)
    assert move.dest == after


def test_a_new_picture_is_no_move() -> None:
    rng = np.random.default_rng(7)
    old = photo(rng, H, W)
    new = old.copy()
    box = Rect(200, 100, 600, 500)
    new[sl(box)] = photo(rng, box.h, box.w)
    assert timed(old, new, box) is None
    new[sl(box)] = noise(rng, box.h, box.w)  # a video's noise
    assert timed(old, new, box) is None


def test_a_dialog_opening_over_text_is_no_move() -> None:
    old = text(H, W)
    new = old.copy()
    box = Rect(300, 250, 420, 240)
    dialog = np.full((box.h, box.w), 0xECECEC, np.uint32)
    dialog[40:60, 20:400] = text(20, 380, bg=0xECECEC)
    dialog[180:210, 300:390] = 0x3070D0
    new[sl(box)] = dialog
    move = timed(old, new, box)
    # A line of the dialog may exist elsewhere on the screen; any copy must be exact.
    if move is not None:
        check_exact(old, new, box, move)


def test_flat_changes_are_no_move() -> None:
    old = np.full((H, W), 0x336699, np.uint32)
    new = old.copy()
    box = Rect(100, 100, 800, 600)
    new[sl(box)] = 0xEEEEEE
    assert timed(old, new, box) is None
    assert find_moved_block(old, old.copy(), box) is None  # nothing changed at all


@pytest.mark.parametrize("aa", [True, False], ids=["antialiased", "two-colour"])
def test_a_new_page_of_text_gives_an_exact_copy_or_none(aa) -> None:
    """Words of the new page are found elsewhere on the old one by chance: whatever
    comes back must be exact."""
    words = random.Random(9)

    def page(h: int, w: int) -> Words:
        lines = [
            " ".join(
                "".join(
                    words.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(words.randint(2, 9))
                )
                for _ in range(14)
            )
            for _ in range(h // 18)
        ]
        return text(h, w, aa=aa, lines=lines)

    old = page(H, W)
    new = old.copy()
    box = Rect(100, 100, 800, 600)
    new[sl(box)] = page(box.h, box.w)
    move = timed(old, new, box)
    if move is not None:
        check_exact(old, new, box, move)


def test_scrolled_text_gives_an_exact_copy_or_none() -> None:
    page = text(H + 200, W)
    old, new = page[:H].copy(), page[54 : H + 54].copy()  # three lines up
    box = Rect(0, 0, W, H)
    move = timed(old, new, box)
    if move is not None:
        check_exact(old, new, box, move)
        assert move.dx == 0


def test_a_repeated_pattern_gives_an_exact_copy_or_none() -> None:
    yy, xx = np.mgrid[0:H, 0:W]
    checker = np.where((xx // 4 + yy // 4) % 2 == 0, 0xFFFFFF, 0x000000).astype(np.uint32)
    rng = np.random.default_rng(8)
    old, new, box, _ = drag(checker, checker[:200, :300].copy(), (100, 100), (13, 7))
    new[400:420, 400:700] = noise(rng, 20, 300)
    box = box.union(Rect(400, 400, 300, 20))
    move = timed(old, new, box)
    if move is not None:
        check_exact(old, new, box, move)


@pytest.mark.parametrize("seed", range(6))
def test_random_scenes_give_exact_copies(seed) -> None:
    """Windows of mixed content at random places, moved by random amounts, sometimes
    with a second window redrawn: whatever is found is exact; a move of a textured
    window by less than the search's reach is found."""
    rng = np.random.default_rng(100 + seed)
    h, w = int(rng.integers(80, 400)), int(rng.integers(80, 500))
    window = photo(rng, h, w)
    window[: h // 3] = text(h // 3, w)
    x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
    by = (int(rng.integers(-120, 121)), int(rng.integers(-120, 121)))
    background = photo(rng, H, W) if seed % 2 else np.full((H, W), 0x555555, np.uint32)
    old, new, box, after = drag(background, window, (x, y), by)
    if seed % 3 == 0:
        other = Rect(int(rng.integers(0, W - 100)), int(rng.integers(0, H - 80)), 100, 80)
        new[sl(other)] = noise(rng, 80, 100)
        box = box.union(other)
    move = timed(old, new, box)
    if by == (0, 0):
        assert move is None
        return
    assert move is not None
    check_exact(old, new, box, move)


def test_arrays_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        find_moved_block(
            np.zeros((10, 10), np.uint32), np.zeros((10, 11), np.uint32), Rect(0, 0, 10, 10)
        )
    tiny = np.zeros((H, W), np.uint32)
    assert find_moved_block(tiny, tiny, Rect(5, 5, 8, 8)) is None
    assert find_moved_block(tiny, tiny, Rect(W + 10, 0, 100, 100)) is None
