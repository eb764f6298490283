"""The agent on the X servers customers' machines run, not only on Xvfb: Xorg itself
(dummy video driver: a headless machine, a virtual machine without a screen) and
TigerVNC's Xvnc (a server whose desktop lives in a VNC session).

Through the whole system, as in tests/e2e/test_screen.py: vncdotool types a command
into an xterm through `enkaku connect --vnc-listen`, and its lossless capture equals
the X server's own image of the screen (xwd). With the test suite's decoder as the
viewer: a moved window arrives as a copy and the picture stays exact; on Xorg, a change
of resolution through RandR (what a customer does in the display settings) reaches the
viewer as the new size, exact."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from enkaku.agent.capture.base import Rect
from enkaku.protocol.rfb import Encoding
from tests.agent.test_monitors import viewer, xrandr
from tests.agent.test_rfbservice import RecordingInjector
from tests.agent.test_x11_compositor import move
from tests.xdisplay import wait_window, x_client, xorg, xvnc

from .harness import InProcessServer, World, wait_for, xterm_on
from .test_screen import bridge, captured_exactly, vncdo

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

W, H = 1024, 768

#: name -> (program, how to start it at W x H).
SERVERS: dict[str, tuple[str, Callable[[int, int], AbstractContextManager[str]]]] = {
    "xorg-dummy": ("Xorg", xorg),
    "xvnc": ("Xtigervnc", xvnc),
}


def start(name: str) -> AbstractContextManager[str]:
    program, server = SERVERS[name]
    if shutil.which(program) is None:
        pytest.skip(f"{program} missing: run scripts/bootstrap")
    if program == "Xorg" and os.geteuid() != 0:
        pytest.skip("Xorg outside a console login needs root")
    return server(W, H)


@pytest.fixture(params=sorted(SERVERS))
def desktop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The X server of the parameter, with an xterm whose shell runs in a scratch folder."""
    work = tmp_path / "desk"
    work.mkdir()
    with start(request.param) as display, xterm_on(display, work):
        yield display, work


def test_vncdotool_types_and_captures_the_exact_screen(
    inproc: tuple[World, InProcessServer], desktop: tuple[str, Path], tmp_path: Path
) -> None:
    world, _server = inproc
    display, work = desktop
    port, _password, tech = bridge(world, display)
    # No window manager: the keyboard follows the pointer, so point at the xterm first.
    vncdo(port, "move", "100", "100", "type", "echo enkaku-on-this-x > result.txt", "key", "enter")
    out = work / "result.txt"
    wait_for(lambda: out.exists() and out.read_text() == "enkaku-on-this-x\n", 30, "typed command")
    wait_for(lambda: captured_exactly(port, display, tmp_path), 30, "a capture equal to the screen")
    tech.signal(2)  # SIGINT
    assert tech.wait(30) == 0


@pytest.mark.parametrize("name", sorted(SERVERS))
async def test_a_moved_window_arrives_as_a_copy_and_the_picture_stays_exact(name: str) -> None:
    with (
        start(name) as display,
        x_client(["xlogo", "-geometry", "200x150+100+80"], display),
        x_client(["xterm", "-geometry", "50x12+420+300", "-title", "xs"], display),
    ):
        wait_window(display, "xlogo")
        wait_window(display, "xs")
        async with viewer(display, RecordingInjector()) as v:
            await v.until_exact(Rect(0, 0, W, H))
            before = len(v.dec.updates)
            for x, y in ((300, 200), (160, 420)):
                move(display, "xlogo", x, y)
                await v.until_exact(Rect(0, 0, W, H))
            rects = [r for u in v.dec.updates[before:] for r in u.rects]
            assert any(r[4] == Encoding.COPYRECT for r in rects), rects


async def test_a_resolution_change_on_xorg_reaches_the_viewer() -> None:
    with start("xorg-dummy") as display:
        async with viewer(display, RecordingInjector()) as v:
            await v.until_exact(Rect(0, 0, W, H))
            await asyncio.to_thread(xrandr, display, "-s", "800x600")
            await v.until_exact(Rect(0, 0, 800, 600))  # a request kept outstanding
            assert v.dec.desktop_sizes[-1][2:4] == (800, 600)
