"""A composited X desktop (what GNOME, KDE and Xfce run on X11): every window drawn into
an off-screen pixmap and painted onto the screen by a compositing manager, with shadows
and fades. The agent must see that painting as damage and serve the screen exactly,
moved windows as copies. Real compositors (picom, xcompmgr) on a private Xvfb,
the test suite's decoder as the viewer, xwd as the reference."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from enkaku.agent.capture.base import Rect
from enkaku.protocol.rfb import Encoding
from tests.agent.test_monitors import viewer
from tests.agent.test_rfbservice import RecordingInjector
from tests.xdisplay import wait_window, x_client, x_env, xvfb

pytestmark = pytest.mark.x11

W, H = 800, 600

COMPOSITORS = {
    # picom's XRender back end (no GL here), shadows and fades on.
    "picom": ["picom", "--backend", "xrender", "--shadow", "--fading", "--no-vsync"],
    # xcompmgr with client-side shadows.
    "xcompmgr": ["xcompmgr", "-c"],
}


def move(display: str, title: str, x: int, y: int) -> None:
    subprocess.run(
        ["xdotool", "search", "--name", title, "windowmove", "--sync", str(x), str(y)],
        env=x_env(display), check=True, capture_output=True, timeout=20,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(COMPOSITORS))
async def test_a_composited_desktop_is_served_exactly_as_windows_print_and_move(
    name: str,
) -> None:
    if shutil.which(COMPOSITORS[name][0]) is None:
        pytest.skip(f"{name} missing: run scripts/bootstrap")
    text = 'for i in $(seq 1 40); do echo "行 $i line"; sleep 0.05; done; sleep 120'
    with (
        xvfb(W, H) as display,
        x_client(COMPOSITORS[name], display) as compositor,
        x_client(["xlogo", "-geometry", "160x120+420+60"], display),
        x_client(
            ["xterm", "-geometry", "40x10+40+40", "-title", "comp", "-e", "sh", "-c", text],
            display,
        ),
    ):
        wait_window(display, "xlogo")
        wait_window(display, "comp")
        async with viewer(display, RecordingInjector()) as v:
            await v.until_exact(Rect(0, 0, W, H))  # after the text, shadows and fades
            for x, y in ((300, 250), (120, 380), (560, 300)):
                move(display, "xlogo", x, y)
                await v.until_exact(Rect(0, 0, W, H))
            move(display, "comp", 200, 100)
            await v.until_exact(Rect(0, 0, W, H))
            assert compositor.poll() is None, f"{name} stopped: the test saw no compositing"
            rects = [r for u in v.dec.updates for r in u.rects]
            assert len(rects) > 3  # the viewer saw the changes come, not one picture
            # The moves went as copies (ConfigureNotify still comes from the redirected
            # windows); a move whose copy the shadows spoil goes as pixels.
            copies = sum(1 for r in rects if r[4] == Encoding.COPYRECT)
            assert copies >= 1, rects
