"""Monitors: a real Xvfb screen split into two RandR monitors with ``xrandr --setmonitor``
(the way a two-display desktop is one X screen), real windows on them, real viewers.

The left monitor is 1024×768, the right one 800×600 at x 1024 (different sizes, so a
mix-up shows); the root window's weave pattern and the windows make the pixels differ
everywhere. Pixels are checked against xwd (an independent X client); pointer clicks
against xev (a real window that prints where the X server delivered them).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from enkaku.agent.capture.base import Rect
from enkaku.agent.capture.monitors import Monitor, MonitorView, order
from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.input.x11 import X11Input
from enkaku.agent.rfbservice import RFBService
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb import messages as m
from tests.agent.test_rfbservice import VNCDO, Pipe, RecordingInjector, run, serve
from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request
from tests.xdisplay import wait_window, x_client, x_env, xvfb, xwd_root

pytestmark = [
    pytest.mark.x11,
    pytest.mark.skipif(shutil.which("xrandr") is None, reason="xrandr: run scripts/bootstrap"),
]

W, H = 1824, 768
LEFT = Rect(0, 0, 1024, 768)
RIGHT = Rect(1024, 0, 800, 600)
EXT = Encoding.EXTENDED_DESKTOP_SIZE


def xrandr(display: str, *args: str) -> None:
    subprocess.run(["xrandr", *args], env=x_env(display), check=True, capture_output=True)


def _geometry(r: Rect) -> str:
    return f"{r.w}/{r.w * 254 // 960}x{r.h}/{r.h * 254 // 960}+{r.x}+{r.y}"


@contextmanager
def two_monitors() -> Iterator[str]:
    """Xvfb 1824×768 as two monitors: 'left' (the output's) and 'right' (no output)."""
    with xvfb(W, H) as display:
        xrandr(display, "--setmonitor", "left", _geometry(LEFT), "screen")
        xrandr(display, "--setmonitor", "right", _geometry(RIGHT), "none")
        yield display


def screen(display: str) -> npt.NDArray[np.uint32]:
    """The whole screen by xwd, as 0xRRGGBB words."""
    rgb = xwd_root(display).astype(np.uint32)
    return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


def crop(values: npt.NDArray[np.uint32], r: Rect) -> npt.NDArray[np.uint32]:
    return values[r.y : r.y + r.h, r.x : r.x + r.w]


def set_desktop_size(w: int, h: int, *screens: m.Screen) -> bytes:
    """A client's SetDesktopSize (rfbproto)."""
    head = struct.pack("!BxHHBx", m.SetDesktopSize.TYPE, w, h, len(screens))
    return head + b"".join(bytes(s) for s in screens)


# -- the capture -----------------------------------------------------------------------


def test_order_numbers_left_to_right_and_clips() -> None:
    mons = [
        Monitor("b", Rect(1000, 0, 500, 400)),
        Monitor("a", Rect(0, 0, 1000, 800)),
        Monitor("gone", Rect(3000, 0, 100, 100)),
        Monitor("c", Rect(1000, 400, 900, 400)),
    ]
    assert order(mons, 1800, 800) == [
        Monitor("a", Rect(0, 0, 1000, 800)),
        Monitor("b", Rect(1000, 0, 500, 400)),
        Monitor("c", Rect(1000, 400, 800, 400)),  # clipped to the screen
    ]


def test_capture_lists_the_monitors_and_reports_changes() -> None:
    with two_monitors() as display, X11Capture(display) as cap:
        assert cap.monitors() == [Monitor("left", LEFT), Monitor("right", RIGHT)]
        assert not cap.monitors_changed()
        xrandr(display, "--setmonitor", "middle", _geometry(Rect(500, 100, 640, 480)), "none")
        deadline = time.monotonic() + 10
        while True:
            cap.changed_regions()  # reads the events, as the service's poll does
            queued = cap.events_queued()
            if cap.monitors_changed():
                assert queued  # so an event-driven owner polls again and asks
                break
            assert time.monotonic() < deadline, "no change reported"
            time.sleep(0.05)
        assert not cap.monitors_changed()
        assert [mon.name for mon in cap.monitors()] == ["left", "middle", "right"]


def test_a_monitor_view_translates_grabs_damage_and_moves() -> None:
    with two_monitors() as display, X11Capture(display) as cap:
        view = MonitorView(cap, RIGHT)
        assert view.size == (800, 600)
        cap.changed_regions()  # primes the damage
        whole = cap.grab()
        assert np.array_equal(view.grab()[..., :3], whole[0:600, 1024:1824, :3])
        part = view.grab_rects([Rect(10, 20, 30, 40)])
        assert part is not None and np.array_equal(part[0][..., :3], whole[20:60, 1034:1064, :3])
        with x_client(["xlogo", "-geometry", "100x100+1200+200"], display):
            wait_window(display, "xlogo")
            deadline = time.monotonic() + 10
            regions: list[Rect] = []
            while not any(r.intersect(Rect(176, 200, 100, 100)) for r in regions):
                assert time.monotonic() < deadline, regions
                regions += view.changed_regions() or []
                time.sleep(0.05)
            assert all(Rect(0, 0, 800, 600).intersect(r) == r for r in regions), regions


# -- the RFB service ---------------------------------------------------------------------


class Viewer:
    """The test suite's decoder on an in-memory pipe to an RFBService on the display."""

    def __init__(
        self, display: str, service: RFBService, pipe: Pipe, dec: Decoder, capture: RecordingCapture
    ) -> None:
        self.display, self.service, self.pipe, self.dec = display, service, pipe, dec
        self.capture = capture

    async def send(self, data: bytes) -> None:
        await self.pipe.to_server.put(data)

    async def until(self, cond, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
        await self.pipe.receive(self.dec, cond, timeout)

    async def until_layout(self, screens: list[tuple[int, ...]], timeout: float = 30) -> None:
        """Keep a request outstanding (as viewers do) until the screen list is ``screens``."""
        deadline = time.monotonic() + timeout
        while self.dec.layouts[-1] != screens:
            assert time.monotonic() < deadline, self.dec.layouts
            n = len(self.dec.updates)
            await self.send(update_request(True, 0, 0, self.dec.width, self.dec.height))
            await self.until(lambda n=n: len(self.dec.updates) > n, deadline - time.monotonic())

    async def until_exact(self, area: Rect, timeout: float = 30) -> None:
        """Keep a request outstanding until the framebuffer equals ``area`` of the screen."""
        deadline = time.monotonic() + timeout
        while not (
            self.dec.fb.shape == (area.h, area.w)
            and np.array_equal(self.dec.fb, crop(screen(self.display), area))
        ):
            assert time.monotonic() < deadline, "the viewer never caught up with the screen"
            n = len(self.dec.updates)
            await self.send(update_request(True, 0, 0, self.dec.width, self.dec.height))
            await self.until(lambda n=n: len(self.dec.updates) > n, deadline - time.monotonic())


class RecordingCapture(X11Capture):
    """X11Capture that keeps the rectangles asked of it (screen coordinates)."""

    def __init__(self, display: str) -> None:
        super().__init__(display)
        self.asked: list[Rect] = []

    def grab_rects(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        self.asked.extend(rects)
        return super().grab_rects(rects)

    def grab_rects_shared(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        self.asked.extend(rects)
        return super().grab_rects_shared(rects)


@asynccontextmanager
async def viewer(display: str, injector: object, **kw: object) -> AsyncIterator[Viewer]:
    capture = RecordingCapture(display)
    pipe = Pipe()
    service = RFBService(capture, injector, pipe.read, pipe.write, name="m", **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(service.run())
    try:
        init = await pipe.handshake()
        w, h = struct.unpack_from("!HH", init)
        dec = Decoder(w, h, service.server.pixel_format)  # type: ignore[union-attr]
        await pipe.to_server.put(set_encodings(Encoding.ZRLE, Encoding.COPYRECT, EXT))
        await pipe.to_server.put(update_request(False, 0, 0, w, h))
        await pipe.receive(dec, lambda: len(dec.updates) >= 2)  # the layout, the pixels
        yield Viewer(display, service, pipe, dec, capture)
    finally:
        await pipe.to_server.put(b"")  # EOF
        await asyncio.wait_for(task, 10)
        capture.close()


async def test_the_viewer_gets_every_monitor_and_follows_changes() -> None:
    with two_monitors() as display:
        async with viewer(display, RecordingInjector()) as v:
            assert (v.dec.width, v.dec.height) == (W, H)
            assert v.dec.layouts[0] == [(1, 0, 0, 1024, 768), (2, 1024, 0, 800, 600)]
            await v.until_exact(Rect(0, 0, W, H))
            # A third monitor: a new screen list, same framebuffer.
            xrandr(display, "--setmonitor", "middle", _geometry(Rect(500, 100, 640, 480)), "none")
            await v.until_layout(
                [(1, 0, 0, 1024, 768), (2, 500, 100, 640, 480), (3, 1024, 0, 800, 600)]
            )
            assert v.dec.desktop_sizes[-1][:4] == (0, 0, W, H)  # reason 0: the server's
            assert len(v.dec.layouts) == 2  # no list in between


async def test_set_desktop_size_shows_one_monitor_then_all_again() -> None:
    injector = RecordingInjector()
    with two_monitors() as display, x_client(["xlogo", "-geometry", "200x150+1300+250"], display):
        wait_window(display, "xlogo")
        async with viewer(display, injector) as v:
            await v.until_exact(Rect(0, 0, W, H))
            # Monitor 2 alone: the answer (reason 1, status 0), its size, its pixels.
            await v.send(set_desktop_size(800, 600, m.Screen(2, 0, 0, 800, 600)))
            await v.until(lambda: len(v.dec.desktop_sizes) >= 2)
            assert v.dec.desktop_sizes[-1] == (1, 0, 800, 600, 1)
            assert v.dec.layouts[-1] == [(2, 0, 0, 800, 600)]
            await v.until_exact(RIGHT)
            # Pointer coordinates are the monitor's: moved by its offset.
            await v.send(struct.pack("!BBHH", 5, 0, 10, 20))  # PointerEvent
            deadline = time.monotonic() + 10
            while ("pointer", 1034, 20, 0) not in injector.calls:
                assert time.monotonic() < deadline, injector.calls
                await asyncio.sleep(0.02)
            # Another size than the monitor's, or a monitor that does not exist: refused.
            await v.send(set_desktop_size(640, 480, m.Screen(2, 0, 0, 640, 480)))
            await v.send(set_desktop_size(800, 600, m.Screen(7, 0, 0, 800, 600)))
            await v.until(lambda: len(v.dec.desktop_sizes) >= 4)
            assert v.dec.desktop_sizes[-2:] == [(1, 1, 800, 600, 1), (1, 1, 800, 600, 1)]
            # Monitor 1, then the whole desktop (one screen of its size, as noVNC sends).
            await v.send(set_desktop_size(1024, 768, m.Screen(1, 0, 0, 1024, 768)))
            await v.until(lambda: len(v.dec.desktop_sizes) >= 5)
            assert v.dec.desktop_sizes[-1] == (1, 0, 1024, 768, 1)
            await v.until_exact(LEFT)
            await v.send(set_desktop_size(W, H, m.Screen(0, 0, 0, W, H)))
            await v.until(lambda: len(v.dec.desktop_sizes) >= 6)
            assert v.dec.desktop_sizes[-1] == (1, 0, W, H, 2)
            await v.until_exact(Rect(0, 0, W, H))


async def test_one_monitor_shown_reads_only_its_damage() -> None:
    with two_monitors() as display:
        async with viewer(display, RecordingInjector(), monitor=2) as v:
            await v.until_exact(RIGHT)
            v.capture.asked.clear()
            # Windows on monitor 1, then one on monitor 2: only monitor 2's is read.
            with x_client(["xlogo", "-geometry", "300x300+100+100"], display):
                wait_window(display, "xlogo")
                with x_client(["xclock", "-geometry", "150x150+1300+200"], display):
                    wait_window(display, "xclock")
                    await v.until_exact(RIGHT)
            assert v.capture.asked, "the window on monitor 2 was not captured"
            assert all(RIGHT.intersect(r) == r for r in v.capture.asked), v.capture.asked
            assert v.capture.full_grabs == 0  # damage only, no whole-screen grab


async def test_the_shown_monitor_follows_its_own_changes() -> None:
    with two_monitors() as display:
        async with viewer(display, RecordingInjector(), monitor=2) as v:
            assert v.dec.layouts[0] == [(2, 0, 0, 800, 600)]
            await v.until_exact(RIGHT)
            # The monitor grows (redefined: removed and added again): the framebuffer
            # follows.
            taller = Rect(1024, 0, 800, 700)
            await v.send(update_request(True, 0, 0, 800, 600))
            xrandr(display, "--delmonitor", "right", "--setmonitor", "right", _geometry(taller),
                   "none")  # fmt: skip
            await v.until_layout([(2, 0, 0, 800, 700)])
            await v.until_exact(taller)
            # It goes away: the whole desktop (what is left of it: the left monitor).
            await v.send(update_request(True, 0, 0, 800, 700))
            xrandr(display, "--delmonitor", "right")
            await v.until_layout([(1, 0, 0, 1024, 768)])
            assert (v.dec.width, v.dec.height) == (W, H)
            await v.until_exact(Rect(0, 0, W, H))
            # It comes back: shown alone again, as chosen.
            await v.send(update_request(True, 0, 0, W, H))
            xrandr(display, "--setmonitor", "right", _geometry(RIGHT), "none")
            await v.until_layout([(2, 0, 0, 800, 600)])
            await v.until_exact(RIGHT)


# -- real viewers --------------------------------------------------------------------------


async def test_vncdotool_on_monitor_2_sees_it_and_clicks_land_on_it(tmp_path: Path) -> None:
    with two_monitors() as display, x_client(
        ["xterm", "-geometry", "40x10+1100+40", "-title", "term", "-e", "sh", "-c",
         "seq 1 8; exec sleep 60"], display,
    ) as _term, x_client(
        ["xev", "-geometry", "300x200+1300+300", "-name", "target", "-event", "button"],
        display, stdout=subprocess.PIPE,
    ) as xev:  # fmt: skip
        wait_window(display, "term")
        wait_window(display, "target")
        injector = X11Input(display)
        try:
            async with serve(X11Capture(display), injector, monitor=2) as served:
                target = f"127.0.0.1::{served.port}"
                out = tmp_path / "monitor2.png"
                await run(VNCDO, "-s", target, "--nocursor", "capture", str(out))
                rgb = np.asarray(Image.open(out).convert("RGB")).astype(np.uint32)
                assert rgb.shape[:2] == (600, 800)  # monitor 2's size, not the screen's
                got = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
                assert np.array_equal(got, crop(screen(display), RIGHT))
                # A click at (400, 350) of the framebuffer is (1424, 350) on the screen,
                # inside xev's window.
                await run(VNCDO, "-s", target, "--nocursor", "move", "400", "350", "click", "1")
                await served.wait_closed(2)
        finally:
            injector.close()

        out = await run("xdotool", "getmouselocation", "--shell", env=x_env(display))
        location = dict(line.split("=", 1) for line in out.decode().split())
        assert (location["X"], location["Y"]) == ("1424", "350"), location
        assert xev.stdout is not None
        with xev.stdout:
            seen = ""
            deadline = time.monotonic() + 10
            while "ButtonRelease" not in seen:
                assert time.monotonic() < deadline, seen
                seen += await asyncio.to_thread(xev.stdout.readline)
        press = re.search(r"ButtonPress.*? root:\((\d+),(\d+)\)", seen, re.S)
        assert press is not None, seen  # xev's window got the click, there
        assert press.groups() == ("1424", "350")
