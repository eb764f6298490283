"""Monitors on GNOME: a real headless mutter with two virtual monitors, Meta-0 800x600
at 0, 0 (the fixture's foot) and Meta-1 640x480 at 800, 0 (a second foot, another
background, its shell in ``work/two``). The capture composes both monitors' streams
into one 1440x600 desktop; the RFB service lists them as two screens and serves either
one alone. Pixels are checked against a screen-cast frame of each monitor of its own
(``Mutter.screenshot(connector)``, with the pointer drawn in: with several monitors the
capture records in cursor mode "embedded"), clicks by where the keys typed next arrive.
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from enkaku.agent.capture.base import Rect
from enkaku.agent.capture.gnome import GnomeCapture
from enkaku.agent.capture.monitors import Monitor
from enkaku.agent.input.gnome import GnomeInput
from enkaku.agent.rfbservice import RFBService
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb import messages as m
from tests.agent.test_monitors import set_desktop_size
from tests.agent.test_rfbservice import Pipe
from tests.e2e.harness import wait_for
from tests.gnome import Mutter, _call, _run, cast_stream, headless_mutter
from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request
from tests.wayland import _user
from tests.xdisplay import stop

ONE = Rect(0, 0, 800, 600)
TWO = Rect(800, 0, 640, 480)
W, H = 1440, 600
EXT = Encoding.EXTENDED_DESKTOP_SIZE
#: The second foot's background: how its window is found on Meta-1.
FOOT2_BG = (0x30, 0x10, 0x20)


def rgb(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return frame[..., [2, 1, 0]]


def words(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    v = pixels.astype(np.uint32)
    out: npt.NDArray[np.uint32] = (v[..., 0] << 16 | v[..., 1] << 8 | v[..., 2]).astype(np.uint32)
    return out


def screen(g: Mutter, connector: str = "", pointer: bool = True) -> npt.NDArray[np.uint8]:
    """A monitor's own screen cast with the pointer drawn in, as a capture of a desktop
    of several monitors has it (cursor mode "embedded"); ``pointer=False``: as a
    capture of a desktop of one monitor has it (the pointer is a shape)."""
    return g.screenshot(connector, pointer=pointer)


def desktop(g: Mutter) -> npt.NDArray[np.uint8]:
    """The whole desktop as each monitor's own screen cast shows it, black elsewhere."""
    out = np.zeros((H, W, 3), dtype=np.uint8)
    for name, r in (("Meta-0", ONE), ("Meta-1", TWO)):
        out[r.y : r.y + r.h, r.x : r.x + r.w] = screen(g, name)
    return out


def area_of(shot: npt.NDArray[np.uint8], color: tuple[int, int, int]) -> Rect | None:
    """The bounding box of the pixels of ``color`` (a foot window's background)."""
    mask = (shot == np.array(color, dtype=np.uint8)).all(axis=2)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size < 50 or cols.size < 50:
        return None
    x, y = int(cols[0]), int(rows[0])
    return Rect(x, y, int(cols[-1]) + 1 - x, int(rows[-1]) + 1 - y)


def _foot2_ready(g: Mutter) -> bool:
    """The second foot is shown on Meta-1 and its shell drew the prompt."""
    shot = screen(g, "Meta-1")
    r = area_of(shot, FOOT2_BG)
    if r is None:
        return False
    top = shot[r.y : r.y + 14, r.x : r.x + r.w]
    return bool((top != np.array(FOOT2_BG, dtype=np.uint8)).any())


