"""The ``windiag`` workload's path and page (``benchmarks/screen_apps.py``): every step of
the drag moves the window diagonally, within its box, back and forth; the page fits the
terminal, so nothing scrolls while it is dragged."""

from __future__ import annotations

import itertools

from benchmarks.screen_apps import DRAG_BOX, DRAG_SIZE, _cells, drag_path, drag_text


def test_every_step_of_the_drag_is_diagonal_and_stays_in_the_box() -> None:
    path = drag_path(3000)
    x0, y0, x1, y1 = DRAG_BOX
    assert len(path) == 3000 and path[0] == (x0, y0)
    steps = [(bx - ax, by - ay) for (ax, ay), (bx, by) in itertools.pairwise(path)]
    assert all(dx != 0 and dy != 0 for dx, dy in steps)
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in path)
    # Varied like a hand's: many different steps, some with one axis backwards for a step.
    assert len(set(steps)) > 30
    assert any((dx > 0) != (dy > 0) for dx, dy in steps)
    # Back and forth: the drag reaches both halves of the box and turns more than once.
    turns = sum(1 for a, b in itertools.pairwise(steps) if a[0] * b[0] < 0 and a[1] * b[1] < 0)
    assert turns > 2
    assert min(x for x, _ in path) < (x0 + x1) / 2 < max(x for x, _ in path)
    assert drag_path(500) == path[:500]  # seeded: the same path on every run


def test_the_page_fits_the_terminal() -> None:
    cols, rows = DRAG_SIZE
    page = drag_text(cols, rows - 1)
    lines = page.split("\n")
    assert rows - 3 <= len(lines) <= rows - 1 and not page.endswith("\n") and lines[-1]
    assert all(_cells(line) < cols for line in lines)
    assert any(_cells(line) > len(line) for line in lines)  # Japanese (wide) lines
    assert any(line.isascii() and len(line) > cols // 2 for line in lines)  # English ones
