"""Cost of the diagonal move search (``enkaku.agent.motion.find_moved_block``) on a
1920×1080 screen of synthetic pixels, and the bytes a found move saves.

``python -m benchmarks.motion [--repeat N]``

Workloads (the changed box is what the damage step would pass):

- **photo replaced**: an 800×600 photo-like picture replaced by another (no move: the
  search must give up fast);
- **diagonal window**: an 800×600 window of photo-like content dragged by (+40, +25)
  over a textured wallpaper (the box: old and new place together);
- **diagonal text window**: the same with a text-like window (two colours, glyph-like
  blocks) over a flat desktop;
- **flat change**: an 800×600 area turned from one colour to another (no anchors).

Prints µs per call (the best of ``--repeat`` runs of a few calls each: the machine is
shared) and, for a found move, the raw pixel bytes of the box against a CopyRect plus
the pixels left beside it. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from enkaku.agent.motion import Move, find_moved_block
from enkaku.protocol.geometry import Rect

W, H = 1920, 1080
RNG = np.random.default_rng(7)

Words = npt.NDArray[np.uint32]


def photo(h: int, w: int) -> Words:
    """Photo-like words: smooth colour fields with fine noise (every pixel differs a
    little from its neighbours, as in a JPEG decoded to the screen)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = []
    for _ in range(3):
        a, b, c, d = RNG.uniform(0.002, 0.02, 4)
        base = 128 + 60 * np.sin(xx * a + yy * b) + 50 * np.cos(xx * c - yy * d)
        channels.append(np.clip(base + RNG.normal(0, 6, (h, w)), 0, 255).astype(np.uint32))
    return (channels[0] << 16) | (channels[1] << 8) | channels[2]


def text(h: int, w: int) -> Words:
    """Text-like words: dark glyph-ish blocks on white, in lines of 18 rows."""
    out = np.full((h, w), 0xFFFFFF, dtype=np.uint32)
    for top in range(4, h - 14, 18):
        ink = RNG.random((12, w // 2)) < 0.35
        ink = ink.repeat(2, axis=1)[:, :w]
        ink[:, RNG.integers(0, w, w // 12)] = False  # word gaps
        out[top : top + 12][ink] = 0x202020
    return out


def moved(
    background: Words, window: Words, at: tuple[int, int], by: tuple[int, int]
) -> tuple[Words, Words, Rect]:
    """Old and new screens with ``window`` at ``at`` and then moved ``by``; the box."""
    wh, ww = window.shape
    x, y = at
    old, new = background.copy(), background.copy()
    old[y : y + wh, x : x + ww] = window
    new[y + by[1] : y + by[1] + wh, x + by[0] : x + by[0] + ww] = window
    return old, new, Rect(x, y, ww, wh).union(Rect(x + by[0], y + by[1], ww, wh))


def timed(call: Callable[[], Move | None], repeat: int) -> tuple[float, Move | None]:
    result = call()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(5):
            call()
        best = min(best, (time.perf_counter() - t) / 5)
    return best * 1e6, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    wallpaper = photo(H, W)
    box = Rect(560, 240, 800, 600)
    replaced = wallpaper.copy()
    replaced[box.y : box.y + box.h, box.x : box.x + box.w] = photo(box.h, box.w)
    flat_old = np.full((H, W), 0x3366AA, dtype=np.uint32)
    flat_new = flat_old.copy()
    flat_new[box.y : box.y + box.h, box.x : box.x + box.w] = 0xEEEEEE
    cases = [
        ("photo replaced", wallpaper, replaced, box),
        ("diagonal window", *moved(wallpaper, photo(600, 800), (560, 240), (40, 25))),
        (
            "diagonal text window",
            *moved(np.full((H, W), 0x3366AA, np.uint32), text(600, 800), (560, 240), (-30, 45)),
        ),
        ("flat change", flat_old, flat_new, box),
    ]
    print(f"{'workload':24} {'µs/call':>9}  result")
    for name, old, new, changed in cases:

        def call(o: Words = old, n: Words = new, c: Rect = changed) -> Move | None:
            return find_moved_block(o, n, c)

        us, move = timed(call, args.repeat)
        if move is None:
            print(f"{name:24} {us:9.0f}  no move")
            continue
        exact = np.array_equal(
            new[move.dest.y : move.dest.y + move.dest.h, move.dest.x : move.dest.x + move.dest.w],
            old[move.src.y : move.src.y + move.src.h, move.src.x : move.src.x + move.src.w],
        )
        raw = changed.w * changed.h * 4
        sent = 16 + sum(12 + r.w * r.h * 4 for r in move.rest)
        print(
            f"{name:24} {us:9.0f}  copy {move.dest.w}x{move.dest.h} from ({move.dx:+d}, "
            f"{move.dy:+d}), exact={exact}; raw pixels {raw} B, copy + rest {sent} B "
            f"({raw / sent:.0f}x fewer)"
        )


if __name__ == "__main__":
    main()
