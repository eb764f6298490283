"""Monitors on wlroots: a real headless sway with two outputs of different sizes,
HEADLESS-1 640x480 at 0, 0 (one foot) and HEADLESS-2 400x300 at 640, 0 (two foot
windows side by side). The capture composes both into one 1040x480 desktop; the RFB
service lists them as two screens and serves either one alone. Pixels are checked
against ``grim -o NAME`` (an independent screencopy client), clicks against the window
sway focused (its rectangle in the layout holds the point clicked).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from enkaku.agent.capture.base import Rect, scale_nearest
from enkaku.agent.capture.monitors import Monitor
from enkaku.agent.capture.wlroots import WlrootsCapture, _scaled, _turned, _upright
from enkaku.agent.input.wlroots import WlrootsInput
from enkaku.agent.rfbservice import RFBService
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb import messages as m
from tests.agent.test_monitors import set_desktop_size
from tests.agent.test_rfbservice import Pipe
from tests.e2e.harness import wait_for
from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request
from tests.wayland import Sway, _parse_ppm, headless_sway

ONE = Rect(0, 0, 640, 480)
TWO = Rect(640, 0, 400, 300)
W, H = 1040, 480
EXT = Encoding.EXTENDED_DESKTOP_SIZE


def _views(node: dict[str, Any], output: str | None = None) -> list[dict[str, Any]]:
    """The visible windows, each with the output it is on (``_output``)."""
    if node.get("type") == "output":
        output = node.get("name")
    found = []
    if node.get("pid") and node.get("visible"):
        found.append({**node, "_output": output})
    for child in node.get("nodes", []) + node.get("floating_nodes", []):
        found += _views(child, output)
    return found


def windows(sway: Sway, output: str) -> list[dict[str, Any]]:

    tree = json.loads(sway.swaymsg("-t", "get_tree", "-r"))
    return [v for v in _views(tree) if v["_output"] == output]


def focused_rect(sway: Sway) -> Rect | None:

    tree = json.loads(sway.swaymsg("-t", "get_tree", "-r"))
    for v in _views(tree):
        if v.get("focused"):
            r = v["rect"]
            return Rect(r["x"], r["y"], r["width"], r["height"])
    return None


def grim_output(sway: Sway, name: str) -> npt.NDArray[np.uint8]:
    """``grim -o NAME``: that output alone, (h, w, 3) RGB."""
    out = subprocess.run(
        ["grim", "-t", "ppm", "-o", name, "-"], env={**os.environ, **sway.env},
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    return _parse_ppm(out)


def words(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    v = rgb.astype(np.uint32)
    out: npt.NDArray[np.uint32] = (v[..., 0] << 16 | v[..., 1] << 8 | v[..., 2]).astype(np.uint32)
    return out


def desktop(sway: Sway) -> npt.NDArray[np.uint32]:
    """The whole desktop as grim shows each output, black where no output is."""
    out = np.zeros((H, W), dtype=np.uint32)
    for name, r in (("HEADLESS-1", ONE), ("HEADLESS-2", TWO)):
        out[r.y : r.y + r.h, r.x : r.x + r.w] = words(grim_output(sway, name))
    return out


def test_damage_is_turned_and_scaled_as_the_pixels_are() -> None:
    # The rectangle a damaged area of a buffer maps to is where _upright() and scale_nearest()
    # (the real pixel path, checked against grim below) put those pixels: every
    # transform, random buffers, rectangles and logical sizes.
    rng = np.random.default_rng(11)
    for transform in range(8):
        for _ in range(40):
            bh, bw = (int(v) for v in rng.integers(2, 24, 2))
            x, y = int(rng.integers(0, bw)), int(rng.integers(0, bh))
            w, h = int(rng.integers(1, bw - x + 1)), int(rng.integers(1, bh - y + 1))
            mask = np.zeros((bh, bw), dtype=bool)
            mask[y : y + h, x : x + w] = True
            upright = _upright(mask, transform)
            turned = _turned(Rect(x, y, w, h), bw, bh, transform)
            ys, xs = np.nonzero(upright)
            assert turned == Rect(
                int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1
            ), (transform, bw, bh, x, y, w, h)
            uh, uw = upright.shape
            lw, lh = (int(v) for v in rng.integers(1, 2 * max(uw, uh), 2))
            fitted = scale_nearest(upright[..., None], lw, lh)[..., 0]
            area = _scaled(turned, uw, uh, lw, lh)
            if fitted.any():
                assert area is not None
                outside = fitted.copy()
                outside[area.y : area.y + area.h, area.x : area.x + area.w] = False
                assert not outside.any(), (transform, turned, lw, lh, area)


@pytest.fixture(scope="module")
def sway() -> Iterator[Sway]:
    with headless_sway(640, 480) as s:
        s.swaymsg("create_output")
        s.swaymsg("output HEADLESS-1 position 0 0, output HEADLESS-2 resolution 400x300 "
                  "position 640 0")  # fmt: skip
        s.swaymsg("focus output HEADLESS-2")
        s.swaymsg(f"exec foot --working-directory={s.work} -- /bin/sh")
        wait_for(lambda: len(windows(s, "HEADLESS-2")) == 1, 60, "foot on HEADLESS-2")
        s.swaymsg(f"exec foot --working-directory={s.work} -- /bin/sh")
        wait_for(lambda: len(windows(s, "HEADLESS-2")) == 2, 60, "two foots on HEADLESS-2")
        yield s


def test_the_capture_composes_every_output_and_lists_them(sway: Sway) -> None:
    with WlrootsCapture(sway.env["WAYLAND_DISPLAY"]) as cap:
        assert cap.monitors() == [Monitor("HEADLESS-1", ONE), Monitor("HEADLESS-2", TWO)]
        assert cap.screen_size() == cap.size == (W, H)
        assert cap.monitors_changed()  # the first layout, once
        assert not cap.monitors_changed()
        wait_for(
            lambda: np.array_equal(words(cap.grab()[..., [2, 1, 0]]), desktop(sway)), 30,
            "capture == grim -o, output by output",
        )  # fmt: skip
        assert not cap.grab()[300:, 640:, :3].any()  # no output there: black


def test_one_output_named_is_captured_alone(sway: Sway) -> None:
    with WlrootsCapture(sway.env["WAYLAND_DISPLAY"], output="HEADLESS-2") as cap:
        assert cap.size == (400, 300)
        assert cap.monitors() == [Monitor("HEADLESS-2", Rect(0, 0, 400, 300))]
        wait_for(
            lambda: np.array_equal(cap.grab()[..., [2, 1, 0]], grim_output(sway, "HEADLESS-2")),
            30, "capture == grim -o HEADLESS-2",
        )  # fmt: skip


def test_an_output_moved_moves_in_the_desktop(sway: Sway) -> None:
    with WlrootsCapture(sway.env["WAYLAND_DISPLAY"]) as cap:
        cap.monitors_changed()
        lower = Rect(640, 180, 400, 300)
        try:
            sway.swaymsg("output HEADLESS-2 position 640 180")
            wait_for(lambda: Monitor("HEADLESS-2", lower) in cap.monitors(), 30, "moved")
            assert cap.monitors_changed()
            assert cap.size == (1040, 480)
            wait_for(
                lambda: np.array_equal(
                    cap.grab()[180:480, 640:1040, [2, 1, 0]], grim_output(sway, "HEADLESS-2")
                ), 30, "the moved output == grim -o",
            )  # fmt: skip
            assert not cap.grab()[:180, 640:, :3].any()
        finally:
            sway.swaymsg("output HEADLESS-2 position 640 0")
        wait_for(lambda: Monitor("HEADLESS-2", TWO) in cap.monitors(), 30, "back")


def pointer_over(cap: WlrootsCapture, sway: Sway, points: list[tuple[int, int]], same: Any) -> None:
    """The pointer drawn at each point in turn: the picture follows. (Each grim call
    makes the compositor redraw the output, so this does not tell damaged rectangles
    from whole redraws: ``test_damage_is_turned_and_scaled_as_the_pixels_are`` does.)"""
    with WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp:
        for x, y in points:
            frames = cap.frames
            inp.pointer(x, y, 0)
            wait_for(lambda f=frames: cap.frames > f, 30, "a frame")
            wait_for(same, 30, "the pointer where it was moved, in the picture")


def test_a_turned_or_scaled_output_is_shown_upright_at_its_logical_size(sway: Sway) -> None:
    with WlrootsCapture(sway.env["WAYLAND_DISPLAY"]) as cap:
        cap.monitors_changed()
        try:
            sway.swaymsg("output HEADLESS-2 transform 90")
            wait_for(cap.monitors_changed, 30, "the change")
            turned = Rect(640, 0, 300, 400)
            wait_for(lambda: Monitor("HEADLESS-2", turned) in cap.monitors(), 30, "turned")
            assert cap.size == (940, 480)

            def same(scale: int) -> bool:
                r = next(mon.rect for mon in cap.monitors() if mon.name == "HEADLESS-2")
                got = cap.grab()[r.y : r.y + r.h, r.x : r.x + r.w, [2, 1, 0]]
                return np.array_equal(got, scale_nearest(grim_output(sway, "HEADLESS-2"), r.w, r.h))

            wait_for(lambda: same(1), 30, "the turned output == grim -o")
            pointer_over(cap, sway, [(700, 50), (720, 300), (660, 200)], lambda: same(1))
            sway.swaymsg("output HEADLESS-2 scale 2")
            wait_for(
                lambda: Monitor("HEADLESS-2", Rect(640, 0, 150, 200)) in cap.monitors(), 30,
                "scaled",
            )  # fmt: skip
            wait_for(lambda: same(2), 30, "the scaled output == grim -o, halved")
            # Scaled, not turned.
            sway.swaymsg("output HEADLESS-2 transform normal")
            scaled = Rect(640, 0, 200, 150)
            wait_for(lambda: Monitor("HEADLESS-2", scaled) in cap.monitors(), 30, "upright")
            wait_for(lambda: same(2), 30, "the scaled output == grim -o, halved")
            pointer_over(cap, sway, [(660, 30), (700, 120), (680, 60)], lambda: same(2))
        finally:
            sway.swaymsg("output HEADLESS-2 transform normal scale 1")
        wait_for(lambda: cap.monitors()[1] == Monitor("HEADLESS-2", TWO), 30, "back")


class Viewer:
    def __init__(self, sway: Sway, service: RFBService, pipe: Pipe, dec: Decoder) -> None:
        self.sway, self.service, self.pipe, self.dec = sway, service, pipe, dec

    async def send(self, data: bytes) -> None:
        await self.pipe.to_server.put(data)

    async def until(self, cond: Any, timeout: float = 20) -> None:
        await self.pipe.receive(self.dec, cond, timeout)

    async def refresh(self, deadline: float) -> None:
        n = len(self.dec.updates)
        await self.send(update_request(True, 0, 0, self.dec.width, self.dec.height))
        await self.until(lambda n=n: len(self.dec.updates) > n, deadline - time.monotonic())

    async def until_layout(self, screens: list[tuple[int, ...]], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.dec.layouts[-1] != screens:
            assert time.monotonic() < deadline, self.dec.layouts
            await self.refresh(deadline)

    async def until_shows(self, output: str | None, timeout: float = 30) -> None:
        """Until the framebuffer is ``output`` as grim shows it (None: the desktop)."""
        deadline = time.monotonic() + timeout
        while True:
            expected = await asyncio.to_thread(
                lambda: desktop(self.sway) if output is None
                else words(grim_output(self.sway, output))
            )  # fmt: skip
            if self.dec.fb.shape == expected.shape and np.array_equal(self.dec.fb, expected):
                return
            assert time.monotonic() < deadline, "the viewer never caught up with the screen"
            await self.refresh(deadline)

    async def click(self, x: int, y: int) -> None:
        await self.send(struct.pack("!BBHH", 5, 1, x, y))  # PointerEvent, left down
        await self.send(struct.pack("!BBHH", 5, 0, x, y))


@asynccontextmanager
async def viewer(sway: Sway, **kw: Any) -> AsyncIterator[Viewer]:
    capture = WlrootsCapture(sway.env["WAYLAND_DISPLAY"])
    injector = WlrootsInput(sway.env["WAYLAND_DISPLAY"])
    pipe = Pipe()
    service = RFBService(capture, injector, pipe.read, pipe.write, name="sway", **kw)
    task = asyncio.create_task(service.run())
    try:
        init = await pipe.handshake()
        w, h = struct.unpack_from("!HH", init)
        dec = Decoder(w, h, service.server.pixel_format)  # type: ignore[union-attr]
        await pipe.to_server.put(set_encodings(Encoding.ZRLE, EXT))
        await pipe.to_server.put(update_request(False, 0, 0, w, h))
        await pipe.receive(dec, lambda: len(dec.updates) >= 2)  # the layout, the pixels
        yield Viewer(sway, service, pipe, dec)
    finally:
        await pipe.to_server.put(b"")  # EOF
        await asyncio.wait_for(task, 10)
        capture.close()
        injector.close()


async def _focus_lands_at(sway: Sway, x: int, y: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        r = await asyncio.to_thread(focused_rect, sway)
        if r is not None and r.intersect(Rect(x, y, 1, 1)) is not None:
            return
        assert time.monotonic() < deadline, f"focus on {r}, not at {x}, {y}"
        await asyncio.sleep(0.05)


async def test_the_viewer_picks_output_2_then_the_whole_desktop_and_clicks_land(
    sway: Sway,
) -> None:
    left, right = sorted(windows(sway, "HEADLESS-2"), key=lambda v: v["rect"]["x"])
    assert left["rect"]["x"] == 640 and right["rect"]["x"] >= 640 + 150
    async with viewer(sway) as v:
        assert (v.dec.width, v.dec.height) == (W, H)
        assert v.dec.layouts[0] == [(1, 0, 0, 640, 480), (2, 640, 0, 400, 300)]
        await v.until_shows(None)
        # Output 2 alone: the answer, its size, exactly its pixels.
        await v.send(set_desktop_size(400, 300, m.Screen(2, 0, 0, 400, 300)))
        await v.until(lambda: len(v.dec.desktop_sizes) >= 2)
        assert v.dec.desktop_sizes[-1] == (1, 0, 400, 300, 1)
        assert v.dec.layouts[-1] == [(2, 0, 0, 400, 300)]
        await v.until_shows("HEADLESS-2")
        # A click at (50, 150) of output 2 is (690, 150) of the layout: the left foot.
        await v.click(50, 150)
        await _focus_lands_at(sway, 690, 150)
        await v.until_shows("HEADLESS-2")
        # The whole desktop again (one screen of its size, as noVNC sends).
        await v.send(set_desktop_size(W, H, m.Screen(0, 0, 0, W, H)))
        await v.until(lambda: len(v.dec.desktop_sizes) >= 3)
        assert v.dec.desktop_sizes[-1] == (1, 0, W, H, 2)
        await v.until_shows(None)
        # A click at the desktop's (1000, 100) is on output 2: the right foot.
        await v.click(1000, 100)
        await _focus_lands_at(sway, 1000, 100)
        await v.click(100, 100)  # and back on output 1
        await _focus_lands_at(sway, 100, 100)
        await v.until_shows(None)


def _as_if_the_compositor_said(cap: WlrootsCapture, event: str, *args: Any) -> None:
    """Deliver a registry event to the capture's tracker on its own thread, in order
    with the compositor's events: at the worker's next turn, which a
    ``wl_display.sync`` sent now brings about.

    sway 1.7 (wlroots 0.15) cannot unplug a headless output, and ``output X disable``
    keeps its ``wl_output`` global and sends no event at all, so the removal a real
    unplug causes (``global_remove``) and the announcement of its return (``global``)
    are delivered this way; the global itself is real, and everything after the event
    (the capture's layout, the service's fallback, the pixels) is.

    Not through the sync's ``done`` handler: pywayland keeps a proxy alive only while
    Python refers to it, so a callback dropped here can be collected (and its ``done``
    discarded) before the answer comes, and the worker can dispatch the answer before
    the handler is set. The worker calls ``_relayout`` after every dispatch; the event
    rides on that call, once."""
    tracker, conn = cap._tracker, cap._conn
    handler: Any = tracker._on_global_remove if event == "remove" else tracker._on_global
    relayout = cap._relayout

    def once() -> None:
        del cap._relayout  # the method again
        handler(conn.registry, *args)
        relayout()

    cap._relayout = once  # type: ignore[method-assign]
    conn.display.sync()  # its answer wakes the worker; the answer itself is not needed
    conn.display.flush()


async def test_an_output_removed_while_shown_falls_back_to_the_whole_desktop(
    sway: Sway,
) -> None:
    async with viewer(sway, monitor=2) as v:
        assert v.dec.layouts[0] == [(2, 0, 0, 400, 300)]
        await v.until_shows("HEADLESS-2")
        cap = v.service._source
        assert isinstance(cap, WlrootsCapture)
        two = next(o for o in cap._tracker.outputs() if o.name == "HEADLESS-2")
        await v.send(update_request(True, 0, 0, 400, 300))
        _as_if_the_compositor_said(cap, "remove", two.global_name)
        await v.until_layout([(1, 0, 0, 640, 480)])
        assert (v.dec.width, v.dec.height) == (640, 480)
        await v.until_shows("HEADLESS-1")
        # It comes back: shown alone again, as chosen.
        _as_if_the_compositor_said(cap, "add", two.global_name, "wl_output", two.version)
        await v.until_layout([(2, 0, 0, 400, 300)])
        await v.until_shows("HEADLESS-2")
