"""The customer's window (Tk) on a wlroots desktop: `enkaku agent` with its window under
a headless sway with XWayland, the window drawn through XWayland, the screen served
through the wayland-wlroots backend while it is open."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.e2e.harness import ENKAKU, VNCDO, World, free_port, make_db, server_process, wait_for
from tests.wayland import Sway, headless_sway
from tests.xdisplay import wait_window

pytestmark = [pytest.mark.e2e]

TITLE = "enkaku remote support"


@pytest.fixture
def sway() -> Iterator[Sway]:
    with headless_sway(800, 600, xwayland=True) as s:
        yield s


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        server_process(w, make_db(tmp_path), free_port())
        w.login()
        yield w
    finally:
        w.close()


def _x_views(sway: Sway) -> list[dict[str, Any]]:
    """sway's views of X clients (shell "xwayland")."""
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("shell") == "xwayland":
            found.append(node)
        for child in node.get("nodes", []) + node.get("floating_nodes", []):
            walk(child)

    walk(json.loads(sway.swaymsg("-t", "get_tree", "-r")))
    return found


def _x_window_image(display: str, title: str) -> np.ndarray:
    """The window as the X server holds it (ImageMagick's `import`, through XWayland)."""
    out = subprocess.run(
        ["import", "-display", display, "-window", title, "png:-"],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    return np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))


def test_the_window_runs_through_xwayland_while_the_screen_is_served(
    sway: Sway, world: World, tmp_path: Path
) -> None:
    assert sway.x_display is not None
    agent = world.spawn(
        [ENKAKU, "-vv", "agent", "--server", world.server_url, "--consent", "allow",
         "--lang", "en", "--config-dir", str(tmp_path / "cfg")],
        "agent-xwayland", DISPLAY=sway.x_display,
        XDG_RUNTIME_DIR=sway.env["XDG_RUNTIME_DIR"], WAYLAND_DISPLAY=sway.env["WAYLAND_DISPLAY"],
    )  # fmt: skip
    creds = agent.next_line(60, event="credentials")
    # The window is an X client of XWayland, and sway shows it as a view of its own.
    wait_window(sway.x_display, TITLE)
    views = wait_for(
        lambda: [v for v in _x_views(sway) if v.get("name") == TITLE and v.get("visible")],
        30, "sway's view of the window",
    )  # fmt: skip
    rect = views[0]["rect"]
    assert rect["width"] > 300 and rect["height"] > 200
    x, y, w, h = rect["x"], rect["y"], rect["width"], rect["height"]

    # What Tk drew (text: many colours) is on the screen, pixel for pixel.
    def drawn() -> bool:
        mine = _x_window_image(sway.x_display or "", TITLE)
        shown = sway.grim()[y : y + mine.shape[0], x : x + mine.shape[1]]
        colours = len(Image.fromarray(mine).convert("L").getcolors(1 << 16) or [])
        return colours > 20 and mine.shape[:2] == (h, w) and np.array_equal(mine, shown)

    wait_for(drawn, 30, "the window's text on the screen")
    assert "screen backend: wayland-wlroots" in agent.stderr(None)

    # A technician's session through the wlroots backend, with the window open.
    tech = world.connect(creds["agent_id"], creds["password"])
    port = int(tech.next_line(60, event="vnc_listening")["port"])
    shot = tmp_path / "capture.png"

    def same() -> bool:
        subprocess.run(
            [VNCDO, "-s", f"127.0.0.1::{port}", "capture", str(shot)],
            check=True, timeout=120, capture_output=True,
        )  # fmt: skip
        got = np.asarray(Image.open(shot).convert("RGB"))
        return bool(np.array_equal(got, sway.grim()))

    wait_for(same, 60, "the technician's capture equal to grim's screenshot")
    got = np.asarray(Image.open(shot).convert("L"))[y : y + h, x : x + w]
    assert len(Image.fromarray(got).getcolors(1 << 16) or []) > 20  # the window, seen
    assert agent.proc.poll() is None
