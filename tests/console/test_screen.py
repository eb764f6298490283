"""The remote screen in the page: exact pixels (lossless), keys typed in the remote
xterm (US and JIS keyboards), a click at a scaled size landing where it was aimed."""

from __future__ import annotations

import base64
import io
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.e2e.harness import World, wait_for, xterm_on
from tests.xdisplay import wait_window, x_client, x_env, xvfb, xwd_root

from .conftest import connect, sign_in, wait_connected
from .keys import type_text

pytestmark = [pytest.mark.e2e, pytest.mark.x11]


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    work = tmp_path / "desk"
    work.mkdir()
    with xvfb(800, 600) as display, xterm_on(display, work):
        yield display, work


def canvas_rgb(page: Any) -> np.ndarray:
    """The noVNC canvas as (h, w, 3) RGB, read through a PNG (lossless)."""
    url = page.eval_on_selector("#screen canvas", "c => c.toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def open_session(page: Any, world: World, display: str | None, consent: str = "allow") -> Any:
    agent = world.agent(display, "agent", consent)
    creds = agent.next_line(60, event="credentials")
    sign_in(page, world)
    connect(page, creds["agent_id"], creds["password"])
    page.wait_for_url("**/session.html")
    return agent, creds


def wait_screen(page: Any) -> None:
    wait_connected(page)
    page.wait_for_selector("#screen canvas")


def pointer(display: str) -> tuple[int, int]:
    out = subprocess.run(
        ["xdotool", "getmouselocation", "--shell"],
        env=x_env(display),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return int(fields["X"]), int(fields["Y"])


def test_lossless_canvas_equals_the_screen_and_keys_and_clicks_land(
    cworld: World, desktop: tuple[str, Path], page: Any
) -> None:
    display, work = desktop
    open_session(page, cworld, display)
    wait_screen(page)
    page.select_option("#quality", "lossless")
    source = xwd_root(display)

    def same() -> bool:
        got = canvas_rgb(page)
        return got.shape == source.shape and bool(np.array_equal(got, source))

    wait_for(same, 60, "the canvas to equal the X screen")

    # A click at a scaled size lands at the remote coordinates aimed at: a smaller
    # window, the screen fitted into it.
    page.set_viewport_size({"width": 1000, "height": 700})

    def scaled() -> dict[str, float] | None:
        box: dict[str, float] = page.eval_on_selector(
            "#screen canvas",
            "c => { const r = c.getBoundingClientRect();"
            " return {x: r.x, y: r.y, w: r.width, h: r.height, cw: c.width, ch: c.height}; }",
        )
        return box if box["w"] < 0.9 * 800 else None

    box = wait_for(scaled, 30, "the screen scaled down to the window")
    assert (box["cw"], box["ch"]) == (800, 600)
    scale = box["w"] / 800
    # A mouse event's client coordinates are whole pixels: aim at the first whole pixel
    # inside the remote pixel (300, 200), which is inside the xterm window.
    target = (300, 200)
    cx = math.ceil(box["x"] + target[0] * scale)
    cy = math.ceil(box["y"] + target[1] * scale)
    assert (int((cx - box["x"]) / scale), int((cy - box["y"]) / scale)) == target
    page.mouse.click(cx, cy)
    seen: list[tuple[int, int]] = []

    def landed() -> bool:
        seen.append(pointer(display))
        return seen[-1] == target

    try:
        wait_for(landed, 30, f"the remote pointer at {target}")
    except AssertionError:
        raise AssertionError(f"pointer at {seen[-1:]}, aimed at {target}, box {box}") from None

    # Typing with a US keyboard into the remote xterm (US layout), Shift held as a
    # person holds it.
    type_text(page, "echo '|~_\"@' > us.txt\n", layout="us")
    out = work / "us.txt"
    wait_for(lambda: out.exists() and out.read_text() == '|~_"@\n', 30, "the typed US line")

    # A JIS keyboard to a customer whose X layout is Japanese: the physical keys count
    # (QEMU extended key events), including the keys only JIS has (¥ and ろ).
    subprocess.run(["setxkbmap", "-display", display, "jp"], check=True, timeout=30)
    type_text(page, "echo '|~_\"@\\' > jis.txt\n", layout="jis")
    out = work / "jis.txt"
    wait_for(lambda: out.exists() and out.read_text() == '|~_"@\\\n', 30, "the typed JIS line")


def test_view_only_actual_size_and_keys_a_browser_keeps(
    cworld: World, desktop: tuple[str, Path], page: Any, tmp_path: Path
) -> None:
    display, work = desktop
    open_session(page, cworld, display)
    wait_screen(page)
    # 1:1: the canvas is shown at the remote screen's own size.
    page.click("#view-menu summary")
    page.check("#scale-actual")
    page.wait_for_function(
        "() => document.querySelector('#screen canvas').getBoundingClientRect().width === 800"
    )
    # View only: nothing typed reaches the customer; unticked, typing works again. The
    # second line's arrival shows the first one was dropped, not late (one ordered stream).
    page.check("#view-only")
    page.keyboard.press("Escape")
    page.click("#screen canvas", position={"x": 100, "y": 100})
    type_text(page, "echo x > viewonly.txt\n")
    page.click("#view-menu summary")
    page.uncheck("#view-only")
    page.keyboard.press("Escape")
    page.click("#screen canvas", position={"x": 100, "y": 100})
    type_text(page, "echo y > typed.txt\n")
    wait_for(lambda: (work / "typed.txt").exists(), 30, "the typed line after view only")
    assert not (work / "viewonly.txt").exists()

    # Ctrl+Alt+Del from the Keys menu reaches the remote window as that combination.
    log = tmp_path / "xev.txt"
    with (
        open(log, "w") as out,
        x_client(
            ["xev", "-geometry", "200x150+560+400", "-event", "keyboard"], display, out.fileno()
        ),
    ):
        wait_window(display, "Event Tester")
        subprocess.run(
            ["xdotool", "mousemove", "600", "450"], env=x_env(display), check=True, timeout=30
        )
        page.click("#keys-menu summary")
        page.click("#keys-items button[data-key='cad']")

        def delete_with_ctrl_alt() -> bool:
            text = log.read_text()
            for event in text.split("\n\n"):
                if event.startswith("KeyPress") and "(keysym 0xffff, Delete)" in event:
                    state = int(event.split("state ", 1)[1].split(",", 1)[0], 16)
                    return state & 0x4 != 0 and state & 0x8 != 0  # Control and Mod1
            return False

        wait_for(delete_with_ctrl_alt, 30, "Ctrl+Alt+Del in the remote window")
