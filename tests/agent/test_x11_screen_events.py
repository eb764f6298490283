"""RFBService on a real Xvfb with the real X11Capture: damage-driven, damaged-area-only.

The viewer is the test suite's own decoder on an in-memory pipe; the screen is checked
against xwd, an independent X client. Waits are polls on what arrived; the idle checks
count capture calls over a quiet period (nothing draws on the private display).
"""

from __future__ import annotations

import asyncio
import select
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from enkaku.agent.capture.base import Rect
from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.input.x11 import X11Input
from enkaku.agent.rfbservice import RFBService
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb.encodings.copyrect import Copy
from tests.agent.test_rfbservice import Pipe, RecordingInjector
from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request
from tests.xdisplay import wait_window, x_client, x_env, xvfb, xwd_root

pytestmark = pytest.mark.x11
W, H = 480, 360


class CountingCapture(X11Capture):
    """X11Capture that counts what the service asks of it (works with any version)."""

    def __init__(self, display: str) -> None:
        super().__init__(display)
        self.region_calls = 0
        self.whole_grabs = 0
        self.rects: list[Rect] = []

    def changed_regions(self) -> list[Rect] | None:
        self.region_calls += 1
        return super().changed_regions()

    def grab(self) -> npt.NDArray[np.uint8]:
        self.whole_grabs += 1
        return super().grab()

    def grab_rects(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        self.rects.extend(rects)
        return super().grab_rects(rects)

    def grab_rects_shared(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        self.rects.extend(rects)
        return super().grab_rects_shared(rects)


@dataclass
class Session:
    display: str
    capture: CountingCapture
    service: RFBService
    pipe: Pipe
    dec: Decoder

    async def update(self, timeout: float = 20) -> None:
        """Request an incremental update and wait for it."""
        n = len(self.dec.updates)
        await self.pipe.to_server.put(update_request(True, 0, 0, W, H))
        await self.pipe.receive(self.dec, lambda: len(self.dec.updates) > n, timeout)

    def screen(self) -> npt.NDArray[np.uint32]:
        rgb = xwd_root(self.display).astype(np.uint32)
        return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]

    async def until_exact(self, timeout: float = 30) -> None:
        """Keep one request outstanding until the viewer's picture equals the screen."""
        deadline = time.monotonic() + timeout
        while not np.array_equal(self.dec.fb, self.screen()):
            assert time.monotonic() < deadline, "the viewer never caught up with the screen"
            await self.update(timeout=max(deadline - time.monotonic(), 0.1))


@asynccontextmanager
async def session(
    encodings: tuple[int, ...] = (Encoding.ZRLE, Encoding.COPYRECT),
) -> AsyncIterator[Session]:
    with xvfb(W, H) as display:
        capture = CountingCapture(display)
        pipe = Pipe()
        service = RFBService(capture, RecordingInjector(), pipe.read, pipe.write, name="x")
        task = asyncio.create_task(service.run())
        try:
            await pipe.handshake()
            dec = Decoder(W, H, service.server.pixel_format)  # type: ignore[union-attr]
            await pipe.to_server.put(set_encodings(*encodings))
            await pipe.to_server.put(update_request(False, 0, 0, W, H))
            await pipe.receive(dec, lambda: len(dec.updates) == 1)
            yield Session(display, capture, service, pipe, dec)
        finally:
            await pipe.to_server.put(b"")  # EOF
            await asyncio.wait_for(task, 10)
            capture.close()


async def test_an_idle_screen_is_not_polled() -> None:
    async with session() as s:
        assert s.capture.whole_grabs == 1
        await s.pipe.to_server.put(update_request(True, 0, 0, W, H))
        await asyncio.sleep(0.2)  # the service is waiting for damage now
        calls = s.capture.region_calls
        await asyncio.sleep(1.0)  # a quiet second: the old poll asked 30 times
        assert s.capture.region_calls == calls
        assert s.pipe.from_server.empty()
        # ... and the request outstanding all along is answered once something draws.
        with x_client(["xterm", "-geometry", "20x4+100+80", "-title", "idle"], s.display):
            wait_window(s.display, "idle")
            await s.pipe.receive(s.dec, lambda: len(s.dec.updates) == 2, 20)
            await s.until_exact()


async def test_only_the_damaged_area_is_captured() -> None:
    async with session() as s:
        with x_client(["xterm", "-geometry", "20x4+200+150", "-title", "small"], s.display):
            x, y, w, h = wait_window(s.display, "small")
            await s.until_exact()
        await s.until_exact()  # the window is gone again: the wallpaper is back
        assert s.capture.whole_grabs == 1  # the first update only
        assert s.capture.rects, "the change was captured as rectangles"
        window = Rect(x - 4, y - 4, w + 8, h + 8)  # the border is drawn around it
        for r in s.capture.rects:
            assert window.intersect(r) == r, f"{r} lies outside the window {window}"


async def test_scrolling_text_goes_as_copies_and_stays_exact(tmp_path: Path) -> None:
    script = tmp_path / "lines.sh"
    script.write_text("i=0; while [ $i -lt 80 ]; do i=$((i+1)); echo line $i; sleep 0.05; done\n"
                      "exec sleep 60\n")  # fmt: skip
    async with session() as s:
        cmd = ["xterm", "-geometry", "40x12+20+20", "-title", "scroll", "-e", "sh", str(script)]
        with x_client(cmd, s.display):
            wait_window(s.display, "scroll")
            copies = 0
            deadline = time.monotonic() + 30
            while copies == 0 and time.monotonic() < deadline:
                await s.update()
                copies += sum(r[4] == Encoding.COPYRECT for r in s.dec.updates[-1].rects)
            assert copies, "a scrolling terminal was never sent as a copy"
            await asyncio.sleep(4.5)  # the 80 lines are printed
            await s.until_exact()


#: A page scrolled in one window with its scroll bar drawn in the same window (as a
#: browser draws it): the thumb moves a little each step, so a few rows of the window
#: change in a way that does not follow the text.
PAGE_SCROLL = """
import sys, tkinter as tk
root = tk.Tk(); root.title("page"); root.geometry("420x300+30+30")
c = tk.Canvas(root, width=420, height=300, bg="white", highlightthickness=0); c.pack()
for i in range(120):
    c.create_text(8, 8 + 18 * i, anchor="nw", text=f"line {i} " + "word " * (i % 9 + 3),
                  font=("TkFixedFont", 11), tags="text")
thumb = c.create_rectangle(404, 0, 418, 60, fill="gray50", outline="")
steps = [0]
def step():
    if steps[0] < 60:
        steps[0] += 1
        c.move("text", 0, -18)
        c.coords(thumb, 404, 4 * steps[0], 418, 60 + 4 * steps[0])
        root.after(120, step)
root.after(500, step)
root.mainloop()
"""


async def test_a_scroll_bar_drawn_beside_the_text_does_not_split_the_copy(
    tmp_path: Path,
) -> None:
    script = tmp_path / "page.py"
    script.write_text(PAGE_SCROLL)
    async with session() as s:
        with x_client([sys.executable, str(script)], s.display):
            _x, _y, _w, h = wait_window(s.display, "page")
            tallest = 0
            deadline = time.monotonic() + 30
            while tallest < h * 3 // 4 and time.monotonic() < deadline:
                await s.update()
                copies = [r for r in s.dec.updates[-1].rects if r[4] == Encoding.COPYRECT]
                tallest = max([tallest, *(r[3] for r in copies)])
            # One step moves all but one line of text: the copy covers those rows, the
            # thumb's changed pixels come as pixels after it.
            assert tallest >= h * 3 // 4, f"the tallest copy was {tallest} of {h} rows"
            await asyncio.sleep(8)  # the 60 steps are done
            await s.until_exact()


async def test_the_first_update_after_input_goes_out_at_once() -> None:
    """A key typed right after an update is answered without waiting for the next frame
    slot: with max_fps=0.25 the old pacing held it back for four seconds."""
    with xvfb(W, H) as display:
        capture = CountingCapture(display)
        injector = X11Input(display)
        pipe = Pipe()
        service = RFBService(capture, injector, pipe.read, pipe.write, name="x", max_fps=0.25)
        task = asyncio.create_task(service.run())
        try:
            await pipe.handshake()
            dec = Decoder(W, H, service.server.pixel_format)  # type: ignore[union-attr]
            await pipe.to_server.put(set_encodings(Encoding.ZRLE))
            with x_client(["xterm", "-geometry", "20x4+10+10", "-title", "keys", "-e", "cat"],
                          display):  # fmt: skip
                wx, wy, _w, _h = wait_window(display, "keys")
                # The pointer into the xterm (focus follows it: no window manager).
                await pipe.to_server.put(struct.pack("!BBHH", 5, 0, wx + 20, wy + 20))
                await asyncio.sleep(0.3)
                await pipe.to_server.put(update_request(False, 0, 0, W, H))
                await pipe.receive(dec, lambda: len(dec.updates) == 1)
                await pipe.to_server.put(update_request(True, 0, 0, W, H))
                before = dec.fb.copy()
                await pipe.to_server.put(b"\x04\x01\x00\x00\x00\x00\x00\x78")  # 'x' down
                await pipe.to_server.put(b"\x04\x00\x00\x00\x00\x00\x00\x78")  # 'x' up
                # Well within the frame interval (4 s) that pacing would have waited out.
                await pipe.receive(dec, lambda: len(dec.updates) == 2, timeout=3)
                assert not np.array_equal(before, dec.fb)
        finally:
            await pipe.to_server.put(b"")
            await asyncio.wait_for(task, 10)
            capture.close()
            injector.close()


def test_capture_reports_damage_on_its_descriptor(tmp_path: Path) -> None:
    with xvfb(320, 240) as display, X11Capture(display) as cap:
        assert cap.changed_regions() is None
        fd = cap.fileno()
        assert fd is not None
        assert select.select([fd], [], [], 0.3)[0] == [] and not cap.events_queued()
        with x_client(["xterm", "-geometry", "10x2+40+30", "-title", "ev"], display):
            wait_window(display, "ev")
            assert select.select([fd], [], [], 10)[0] == [fd]
            time.sleep(0.3)  # let xterm finish drawing
            regions = cap.changed_regions()
            assert regions
            parts = cap.grab_rects(regions)
            whole = cap.grab()
        assert parts is not None
        for r, p in zip(regions, parts, strict=True):
            assert p.shape == (r.h, r.w, 4) and p.flags.owndata
            assert np.array_equal(p[..., :3], whole[r.y : r.y + r.h, r.x : r.x + r.w, :3])
        assert cap.rect_grabs == len(regions)
        assert cap.pixels_grabbed == sum(r.w * r.h for r in regions) + 320 * 240


async def test_a_moved_window_goes_as_a_copy_of_its_old_place() -> None:
    async with session() as s:
        cmd = ["xterm", "-geometry", "30x8+40+40", "-title", "mover", "-e", "sh", "-c",
               "seq 1 8; exec sleep 60"]  # fmt: skip
        with x_client(cmd, s.display):
            wait_window(s.display, "mover")
            # The pointer out of the way: a window moved under it takes the focus and
            # redraws its cursor, which is then rightly no copy.
            await run_text("xdotool", "mousemove", "470", "350", s.display)
            await s.until_exact()
            wid = await run_text("xdotool", "search", "--sync", "--name", "^mover$", s.display)
            copies: list[tuple[int, int, int, int, int]] = []
            for step in range(1, 4):  # right, then down, then diagonally
                x, y = 40 + 37 * min(step, 3), 40 + 23 * max(step - 1, 0)
                await run_text("xdotool", "windowmove", "--sync", wid.split()[0], str(x), str(y),
                               s.display)  # fmt: skip
                await s.until_exact()
                copies += [r for u in s.dec.updates for r in u.rects if r[4] == Encoding.COPYRECT]
                s.dec.updates.clear()
            # Each move is one copy of the whole window (xterm's size, its border included).
            sizes = {(r[2], r[3]) for r in copies}
            assert len(copies) >= 3 and len(sizes) == 1, copies


def test_capture_names_windows_mapped_and_unmapped() -> None:
    """``recently_shown`` gives a top-level window's outer rectangle for a while after it
    is mapped and again after it is unmapped (a dialog opening and closing)."""
    from enkaku.agent.capture.x11 import SHOWN_FOR

    with xvfb(W, H) as display:
        cap = X11Capture(display)
        try:
            assert cap.changed_regions() is None  # primes the damage
            assert cap.recently_shown() == []
            with x_client(["xterm", "-geometry", "20x4+100+80", "-title", "dlg"], display):
                x, y, w, h = wait_window(display, "dlg")
                cap.changed_regions()
                shown = cap.recently_shown()
                assert shown and all(r.intersect(Rect(x, y, w, h)) for r in shown)
                assert any(r.intersect(Rect(x, y, w, h)) == Rect(x, y, w, h) for r in shown)
                time.sleep(SHOWN_FOR)
                cap.changed_regions()
                assert cap.recently_shown() == []  # forgotten after a while
            deadline = time.monotonic() + 20
            gone: list[Rect] = []
            while not gone:  # the unmap arrives once xterm has exited
                assert time.monotonic() < deadline, "the unmapped window was never named"
                time.sleep(0.05)
                cap.changed_regions()
                gone = cap.recently_shown()
            assert any(r.intersect(Rect(x, y, w, h)) == Rect(x, y, w, h) for r in gone)
        finally:
            cap.close()


async def run_text(*args: str) -> str:
    """Run an X client (the last argument is the display) and return its output."""
    *cmd, display = args
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=x_env(display), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, cmd
    return out.decode()


#: A wide page scrolled sideways in a Tk canvas (a spreadsheet or a code editor scrolled
#: right), with a real horizontal scroll bar under it whose thumb moves each step.
SIDEWAYS_SCROLL = """
import sys, tkinter as tk
root = tk.Tk(); root.title("wide"); root.geometry("440x300+20+30")
c = tk.Canvas(root, width=440, height=280, bg="white", highlightthickness=0,
              xscrollincrement=24, scrollregion=(0, 0, 3200, 280))
bar = tk.Scrollbar(root, orient="horizontal", command=c.xview)
c.configure(xscrollcommand=bar.set)
c.pack(side="top", fill="both", expand=True); bar.pack(side="bottom", fill="x")
for i in range(15):
    c.create_text(6, 6 + 18 * i, anchor="nw", font=("TkFixedFont", 11),
                  text=" ".join(f"r{i}c{j}:{(i * 37 + j * 11) % 997}" for j in range(160)))
steps = [0]
def step():  # 30 steps right, then 30 back left
    if steps[0] < 60:
        steps[0] += 1
        c.xview_scroll(1 if steps[0] <= 30 else -1, "units")
        root.after(150, step)
root.after(500, step)
root.mainloop()
"""


async def largest_copies(
    s: Session,
    script: str,
    title: str,
    kind: Callable[[Rect, int, int], int | None],
    kinds: set[int],
    settle: float,
) -> tuple[dict[int, int], int]:
    """Run the Tk ``script`` (a window titled ``title`` that moves its content on its
    own, then stops) and keep updates coming until, for every key in ``kinds``, a copy
    the service found and the viewer received covers half the window; ``kind`` gives a
    copy's key from (dest, src_x, src_y), or None. Then waits ``settle`` s for the
    script's steps to end and for the viewer to be exact. Returns the largest copy per
    key and the window's area."""
    found: list[tuple[Rect, int, int]] = []  # the service's copies: dest, src_x, src_y
    grab_damage = s.service._grab_damage

    def spy(regions: list[Rect]) -> list[Copy] | None:
        copies = grab_damage(regions)
        for c in copies or []:
            found.append((Rect(c.dest.x, c.dest.y, c.dest.w, c.dest.h), c.src_x, c.src_y))
        return copies

    s.service._grab_damage = spy  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{title}.py"
        path.write_text(script)
        with x_client([sys.executable, str(path)], s.display):
            _x, _y, w, h = wait_window(s.display, title)
            best = dict.fromkeys(kinds, 0)
            deadline = time.monotonic() + 40
            while min(best.values()) < w * h // 2 and time.monotonic() < deadline:
                found.clear()
                try:
                    await s.update(timeout=5)
                except TimeoutError:
                    break  # the moving is over
                sent = {r[:4] for r in s.dec.updates[-1].rects if r[4] == Encoding.COPYRECT}
                for d, sx, sy in found:
                    key = kind(d, sx, sy)
                    if key in best and (d.x, d.y, d.w, d.h) in sent:
                        best[key] = max(best[key], d.w * d.h)
            await asyncio.sleep(settle)  # the script's steps are done
            await s.until_exact()
    return best, w * h


async def test_content_scrolled_sideways_goes_as_a_horizontal_copy() -> None:
    async with session() as s:
        # The largest sideways copy sent, content moved left (1) and right (-1).
        best, area = await largest_copies(
            s, SIDEWAYS_SCROLL, "wide",
            lambda d, sx, sy: (1 if sx > d.x else -1) if sy == d.y and sx != d.x else None,
            {1, -1}, settle=10,
        )  # fmt: skip
        # One step moves the whole canvas but the 24 columns it uncovers: the copy
        # covers most of the window (the canvas is 280 of its 300 rows).
        assert min(best.values()) >= area // 2, f"largest sideways copies {best} of {area}"


#: A map-like picture panned both ways inside a window (a map, a drawing, a page zoomed
#: in): the X server says nothing of it, unlike a moved window.
DIAGONAL_PAN = """
import sys, tkinter as tk
root = tk.Tk(); root.title("pan"); root.geometry("400x300+30+20")
c = tk.Canvas(root, width=400, height=300, bg="#e8efe0", highlightthickness=0,
              xscrollincrement=1, yscrollincrement=1, scrollregion=(0, 0, 2400, 1800))
c.pack(fill="both", expand=True)
for i in range(0, 2400, 60):
    c.create_line(i, 0, i, 1800, fill="#b8c4a8")
for j in range(0, 1800, 60):
    c.create_line(0, j, 2400, j, fill="#b8c4a8")
for k in range(300):
    x, y = (k * 97) % 2300, (k * 61) % 1700
    c.create_rectangle(x, y, x + 40, y + 24, fill=("#c0392b", "#2a7de1", "#2e9e5b")[k % 3])
    c.create_text(x + 20, y + 34, text=f"P{k}", font=("TkFixedFont", 9))
steps = [0]
def step():  # 24 steps down-right, then 24 back up-left
    if steps[0] < 48:
        steps[0] += 1
        d = 1 if steps[0] <= 24 else -1
        c.xview_scroll(11 * d, "units"); c.yview_scroll(7 * d, "units")
        root.after(200, step)
root.after(500, step)
root.mainloop()
"""


async def test_a_picture_panned_diagonally_in_a_window_goes_as_copies() -> None:
    async with session() as s:
        best, area = await largest_copies(
            s, DIAGONAL_PAN, "pan",
            lambda d, sx, sy: 0 if sx != d.x and sy != d.y else None, {0}, settle=12,
        )  # fmt: skip
        # A step moves the whole canvas but the strips it uncovers (11 columns and
        # 7 rows, more when steps come together): most of the window is a copy.
        assert best[0] >= area // 2, f"largest diagonal copy {best[0]} of {area}"
