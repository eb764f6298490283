"""Workloads of ``benchmarks/screen.py`` (``benchmarks/screen_apps.py``): ``windiag``'s
path and page (every step of the drag moves the window diagonally, within its box, back
and forth; the page fits the terminal, so nothing scrolls while it is dragged), the
``dashboard`` page (the same pixels on every run) and ``tui``'s process monitor (what it
writes turns each screen into the next, only the changed spans)."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

from benchmarks.screen_apps import (
    DRAG_BOX,
    DRAG_SIZE,
    TUI_CPUS,
    TUI_PROCESSES,
    TUI_RATE,
    TUI_SIZE,
    _cells,
    _tui_frame,
    _tui_write,
    dashboard_page,
    drag_path,
    drag_text,
    tui,
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


def _apply(screen: list[list[tuple[str, str]]], written: str) -> None:
    """What a terminal does with ``tui``'s output (cursor moves, attributes, characters;
    a wide character fills two cells), on a model of its cells."""
    names = {"0": "", "0;32": "green", "0;31": "red", "0;34": "blue", "0;36": "cyan",
             "0;1": "bold", "0;30;46": "head", "0;2": "dim"}  # fmt: skip
    y = x = 0
    attr = ""
    for token in re.findall(r"\x1b\[(\d+);(\d+)H|\x1b\[([\d;]*)m|(.)", written, re.S):
        row, col, sgr, ch = token
        if row:
            y, x = int(row) - 1, int(col) - 1
        elif not ch:
            attr = names[sgr]
        else:
            screen[y][x] = (ch, attr)
            x += 1
            if _cells(ch) == 2:
                screen[y][x] = ("", attr)
                x += 1


def test_the_process_monitor_writes_what_changed_and_nothing_else() -> None:
    """Each refresh's output turns the terminal's previous screen into the new one (the
    highlighted row and the header as one attribute), and is a fraction of a full
    redraw; the uptime ticks once a second; rows reorder; two runs are the same."""
    cols, rows = TUI_SIZE
    rnd = random.Random(9)
    state = {"cpus": [30.0] * TUI_CPUS, "mem": 6.0, "load": [1.0, 1.0, 1.0],
             "uptime": 0, "procs": [
                 {"pid": 100 + i, "user": "root", "pri": 20, "ni": 0, "virt": "1M",
                  "res": "1M", "shr": "1M", "cpu": float(i), "mem": 1.0, "time": 0.0,
                  "cmd": "/srv/請求書/集計.py" if i % 3 else "cron"}
                 for i in range(TUI_PROCESSES)]}  # fmt: skip
    terminal = [[(" ", "")] * cols for _ in range(rows)]
    previous = None
    sizes, orders = [], []
    for i in range(12):
        frame = _tui_frame(rnd, state, i / TUI_RATE)
        assert len(frame) == rows and all(len(r) == cols for r in frame)
        written = _tui_write(previous, frame)
        _apply(terminal, written)
        # The highlighted row, the header and the function keys: one attribute.
        same = {"sel": "head", "key": "head"}
        assert [[(c, same.get(a, a)) for c, a in r] for r in frame] == terminal
        sizes.append(len(written))
        orders.append([r[:8] for r in frame[6:]])
        previous = frame
    assert max(sizes[1:]) < sizes[0] / 2  # refreshes write spans, not the screen
    uptime = ["".join(c for c, _ in _tui_frame(random.Random(1), state, t)[5]) for t in (0, 1)]
    assert uptime[0].split("Uptime:")[1] != uptime[1].split("Uptime:")[1]
    assert any(a != b for a, b in itertools.pairwise(orders))  # rows reorder


def test_the_process_monitor_is_seeded(capsys) -> None:  # type: ignore[no-untyped-def]
    tui(TUI_RATE * 50, 10, 9, frames=6)
    first = capsys.readouterr().out
    tui(TUI_RATE * 50, 10, 9, frames=6)
    assert capsys.readouterr().out == first
    assert "在庫管理" in first  # Japanese command lines, wide in the terminal
