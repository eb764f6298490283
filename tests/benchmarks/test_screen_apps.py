"""Workloads of ``benchmarks/screen.py`` (``benchmarks/screen_apps.py``): ``windiag``'s
path and page (every step of the drag moves the window diagonally, within its box, back
and forth; the page fits the terminal, so nothing scrolls while it is dragged), and the
``dashboard`` page (the same pixels on every run)."""

from __future__ import annotations

import itertools
from pathlib import Path

from benchmarks.screen_apps import (
    DRAG_BOX,
    DRAG_SIZE,
    _cells,
    dashboard_page,
    drag_path,
    drag_text,
)


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


def test_the_dashboard_draws_the_same_pixels_on_every_run(tmp_path: Path) -> None:
    """The ``dashboard`` workload in Chromium: it starts, animates, stops after its
    seconds, and two runs end on the same pixels (every server sees the same screen)."""
    from playwright import sync_api

    from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS

    page_file = dashboard_page(tmp_path, seconds=1.2)
    shots = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _ in range(2):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"file://{page_file}")
                page.wait_for_function("document.title === 'benchdash'", timeout=30_000)
                # Stopped: one second of steps taken (the clock ticks once), nothing after.
                page.wait_for_function(
                    "document.getElementById('clock').textContent === '10:00:01'",
                    timeout=30_000,
                )
                page.wait_for_timeout(600)
                assert page.locator("#log tr").count() == 12
                assert "%" in page.locator("#v0").inner_text()
                shots.append(page.screenshot())
                page.close()
        finally:
            browser.close()
    assert shots[0] == shots[1]
