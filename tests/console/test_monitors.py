"""The monitor picker in the page: a customer's desktop of two monitors (Xvfb split with
``xrandr --setmonitor``), noVNC's screen list, monitor 2 alone pixel-exact, a click on it
landing on the right absolute coordinates, and back to the whole desktop; then the
customer's monitors changing under the technician's choice: the picker offers the
monitors there are now, and a chosen monitor that goes away gives the whole desktop and
a notice."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enkaku.agent.capture.base import Rect
from tests.agent.test_monitors import RIGHT, H, W, _geometry, two_monitors, xrandr
from tests.e2e.harness import World, wait_for
from tests.xdisplay import wait_window, x_client, xwd_root

from .test_screen import canvas_rgb, open_session, pointer, wait_screen

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.x11,
    pytest.mark.skipif(shutil.which("xrandr") is None, reason="xrandr: run scripts/bootstrap"),
]


def options(page: Any) -> list[tuple[str, str]]:
    return page.eval_on_selector_all(
        "#monitor option", "os => os.map(o => [o.value, o.textContent])"
    )


def same(page: Any, display: str, area: Rect) -> bool:
    """The canvas equals ``area`` of the X screen (xwd), pixel for pixel."""
    x, y, w, h = area.x, area.y, area.w, area.h
    got = canvas_rgb(page)
    want = xwd_root(display)[y : y + h, x : x + w]
    return got.shape == want.shape and bool(np.array_equal(got, want))


def notice(page: Any) -> str | None:
    """The monitor notice's text while it is shown."""
    return page.evaluate(
        "() => { const n = document.getElementById('monitor-notice');"
        " return n && !n.hidden ? n.querySelector('p').textContent : null; }"
    )


def test_pick_monitor_2_then_the_whole_desktop(cworld: World, page: Any) -> None:
    with two_monitors() as display, x_client(
        ["xlogo", "-geometry", "300x200+1200+150"], display
    ):  # fmt: skip
        wait_window(display, "xlogo")
        open_session(page, cworld, display)
        wait_screen(page)
        page.select_option("#quality", "lossless")
        # The picker (View menu) appears with the agent's two monitors, in the page's
        # language.
        page.click("#view-menu summary")
        page.wait_for_selector("#monitor", state="visible")
        assert options(page) == [
            ["0", "Whole desktop"],
            ["1", "Monitor 1 (1024×768)"],
            ["2", "Monitor 2 (800×600)"],
        ]
        page.click("#lang-switch")
        assert options(page)[2] == ["2", "モニター 2 (800×600)"]
        page.click("#view-menu summary")
        page.select_option("#monitor", "2")

        wait_for(lambda: same(page, display, RIGHT), 60, "monitor 2 alone")
        assert page.eval_on_selector("#monitor", "s => s.value") == "2"

        # A click on the (scaled) picture lands on monitor 2 at the aimed place.
        box: dict[str, float] = page.eval_on_selector(
            "#screen canvas",
            "c => { const r = c.getBoundingClientRect();"
            " return {x: r.x, y: r.y, w: r.width, h: r.height}; }",
        )
        scale = box["w"] / RIGHT.w
        target = (400, 250)  # inside xlogo's window (1200..1500, 150..350)
        cx = math.ceil(box["x"] + target[0] * scale)
        cy = math.ceil(box["y"] + target[1] * scale)
        aimed = (int((cx - box["x"]) / scale), int((cy - box["y"]) / scale))
        page.mouse.click(cx, cy)
        absolute = (RIGHT.x + aimed[0], RIGHT.y + aimed[1])
        wait_for(lambda: pointer(display) == absolute, 30, f"the pointer at {absolute}")

        # Back to the whole desktop.
        page.click("#view-menu summary")
        page.select_option("#monitor", "0")
        wait_for(lambda: same(page, display, Rect(0, 0, W, H)), 60, "the whole desktop")
        assert notice(page) is None  # the technician's own choices need no notice


LOW = Rect(1024, 600, 800, 168)  # under monitor 2
MID = Rect(400, 100, 500, 300)  # between monitors 1 and 2 (from the left)


def test_the_picker_follows_the_customer_s_monitors(
    cworld: World, page: Any, tmp_path: Path
) -> None:
    with two_monitors() as display:
        open_session(page, cworld, display)
        wait_screen(page)
        page.select_option("#quality", "lossless")
        page.click("#view-menu summary")
        page.wait_for_selector("#monitor", state="visible")
        page.select_option("#monitor", "2")
        wait_for(lambda: same(page, display, RIGHT), 60, "monitor 2 alone")

        # A monitor plugged in under monitor 2 while it is shown: the agent's screen list
        # still has monitor 2 alone (its number did not change), yet the picker offers
        # the new one when the menu opens.
        xrandr(display, "--setmonitor", "low", _geometry(LOW), "none")
        page.click("#view-menu summary")
        wait_for(lambda: len(options(page)) == 4, 30, "the third monitor offered")
        assert options(page) == [
            ["0", "Whole desktop"],
            ["1", "Monitor 1 (1024×768)"],
            ["2", "Monitor 2 (800×600)"],
            ["3", "Monitor 3 (800×168)"],
        ]
        assert page.eval_on_selector("#monitor", "s => s.value") == "2"
        page.click("#view-menu summary")  # closed

        # A monitor plugged in on the left of monitor 2: it is monitor 3 now, still shown.
        xrandr(display, "--setmonitor", "mid", _geometry(MID), "none")
        wait_for(lambda: len(options(page)) == 5, 30, "the fourth monitor offered")
        assert page.eval_on_selector("#monitor", "s => s.value") == "3"
        assert options(page)[3] == ["3", "Monitor 3 (800×600)"]
        wait_for(lambda: same(page, display, RIGHT), 60, "the same monitor alone")
        assert notice(page) is None

        # The chosen monitor goes away: the whole desktop, a notice, and the picker lists
        # what is left, in the page's language.
        xrandr(display, "--delmonitor", "right")
        wait_for(lambda: notice(page) is not None, 30, "the monitor notice")
        assert notice(page) == (
            "Monitor 3 is no longer connected to the customer's computer: the whole desktop "
            "is shown. View › Monitor lists the monitors it has now."
        )
        wait_for(lambda: same(page, display, Rect(0, 0, W, H)), 60, "the whole desktop")
        assert options(page) == [
            ["0", "Whole desktop"],
            ["1", "Monitor 1 (1024×768)"],
            ["2", "Monitor 2 (500×300)"],
            ["3", "Monitor 3 (800×168)"],
        ]
        assert page.eval_on_selector("#monitor", "s => s.value") == "0"
        page.click("#lang-switch")
        assert notice(page) == (
            "お客様のコンピューターからモニター 3 がなくなったため、"
            "デスクトップ全体を表示しています。今あるモニターは「表示」›「モニター」から選べます。"
        )
        page.screenshot(path=str(tmp_path / "notice-ja.png"))
        page.click("#view-menu summary")
        assert options(page)[3] == ["3", "モニター 3 (800×168)"]
        page.screenshot(path=str(tmp_path / "picker-ja.png"))
        # Its own choice again: the notice goes.
        page.select_option("#monitor", "3")
        wait_for(lambda: same(page, display, LOW), 60, "monitor 3 alone")
        assert notice(page) is None