@pytest.fixture(scope="module")
def gnome() -> Iterator[Mutter]:
    with headless_mutter(800, 600, more_monitors=[(640, 480)]) as g:
        two = g.work / "two"
        two.mkdir()
        conf = g.runtime / "foot2.ini"
        colour = "{:02x}{:02x}{:02x}".format(*FOOT2_BG)
        # Small enough to fit on Meta-1 (foot's default is 700x500).
        conf.write_text(f"initial-window-size-pixels=400x300\n[colors]\nbackground={colour}\n")
        ids = _user()
        prefix: list[str] = []
        if ids is not None:
            os.chown(two, *ids)
            prefix = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
                      "--pdeathsig", "TERM"]  # fmt: skip
        # mutter opens a new window on the monitor the pointer is on.
        with GnomeInput(g.env) as inp:
            inp_session = inp._live()
            assert len(inp_session.streams) == 2
            inp.pointer(TWO.x + 320, 240, 0)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(two), "SHELL": "/bin/sh",
               "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": str(g.runtime), "PS1": "$ ",
               "WAYLAND_DISPLAY": g.socket.name}  # fmt: skip
        foot = subprocess.Popen(
            [*prefix, "foot", f"--config={conf}", f"--working-directory={two}", "--", "/bin/sh"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(lambda: _foot2_ready(g), 60, "the second foot's prompt on Meta-1")
            yield g
        finally:
            stop(foot)


def test_the_capture_composes_both_monitors_and_lists_them(gnome: Mutter) -> None:
    with GnomeCapture(gnome.env) as cap:
        assert cap.monitors() == [Monitor("Meta-0", ONE, True), Monitor("Meta-1", TWO)]
        assert cap.screen_size() == cap.size == (W, H)
        assert cap.monitors_changed()  # the first layout, once
        assert not cap.monitors_changed()
        assert cap.changed_regions() is None
        wait_for(lambda: np.array_equal(rgb(cap.grab()), desktop(gnome)), 30,
                 "each monitor's area == that monitor's own screen cast")  # fmt: skip
        assert not cap.grab()[480:, 800:, :3].any()  # no monitor there: black
        # The second foot is on Meta-1, in the right part of the desktop.
        foot2 = area_of(rgb(cap.grab()), FOOT2_BG)
        assert foot2 is not None and foot2.x >= TWO.x and foot2.y + foot2.h <= TWO.h


def test_one_monitor_named_is_captured_alone_as_before(gnome: Mutter) -> None:
    with GnomeCapture(gnome.env, output="Meta-1") as cap:
        assert cap.size == (640, 480)
        assert cap.monitors() == []  # one monitor: the screen is that monitor
        assert not cap.monitors_changed()
        wait_for(lambda: np.array_equal(rgb(cap.grab()), screen(gnome, "Meta-1")), 30,
                 "capture == Meta-1's own screen cast")  # fmt: skip


def key_events(text: str) -> bytes:
    out = b""
    for ch in text:
        ks = 0xFF0D if ch == "\n" else ord(ch)
        out += struct.pack("!BBxxI", 4, 1, ks) + struct.pack("!BBxxI", 4, 0, ks)
    return out


class Viewer:
    def __init__(self, g: Mutter, pipe: Pipe, dec: Decoder) -> None:
        self.g, self.pipe, self.dec = g, pipe, dec

    async def send(self, data: bytes) -> None:
        await self.pipe.to_server.put(data)

    async def until(self, cond: Any, timeout: float = 20) -> None:
        await self.pipe.receive(self.dec, cond, timeout)

    async def until_shows(self, connector: str | None, timeout: float = 30) -> None:
        """Until the framebuffer is that monitor as its own screen cast shows it (None:
        the whole desktop)."""
        deadline = time.monotonic() + timeout
        while True:
            shot = await asyncio.to_thread(
                lambda: desktop(self.g) if connector is None else screen(self.g, connector)
            )
            expected = words(shot)
            if self.dec.fb.shape == expected.shape and np.array_equal(self.dec.fb, expected):
                return
            assert time.monotonic() < deadline, "the viewer never caught up with the screen"
            n = len(self.dec.updates)
            await self.send(update_request(True, 0, 0, self.dec.width, self.dec.height))
            await self.until(lambda n=n: len(self.dec.updates) > n, deadline - time.monotonic())

    async def click(self, x: int, y: int) -> None:
        await self.send(struct.pack("!BBHH", 5, 1, x, y))  # PointerEvent, left down
        await self.send(struct.pack("!BBHH", 5, 0, x, y))


@asynccontextmanager
async def viewer(g: Mutter) -> AsyncIterator[Viewer]:
    capture = await asyncio.to_thread(GnomeCapture, g.env)
    injector = await asyncio.to_thread(GnomeInput, g.env)
    pipe = Pipe()
    service = RFBService(capture, injector, pipe.read, pipe.write, name="gnome")
    task = asyncio.create_task(service.run())
    try:
        init = await pipe.handshake()
        w, h = struct.unpack_from("!HH", init)
        dec = Decoder(w, h, service.server.pixel_format)  # type: ignore[union-attr]
        await pipe.to_server.put(set_encodings(Encoding.ZRLE, EXT))
        await pipe.to_server.put(update_request(False, 0, 0, w, h))
        await pipe.receive(dec, lambda: len(dec.updates) >= 2)  # the layout, the pixels
        yield Viewer(g, pipe, dec)
    finally:
        await pipe.to_server.put(b"")  # EOF
        await asyncio.wait_for(task, 10)
        await asyncio.to_thread(capture.close)
        await asyncio.to_thread(injector.close)


async def _typed_into(v: Viewer, path: Any, word: str) -> None:
    """Type ``echo WORD > PATH.name`` and wait for the file where the focused shell is."""
    await v.send(key_events(f"echo {word} > {path.name}\n"))
    await asyncio.to_thread(
        wait_for, lambda: path.exists() and path.read_text() == f"{word}\n", 30, f"{path}"
    )


async def test_the_viewer_picks_monitor_2_then_the_whole_desktop_and_clicks_land(
    gnome: Mutter,
) -> None:
    foot2 = await asyncio.to_thread(lambda: area_of(screen(gnome, "Meta-1"), FOOT2_BG))
    assert foot2 is not None
    async with viewer(gnome) as v:
        assert (v.dec.width, v.dec.height) == (W, H)
        assert v.dec.layouts[0] == [(1, 0, 0, 800, 600), (2, 800, 0, 640, 480)]
        await v.until_shows(None)
        # The focus on Meta-0's foot first (the second foot, opened last, has it).
        await v.click(400, 300)
        await _typed_into(v, gnome.work / "clicked-0.txt", "zero")
        # Monitor 2 alone: the answer, its size, exactly its pixels.
        await v.send(set_desktop_size(640, 480, m.Screen(2, 0, 0, 640, 480)))
        await v.until(lambda: len(v.dec.desktop_sizes) >= 2)
        assert v.dec.desktop_sizes[-1] == (1, 0, 640, 480, 1)
        assert v.dec.layouts[-1] == [(2, 0, 0, 640, 480)]
        await v.until_shows("Meta-1")
        # A click on the second foot (in Meta-1's own coordinates): the keys go there.
        await v.click(foot2.x + foot2.w // 2, foot2.y + foot2.h // 2)
        await _typed_into(v, gnome.work / "two" / "clicked-2.txt", "two")
        # The whole desktop again (one screen of its size, as noVNC sends).
        await v.send(set_desktop_size(W, H, m.Screen(0, 0, 0, W, H)))
        await v.until(lambda: len(v.dec.desktop_sizes) >= 3)
        assert v.dec.desktop_sizes[-1] == (1, 0, W, H, 2)
        await v.until_shows(None)
        # A click on Meta-0's foot (its middle), then on the second foot in desktop
        # coordinates: each time the keys go to the foot clicked.
        await v.click(400, 300)
        await _typed_into(v, gnome.work / "clicked-1.txt", "one")
        await v.click(TWO.x + foot2.x + foot2.w // 2, foot2.y + foot2.h // 2)
        await _typed_into(v, gnome.work / "two" / "clicked-3.txt", "three")


async def _turn(g: Mutter, transform: int) -> None:
    """Meta-1 turned (1: a quarter, 640x480 -> 480x640) or back (0), Meta-0 as it is."""
    from dbus_fast.aio import MessageBus

    dc, path = "org.gnome.Mutter.DisplayConfig", "/org/gnome/Mutter/DisplayConfig"
    bus = await MessageBus(bus_address=g.bus).connect()
    try:
        serial, monitors, _logical, _props = await _call(bus, dc, path, dc, "GetCurrentState")
        modes = {mon[0][0]: mon[1][0][0] for mon in monitors}
        await _call(
            bus, dc, path, dc, "ApplyMonitorsConfig", "uua(iiduba(ssa{sv}))a{sv}",
            [serial, 1, [[0, 0, 1.0, 0, True, [["Meta-0", modes["Meta-0"], {}]]],
                         [800, 0, 1.0, transform, False, [["Meta-1", modes["Meta-1"], {}]]]],
             {}],
        )  # fmt: skip
    finally:
        bus.disconnect()


def test_a_monitor_turned_is_reported_and_both_sides_follow(gnome: Mutter) -> None:
    turned = Rect(800, 0, 480, 640)
    with GnomeCapture(gnome.env) as cap, GnomeInput(gnome.env) as inp:
        cap.monitors_changed()
        try:
            _run(_turn(gnome, 1), 30)
            wait_for(lambda: Monitor("Meta-1", turned) in cap.monitors(), 30, "turned")
            assert cap.monitors_changed()
            assert cap.size == (1280, 640)
            wait_for(
                lambda: np.array_equal(
                    rgb(cap.grab())[: turned.h, turned.x :], screen(gnome, "Meta-1")
                ), 30, "the turned monitor == its own screen cast",
            )  # fmt: skip
            # The pointer goes on into the new layout: a click on Meta-0's foot.
            inp.pointer(400, 300, 1)
            inp.pointer(400, 300, 0)
            for ch in "echo turned > turned.txt\n":
                ks = 0xFF0D if ch == "\n" else ord(ch)
                inp.key(ks, True)
                inp.key(ks, False)
            out = gnome.work / "turned.txt"
            wait_for(lambda: out.exists() and out.read_text() == "turned\n", 30, "typed")
        finally:
            _run(_turn(gnome, 0), 30)
        wait_for(lambda: cap.monitors() == [Monitor("Meta-0", ONE, True), Monitor("Meta-1", TWO)],
                 30, "back")  # fmt: skip


async def _plug(g: Mutter, w: int, h: int) -> tuple[Any, str, asyncio.subprocess.Process]:
    from dbus_fast import Variant
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=g.bus).connect()
    session, _stream, node = await cast_stream(
        bus, "RecordVirtual", "a{sv}", [{"cursor-mode": Variant("u", 0)}]
    )
    # The monitor comes once a consumer has agreed on its size.
    proc = await asyncio.create_subprocess_exec(
        "gst-launch-1.0", "-q", "pipewiresrc", f"path={node}", "!",
        f"video/x-raw,width={w},height={h}", "!", "fakesink",
        env={**os.environ, "XDG_RUNTIME_DIR": str(g.runtime)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return bus, session, proc


async def _unplug(bus: Any, session: str, proc: asyncio.subprocess.Process) -> None:
    try:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        sc = "org.gnome.Mutter.ScreenCast"
        await _call(bus, sc, session, sc + ".Session", "Stop")
    finally:
        bus.disconnect()


@contextmanager
def plugged_in(g: Mutter, w: int, h: int) -> Iterator[None]:
    """A monitor plugged in while inside: a virtual monitor of mutter's own
    (``RecordVirtual``, read by a ``gst-launch-1.0`` at w x h, stopped by PID), a real
    monitor to the layout and to every client; unplugged on the way out."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        state = asyncio.run_coroutine_threadsafe(_plug(g, w, h), loop).result(60)
        try:
            yield
        finally:
            asyncio.run_coroutine_threadsafe(_unplug(*state), loop).result(60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_monitor_plugged_in_and_out_of_a_one_monitor_desktop() -> None:
    with headless_mutter(800, 600, foot=False) as g, GnomeCapture(g.env) as cap:
        assert cap.monitors() == [] and cap.size == (800, 600)  # one monitor: as before
        assert not cap.monitors_changed()
        with plugged_in(g, 640, 480):
            wait_for(lambda: len(cap.monitors()) == 2, 30, "the monitor plugged in listed")
            assert cap.monitors_changed()
            first, second = cap.monitors()
            assert first == Monitor("Meta-0", ONE, True)
            assert (second.rect.w, second.rect.h) == (640, 480)
            assert cap.screen_size() == cap.size == (
                max(800, second.rect.x + 640), max(600, second.rect.y + 480),
            )  # fmt: skip
            r = second.rect

            def both() -> bool:
                frame = rgb(cap.grab())
                return np.array_equal(frame[:600, :800], screen(g, "Meta-0")) and (
                    np.array_equal(frame[r.y : r.y + r.h, r.x : r.x + r.w],
                                   screen(g, second.name))
                )  # fmt: skip

            wait_for(both, 30, "each monitor's area == its own screen cast")
        wait_for(lambda: cap.monitors() == [], 30, "one monitor again")
        assert cap.monitors_changed()
        wait_for(lambda: cap.size == (800, 600), 30, "the one monitor's size")
        wait_for(lambda: np.array_equal(rgb(cap.grab()), screen(g, pointer=False)), 30,
                 "capture == ref")  # fmt: skip
