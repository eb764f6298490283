"""The monitor picker in the page: a customer's desktop of two monitors (Xvfb split with
``xrandr --setmonitor``), noVNC's screen list, monitor 2 alone pixel-exact, a click on it
landing on the right absolute coordinates, and back to the whole desktop."""

from __future__ import annotations

import math
import shutil
from typing import Any

import numpy as np
import pytest

from tests.agent.test_monitors import RIGHT, H, W, two_monitors
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

        def same(area: tuple[int, int, int, int]) -> bool:
            x, y, w, h = area
            got = canvas_rgb(page)
            want = xwd_root(display)[y : y + h, x : x + w]
            return got.shape == want.shape and bool(np.array_equal(got, want))

        wait_for(lambda: same((RIGHT.x, RIGHT.y, RIGHT.w, RIGHT.h)), 60, "monitor 2 alone")
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
        wait_for(lambda: same((0, 0, W, H)), 60, "the whole desktop")
