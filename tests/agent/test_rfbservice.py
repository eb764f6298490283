"""RFBService over real loopback TCP against real viewers: vncdotool and TigerVNC.

The screen is a fake ScreenCapture over a numpy image; input lands in a recording fake
InputInjector. Viewers are separate processes nobody here wrote; waits are polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from enkaku.agent import rfbservice as rfbservice_module
from enkaku.agent.capture.base import CursorImage, Rect
from enkaku.agent.rfbservice import RFBService, changed_tiles
from enkaku.protocol.rfb import Encoding
from tests.protocol.rfb.decoders import sample_image
from tests.xdisplay import x_env, xvfb

VNCDO = str(Path(sys.executable).with_name("vncdo"))
W, H = 320, 240


class FakeCapture:
    """A ScreenCapture over a BGRX numpy image the test may change."""

    def __init__(self, image: np.ndarray, *, regions: bool = False) -> None:
        self.image = image
        self.regions = regions
        self.pending: list[Rect] | None = None
        self.lock = threading.Lock()
        self.cursor_image: CursorImage | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def grab(self) -> np.ndarray:
        with self.lock:
            return self.image.copy()

    def changed_regions(self) -> list[Rect] | None:
        if not self.regions:
            return None
        with self.lock:
            out, self.pending = self.pending, []
        return out

    def cursor(self) -> CursorImage | None:
        return self.cursor_image

    def close(self) -> None:
        pass

    def set_image(self, image: np.ndarray, region: Rect | None = None) -> None:
        with self.lock:
            self.image = image
            if self.pending is not None and region is not None:
                self.pending.append(region)


@dataclass
class RecordingInjector:
    calls: list[tuple] = field(default_factory=list)

    def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
        self.calls.append(("key", keysym, down, scancode))

    def pointer(self, x: int, y: int, buttons: int) -> None:
        self.calls.append(("pointer", x, y, buttons))

    def release_all(self) -> None:
        self.calls.append(("release_all",))

    def close(self) -> None:
        pass


@dataclass
class Served:
    port: int
    services: list[RFBService] = field(default_factory=list)
    finished: list[asyncio.Task] = field(default_factory=list)

    async def wait_closed(self, count: int = 1, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while sum(t.done() for t in self.finished) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for t in self.finished:
            t.result()


@contextlib.asynccontextmanager
async def serve(capture: FakeCapture, injector: RecordingInjector, **kw) -> AsyncIterator[Served]:
    """RFBService on 127.0.0.1:<free port>, one service per connection."""
    served = Served(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        service = RFBService(
            capture, injector, lambda: reader.read(65536), write, name="enkaku test", **kw
        )
        served.services.append(service)
        task = asyncio.current_task()
        assert task is not None
        served.finished.append(task)
        try:
            await service.run()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    served.port = server.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        server.close()
        await server.wait_closed()


async def run(*args: str, timeout: float = 60, env: dict | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")
    return out


def rgb(image: np.ndarray) -> np.ndarray:
    return image[..., 2::-1]


# -- unit level ----------------------------------------------------------------------


def test_changed_tiles_merges_runs() -> None:
    a = np.zeros((200, 300, 4), np.uint8)
    b = a.copy()
    b[10, 10, 0] = 1
    b[10, 70, 0] = 1  # the neighbouring tile: one run of two tiles
    b[150:199, 250, 1] = 1  # two tiles stacked in the last column
    b[100, 100, 3] = 9  # the X byte alone is no change
    assert sorted((r.x, r.y, r.w, r.h) for r in changed_tiles(a, b)) == [
        (0, 0, 128, 64),
        (192, 128, 64, 72),
    ]
    assert changed_tiles(a, a) == []


# -- vncdotool -----------------------------------------------------------------------

ZRLE_VNCDO = (
    "import sys\n"
    "from vncdotool import client, command, rfb\n"
    "client.VNCDoToolClient.encoding = rfb.Encoding.ZRLE\n"
    "command.vncdo(sys.argv[1:])\n"
)


def count_streamed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the updates streamed band by band from now on (one entry each)."""
    from enkaku.protocol.rfb.server import PendingUpdate

    streamed: list[int] = []
    stream = PendingUpdate.stream

    def counted(self: PendingUpdate, emit: Any) -> None:
        streamed.append(1)
        stream(self, emit)

    monkeypatch.setattr(PendingUpdate, "stream", counted)
    return streamed


#: A screen large enough for its first update to be streamed in bands (1000×600).
BIG_H, BIG_W = 600, 1000


@pytest.mark.parametrize(
    "variant",
    ["raw", "raw-nocursor", "zrle", "zrle-xdamage", "zrle-streamed", "raw-streamed"],
)
async def test_vncdotool_capture_is_pixel_exact(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streamed = count_streamed(monkeypatch)
    big = variant.endswith("streamed")
    image = sample_image(BIG_H, BIG_W, seed=7) if big else sample_image(H, W, seed=7)
    capture = FakeCapture(image, regions=variant.endswith("xdamage"))
    cursor = np.zeros((8, 8, 4), np.uint8)
    cursor[..., 3] = 255
    capture.cursor_image = CursorImage(cursor, 1, 1, serial=1)
    injector = RecordingInjector()
    out = tmp_path / "out.png"
    async with serve(capture, injector) as served:
        target = f"127.0.0.1::{served.port}"
        extra = ["--nocursor"] if "nocursor" in variant else []
        if variant.startswith("zrle"):
            cmd = [sys.executable, "-c", ZRLE_VNCDO, "-s", target, *extra, "capture", str(out)]
        else:
            cmd = [VNCDO, "-s", target, *extra, "capture", str(out)]
        await run(*cmd)
        await served.wait_closed()
        server = served.services[0].server
        assert server is not None
        expected = Encoding.ZRLE if variant.startswith("zrle") else Encoding.RAW
        assert server.encoding == expected
        assert (Encoding.CURSOR in server.encodings) == ("nocursor" in variant)
    got = np.asarray(Image.open(out).convert("RGB"))
    np.testing.assert_array_equal(got, rgb(image))
    assert injector.calls == [("release_all",)]
    assert bool(streamed) == big


async def test_vncdotool_input_reaches_the_injector() -> None:
    capture = FakeCapture(sample_image(H, W))
    injector = RecordingInjector()
    async with serve(capture, injector) as served:
        target = f"127.0.0.1::{served.port}"
        await run(
            VNCDO, "-s", target, "key", "a", "type", "hello", "move", "10", "20", "click", "1"
        )
        await served.wait_closed()
    keys = [c[1:] for c in injector.calls if c[0] == "key"]
    expected = [(ord("a"), True, None), (ord("a"), False, None)]
    for ch in "hello":
        expected += [(ord(ch), True, None), (ord(ch), False, None)]
    assert keys == expected
    pointers = [c[1:] for c in injector.calls if c[0] == "pointer"]
    assert pointers == [(10, 20, 0), (10, 20, 1), (10, 20, 0)]
    assert injector.calls[-1] == ("release_all",)


async def test_input_is_dropped_without_control() -> None:
    capture = FakeCapture(sample_image(H, W))
    injector = RecordingInjector()
    async with serve(capture, injector, control_allowed=lambda: False) as served:
        await run(VNCDO, "-s", f"127.0.0.1::{served.port}", "key", "a", "move", "1", "2")
        await served.wait_closed()
    assert injector.calls == [("release_all",)]


# -- TigerVNC ------------------------------------------------------------------------


def screenshot(display: str) -> np.ndarray:
    data = subprocess.run(
        ["import", "-window", "root", "png:-"],
        env=x_env(display),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def locate(screen: np.ndarray, image: np.ndarray) -> tuple[int, int] | None:
    """Top-left corner where ``image`` (h, w, 3) appears exactly in ``screen``."""
    h, w = image.shape[:2]
    ay, ax = 0, w - 1  # a noisy pixel: few false candidates
    ys, xs = np.nonzero((screen == image[ay, ax]).all(axis=2))
    for y, x in zip(ys - ay, xs - ax, strict=True):
        inside = 0 <= y <= screen.shape[0] - h and 0 <= x <= screen.shape[1] - w
        if inside and np.array_equal(screen[y : y + h, x : x + w], image):
            return int(x), int(y)
    return None


async def wait_for_image(display: str, image: np.ndarray, timeout: float = 45) -> tuple[int, int]:
    async with asyncio.timeout(timeout):
        while True:
            screen = await asyncio.to_thread(screenshot, display)
            where = locate(screen, image)
            if where is not None:
                return where
            await asyncio.sleep(0.3)


needs_tigervnc = pytest.mark.skipif(
    shutil.which("xtigervncviewer") is None or shutil.which("import") is None,
    reason="xtigervncviewer and ImageMagick are needed",
)


@pytest.mark.x11
@needs_tigervnc
@pytest.mark.parametrize(
    ("encoding", "options", "regions"),
    [
        ("Tight", ["-NoJPEG"], False),
        ("ZRLE", ["-NoJPEG"], True),
        ("Raw", [], False),
        ("ZRLE", ["streamed"], True),
    ],
)
async def test_tigervnc_shows_the_screen_exactly(
    encoding: str, options: list[str], regions: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    streamed = count_streamed(monkeypatch)
    big = options == ["streamed"]  # the first update goes out band by band
    options = [] if big else options
    image = sample_image(BIG_H, BIG_W, seed=11) if big else sample_image(H, W, seed=11)
    capture = FakeCapture(image, regions=regions)
    injector = RecordingInjector()
    with xvfb() as display:
        async with serve(capture, injector) as served:
            proc = await asyncio.create_subprocess_exec(
                "xtigervncviewer",
                "-FullScreen=0",
                "-AutoSelect=0",
                "-FullColor=1",
                f"-PreferredEncoding={encoding}",
                "-RemoteResize=0",
                *options,
                f"127.0.0.1::{served.port}",
                env=x_env(display),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                await wait_for_image(display, rgb(image))
                # an incremental change travels too (damage found by diffing or regions)
                changed = image.copy()
                changed[50:120, 30:200] = sample_image(70, 170, seed=12)
                capture.set_image(changed, Rect(30, 50, 170, 70))
                await wait_for_image(display, rgb(changed))
                server = served.services[0].server
                assert server is not None
                assert server.encoding == getattr(Encoding, encoding.upper())
                if "-NoJPEG" in options:
                    assert server.options.jpeg_quality is None
                assert bool(streamed) == big
            finally:
                proc.terminate()
                await proc.wait()
            await served.wait_closed()
    assert injector.calls[-1] == ("release_all",)


async def start_viewer(display: str, port: int, *options: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "xtigervncviewer",
        "-FullScreen=0",
        "-AutoSelect=0",
        "-FullColor=1",
        "-RemoteResize=0",
        *options,
        f"127.0.0.1::{port}",
        env=x_env(display),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.x11
@needs_tigervnc
async def test_tigervnc_jpeg_is_close(monkeypatch: pytest.MonkeyPatch) -> None:
    # The still screen would be sent again losslessly after LOSSLESS_REFRESH_DELAY, and a
    # screenshot taken after that is exact: keep the JPEG picture on screen for this test.
    monkeypatch.setattr(rfbservice_module, "LOSSLESS_REFRESH_DELAY", 3600.0)
    image = sample_image(H, W, seed=13)
    flat = image[0, 0, 2::-1]  # the flat block at the top left: Tight fill, exact
    injector = RecordingInjector()
    with xvfb() as display:
        async with serve(FakeCapture(image), injector) as served:
            proc = await start_viewer(
                display, served.port, "-PreferredEncoding=Tight", "-QualityLevel=9"
            )
            try:
                async with asyncio.timeout(45):
                    while True:
                        screen = await asyncio.to_thread(screenshot, display)
                        ys, xs = np.nonzero((screen == flat).all(axis=2))
                        if ys.size:
                            y, x = int(ys[0]), int(xs[0])
                            shown = screen[y : y + H, x : x + W].astype(int)
                            if shown.shape == (H, W, 3):
                                error = np.abs(shown - rgb(image).astype(int))
                                if error.mean() < 4:
                                    break
                        await asyncio.sleep(0.3)
                server = served.services[0].server
                assert server is not None
                assert server.encoding == Encoding.TIGHT
                assert server.options.jpeg_quality == 100
                assert locate(screen, rgb(image)) is None  # lossy: not exact
            finally:
                proc.terminate()
                await proc.wait()
            await served.wait_closed()


@pytest.mark.x11
@needs_tigervnc
async def test_tigervnc_input_with_scancodes() -> None:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is needed")
    image = sample_image(H, W, seed=17)
    injector = RecordingInjector()
    with xvfb() as display:
        async with serve(FakeCapture(image), injector) as served:
            proc = await start_viewer(display, served.port, "-PreferredEncoding=ZRLE")
            try:
                x, y = await wait_for_image(display, rgb(image))
                # No window manager here: give the viewer keyboard focus ourselves.
                await run(
                    "xdotool", "search", "--sync", "--name", "enkaku test", "windowfocus",
                    "mousemove", str(x + 100), str(y + 50), "click", "1",
                    "key", "a", env=x_env(display),
                )  # fmt: skip
                async with asyncio.timeout(30):
                    while not any(c[0] == "key" and not c[2] for c in injector.calls):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
            finally:
                proc.terminate()
                await proc.wait()
            await served.wait_closed()
    pointers = [c[1:] for c in injector.calls if c[0] == "pointer"]
    assert (100, 50, 1) in pointers and pointers[-1] == (100, 50, 0)
    keys = [c[1:] for c in injector.calls if c[0] == "key"]
    # TigerVNC uses the QEMU Extended Key Event we announced: keysym plus XT scancode
    assert keys == [(ord("a"), True, 0x1E), (ord("a"), False, 0x1E)]


# -- in memory, our own decoder as the viewer ----------------------------------------


class Pipe:
    """The viewer's end of an in-memory connection to an RFBService."""

    def __init__(self) -> None:
        self.to_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.from_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.received = bytearray()  # not yet a whole message (a streamed update's bands)

    async def read(self) -> bytes:
        return await self.to_server.get()

    async def write(self, data: bytes) -> None:
        await self.from_server.put(data)

    async def first_frame(self, service: RFBService, w: int, h: int) -> Any:
        """Handshake, ZRLE, a full update request and its update: the viewer's decoder,
        holding the screen as it was."""
        from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request

        await self.handshake()
        dec = Decoder(w, h, service.server.pixel_format)  # type: ignore[union-attr]
        await self.to_server.put(set_encodings(Encoding.ZRLE))
        await self.to_server.put(update_request(False, 0, 0, w, h))
        await self.receive(dec, lambda: len(dec.updates) == 1)
        return dec

    async def handshake(self) -> bytes:
        """RFB 3.8 with security type None and a shared ClientInit; returns ServerInit."""
        assert await self.from_server.get() == b"RFB 003.008\n"
        await self.to_server.put(b"RFB 003.008\n")
        assert await self.from_server.get() == b"\x01\x01"
        await self.to_server.put(b"\x01")
        assert await self.from_server.get() == b"\x00\x00\x00\x00"
        await self.to_server.put(b"\x01")
        return await self.from_server.get()

    async def receive(self, dec, until, timeout: float = 10) -> None:
        from tests.protocol.rfb.decoders import whole_messages

        async with asyncio.timeout(timeout):
            while not until():
                self.received += await self.from_server.get()
                # Whole messages only; Tight (not framed without decoding) is never
                # streamed in these tests and comes whole.
                n = whole_messages(self.received, dec.pf.bits_per_pixel // 8)
                n = len(self.received) if n is None else n
                if n:
                    dec.feed(bytes(self.received[:n]))
                    del self.received[:n]

    async def catch_up(self, dec, screen, timeout: float = 30) -> None:
        """Ask for incremental updates until the viewer's picture is ``screen()`` (a
        blocking call, run in a thread)."""
        from tests.protocol.rfb.decoders import update_request

        deadline = time.monotonic() + timeout
        while not np.array_equal(dec.fb, await asyncio.to_thread(screen)):
            assert time.monotonic() < deadline, "the viewer never caught up with the screen"
            n = len(dec.updates)
            await self.to_server.put(update_request(True, 0, 0, dec.width, dec.height))
            await self.receive(dec, lambda n=n: len(dec.updates) > n, 20)


async def test_in_memory_updates_resize_and_pause() -> None:
    from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request

    image = sample_image(60, 80)
    capture = FakeCapture(image)
    injector = RecordingInjector()
    allowed = [True]
    pipe = Pipe()
    service = RFBService(
        capture, injector, pipe.read, pipe.write, name="mem", control_allowed=lambda: allowed[0]
    )
    task = asyncio.create_task(service.run())
    init = await pipe.handshake()
    dec = Decoder(80, 60, service.server.pixel_format)  # type: ignore[union-attr]
    assert init[:4] == b"\x00\x50\x00\x3c"
    await pipe.to_server.put(set_encodings(Encoding.TIGHT, Encoding.DESKTOP_SIZE))
    await pipe.to_server.put(update_request(False, 0, 0, 80, 60))
    await pipe.receive(dec, lambda: len(dec.updates) == 1)
    np.testing.assert_array_equal(dec.fb, dec.pf.values(image))
    # an incremental request is answered only once something changes
    await pipe.to_server.put(update_request(True, 0, 0, 80, 60))
    await asyncio.sleep(0.3)
    assert pipe.from_server.empty()
    changed = image.copy()
    changed[5:9, 70:80] = 255
    capture.set_image(changed)
    await pipe.receive(dec, lambda: len(dec.updates) == 2)
    assert dec.updates[1].rects == [(64, 0, 16, 60, Encoding.TIGHT)]  # one dirty tile column
    np.testing.assert_array_equal(dec.fb, dec.pf.values(changed))
    # the screen grows: DesktopSize, then the whole new screen
    bigger = sample_image(70, 100, seed=3)
    capture.set_image(bigger)
    await pipe.to_server.put(update_request(True, 0, 0, 80, 60))
    await pipe.receive(dec, lambda: dec.desktop_sizes != [])
    await pipe.to_server.put(update_request(True, 0, 0, 100, 70))
    await pipe.receive(dec, lambda: len(dec.updates) == 4)
    np.testing.assert_array_equal(dec.fb, dec.pf.values(bigger))
    # input flows while allowed; pausing drops it and releases held keys once
    await pipe.to_server.put(b"\x04\x01\x00\x00\x00\x00\x00\x61")
    async with asyncio.timeout(10):
        while not injector.calls:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    allowed[0] = False
    await pipe.to_server.put(b"\x05\x01\x00\x01\x00\x02")
    await pipe.to_server.put(b"\x04\x00\x00\x00\x00\x00\x00\x61")
    await pipe.to_server.put(b"")  # EOF
    await asyncio.wait_for(task, 10)
    assert injector.calls == [("key", 0x61, True, None), ("release_all",), ("release_all",)]


async def test_jpeg_areas_are_refreshed_losslessly_when_idle() -> None:
    """noVNC always asks for JPEG: areas left unchanged must end up exact on its canvas."""
    from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request

    image = np.random.default_rng(21).integers(0, 256, (60, 80, 4), dtype=np.uint8)
    capture = FakeCapture(image)
    pipe = Pipe()
    service = RFBService(capture, RecordingInjector(), pipe.read, pipe.write, name="mem")
    task = asyncio.create_task(service.run())
    await pipe.handshake()
    dec = Decoder(80, 60, service.server.pixel_format)  # type: ignore[union-attr]
    await pipe.to_server.put(set_encodings(Encoding.TIGHT, Encoding.JPEG_QUALITY_LOW + 6))
    await pipe.to_server.put(update_request(False, 0, 0, 80, 60))
    await pipe.receive(dec, lambda: len(dec.updates) == 1)
    assert dec.jpeg_rects == 1 and not np.array_equal(dec.fb, dec.pf.values(image))
    await pipe.to_server.put(update_request(True, 0, 0, 80, 60))
    await pipe.receive(dec, lambda: len(dec.updates) == 2)
    assert dec.updates[1].rects == [(0, 0, 80, 60, Encoding.TIGHT)] and dec.jpeg_rects == 1
    np.testing.assert_array_equal(dec.fb, dec.pf.values(image))
    await pipe.to_server.put(update_request(True, 0, 0, 80, 60))
    await asyncio.sleep(0.8)
    assert pipe.from_server.empty()  # refreshed once, then quiet
    await pipe.to_server.put(b"")  # EOF
    await asyncio.wait_for(task, 10)


# -- scroll detection ----------------------------------------------------------------


class _RectCapture(FakeCapture):
    """A fake screen that also hands out rectangles (the damage step's ``grab_rects``)."""

    def grab_rects(self, rects: list[Rect]) -> list[np.ndarray]:
        return [self.image[r.y : r.y + r.h, r.x : r.x + r.w].copy() for r in rects]


def _damage_step_service(screen: np.ndarray) -> tuple[_RectCapture, RFBService]:
    """An RFBService over a fake ``screen`` whose kept frame is that screen (X bytes
    clear), for calling the damage step directly."""
    from enkaku.agent.rfbservice import _clear_x

    async def no_read() -> bytes:
        return b""

    async def no_write(_: bytes) -> None:
        return None

    capture = _RectCapture(screen.copy())
    service = RFBService(capture, RecordingInjector(), no_read, no_write, name="t")
    service._previous = _clear_x(screen.copy())
    return capture, service


def _text_block(rows: int, cols: int, seed: int) -> np.ndarray:
    """BGRX 'terminal' rows: every 4th row blank, the others distinct, X bytes garbage."""
    rng = np.random.default_rng(seed)
    block = np.zeros((rows, cols, 4), dtype=np.uint8)
    block[..., :3] = rng.integers(0, 2, (rows, cols, 1)) * 255
    block[::4, :, :3] = 40
    block[..., 3] = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
    return block


@pytest.mark.parametrize("dy", [1, 13, 40, -7])
def test_find_vertical_copy_finds_the_shift(dy: int) -> None:
    from enkaku.agent.rfbservice import find_vertical_copy

    tall = _text_block(200, 96, seed=dy % 17)
    old = tall[50:150]
    new = tall[50 + dy : 150 + dy].copy()
    new[..., 3] = 7  # X bytes differ: ignored
    found = find_vertical_copy(old, new)
    assert found is not None
    a, b, shift = found
    assert shift == dy
    assert b - a == 100 - abs(dy)
    np.testing.assert_array_equal(new[a:b, :, :3], old[a + shift : b + shift, :, :3])


def test_find_vertical_copy_rejects_unrelated_content() -> None:
    from enkaku.agent.rfbservice import find_vertical_copy

    assert find_vertical_copy(_text_block(80, 64, 1), _text_block(80, 64, 2)) is None
    blank = np.full((80, 64, 4), 40, dtype=np.uint8)
    assert find_vertical_copy(blank, blank.copy()) is None  # nothing moved


@pytest.mark.parametrize("dx", [1, 9, 40, -3, -24])
def test_find_horizontal_copy_finds_the_shift(dx: int) -> None:
    from enkaku.agent.rfbservice import find_horizontal_copy, find_vertical_copy

    wide = _text_block(90, 400, seed=dx % 13)
    old = wide[:, 100:300]
    new = wide[:, 100 + dx : 300 + dx].copy()
    new[..., 3] = 7  # X bytes differ: ignored
    found = find_horizontal_copy(old, new)
    assert found is not None
    top, bottom, left, right, shift = found
    assert (top, bottom, shift) == (0, 90, dx)
    assert right - left == 200 - abs(dx)
    np.testing.assert_array_equal(
        new[top:bottom, left:right, :3], old[top:bottom, left + dx : right + dx, :3]
    )
    assert find_vertical_copy(old, new) is None  # not a vertical move


def test_find_horizontal_copy_leaves_out_a_fixed_border_and_a_scroll_bar() -> None:
    """Row headers on the left that stay, and a scroll bar's rows at the bottom whose
    thumb moved: the copy is the part that moved, exactly."""
    from enkaku.agent.rfbservice import find_horizontal_copy

    wide = _text_block(120, 500, seed=21)
    old = wide[:, 100:340].copy()
    new = wide[:, 124:364].copy()
    new[:, :30] = old[:, :30]  # the fixed border
    old[104:, :, :3] = 180  # the scroll bar, its thumb moved 24 columns right
    new[104:, :, :3] = 180
    old[108:116, 60:100, :3] = 90
    new[108:116, 84:124, :3] = 90
    # Rows 104-107, the bar's plain top, are the same moved or not: exact, so copied.
    assert find_horizontal_copy(old, new) == (0, 108, 30, 216, 24)


def test_find_horizontal_copy_rejects_unrelated_content() -> None:
    from enkaku.agent.rfbservice import find_horizontal_copy

    assert find_horizontal_copy(_text_block(80, 200, 1), _text_block(80, 200, 2)) is None
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (80, 200, 4), dtype=np.uint8)
    assert find_horizontal_copy(noise, rng.integers(0, 256, (80, 200, 4), dtype=np.uint8)) is None
    blank = np.full((80, 200, 4), 40, dtype=np.uint8)
    assert find_horizontal_copy(blank, blank.copy()) is None  # nothing moved
    tall = _text_block(120, 200, seed=4)
    assert find_horizontal_copy(tall[:80], tall[20:100]) is None  # moved up, not sideways


def _probed(old: np.ndarray, new: np.ndarray) -> tuple[bool, bool]:
    """What the quick look before the copy searches says of a block: (a vertical move
    is possible, a sideways move is possible)."""
    from enkaku.agent.rfbservice import _clear_x, _may_scroll, _may_slide, _probes, _words

    o, n = _words(_clear_x(old)), _words(_clear_x(new))
    found = _probes(o, n)
    return _may_scroll(o, found), _may_slide(o, found)


@pytest.mark.parametrize("dy", [1, 13, 40, 60, -7, -55])
def test_the_probes_see_a_vertical_move(dy: int) -> None:
    """Also when the move exposes more than half the block: some probes still sit in
    the moved rows."""
    tall = _text_block(300, 160, seed=dy % 11)
    assert _probed(tall[100:200], tall[100 + dy : 200 + dy])[0]


@pytest.mark.parametrize("dx", [1, 9, 40, -3, -24, -90])
def test_the_probes_see_a_sideways_move(dx: int) -> None:
    """Either way: the probes are taken from the middle of each row, not at the end the
    move uncovers."""
    wide = _text_block(90, 400, seed=dx % 13)
    assert _probed(wide[:, 100:300], wide[:, 100 + dx : 300 + dx])[1]


def test_the_probes_see_no_move_in_a_new_picture() -> None:
    rng = np.random.default_rng(5)
    assert _probed(_text_block(120, 300, 1), _text_block(120, 300, 2)) == (False, False)
    noise = rng.integers(0, 256, (120, 300, 4), dtype=np.uint8)
    assert _probed(_text_block(120, 300, 3), noise) == (False, False)
    # Nothing but one colour changed into another: nothing to tell, so the searches run.
    blank = np.full((120, 300, 4), 40, dtype=np.uint8)
    assert _probed(blank, np.full_like(blank, 90)) == (True, True)


def _table(rows: int, cols: int, seed: int) -> np.ndarray:
    """BGRX: a table of striped rows 24 px high with 'words' (random glyph pixels) in
    cells, like a file list."""
    rng = np.random.default_rng(seed)
    table = np.zeros((rows, cols, 4), dtype=np.uint8)
    for top in range(0, rows, 24):
        table[top : top + 24, :, :3] = 255 if top // 24 % 2 else 244
        for left in range(8, cols - 90, 150):
            n = int(rng.integers(30, 90))
            ink = rng.integers(0, 2, (12, n, 1)) * rng.integers(60, 200)
            table[top + 6 : top + 18, left : left + n, :3] = np.where(
                ink > 0, ink, table[top + 6 : top + 18, left : left + n, :3]
            )
    return table


def test_a_dialog_opened_and_closed_over_a_table_is_not_searched_for_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A framed box of text drawn over a table, then the table again: the damage step
    looks for no copy (the probes find nothing moved) and the kept screen is exact."""
    searches: list[str] = []
    vertical = rfbservice_module._find_vertical_copy

    def spy_vertical(*args: object, **kwargs: object) -> object:
        searches.append("vertical")
        return vertical(*args, **kwargs)  # type: ignore[arg-type]

    sideways = RFBService._sideways

    def spy_sideways(*args: object) -> object:
        searches.append("sideways")
        return sideways(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(rfbservice_module, "_find_vertical_copy", spy_vertical)
    monkeypatch.setattr(RFBService, "_sideways", staticmethod(spy_sideways))
    screen = np.zeros((400, 800, 4), dtype=np.uint8)
    screen[:, :, :3] = 240
    screen[40:376, 20:780] = _table(336, 760, seed=8)
    capture, service = _damage_step_service(screen)
    dialog = screen.copy()
    box = dialog[100:270, 160:640]
    box[:, :, :3] = 250
    box[:2, :, :3], box[-2:, :, :3], box[:, :2, :3], box[:, -2:, :3] = 160, 90, 160, 90
    rng = np.random.default_rng(2)
    box[30:60, 90:420, :3] = rng.integers(0, 2, (30, 330, 1)) * 180 + 40  # the message
    box[120:150, 300:460, :3] = 210  # the buttons
    box[120:150, 300:302, :3] = 60
    damaged = [Rect(160, 100, 480, 170)]
    for picture in (dialog, screen):
        capture.image = picture.copy()
        service._damage = []
        assert service._grab_damage(damaged) == []
        assert service._damage  # sent as pixels
        np.testing.assert_array_equal(service._previous[..., :3], picture[..., :3])
    assert searches == []


@pytest.mark.parametrize("one_block", [False, True])
def test_a_window_moved_diagonally_is_one_copy_found_in_the_damage_bands(one_block: bool) -> None:
    """Damage as 32-row bands over the window's old and new places (what the GNOME
    capture reports), or as one block (a picture panned in its window): the move is
    found in their union and goes as one copy, and a viewer applying it and the damage
    has the new screen. One block is compared with the frame before its rows are
    copied in."""
    rng = np.random.default_rng(12)
    screen = np.zeros((480, 640, 4), dtype=np.uint8)
    screen[..., :3] = rng.integers(0, 3, (480, 640, 1)) * 40 + 100  # a textured desktop
    desktop = screen.copy()
    window = _text_block(200, 300, seed=6)
    screen[100:300, 100:400] = window
    capture, service = _damage_step_service(screen)
    before = service._previous.copy()
    moved = desktop.copy()
    moved[125:325, 140:440] = window  # 40 right, 25 down
    capture.image = moved
    bands = [Rect(100, y, 340, min(32, 325 - y)) for y in range(100, 325, 32)]
    copies = service._grab_damage([Rect(100, 100, 340, 225)] if one_block else bands)
    assert copies is not None
    assert len(copies) == 1
    c = copies[0]
    assert (c.src_x - c.dest.x, c.src_y - c.dest.y) == (-40, -25)
    assert c.dest.w * c.dest.h >= 280 * 180
    viewer = before[..., :3].copy()
    for c in copies:
        viewer[c.dest.y : c.dest.y + c.dest.h, c.dest.x : c.dest.x + c.dest.w] = before[
            c.src_y : c.src_y + c.dest.h, c.src_x : c.src_x + c.dest.w, :3
        ]
    for d in service._damage:
        viewer[d.y : d.y + d.h, d.x : d.x + d.w] = moved[d.y : d.y + d.h, d.x : d.x + d.w, :3]
    np.testing.assert_array_equal(viewer, moved[..., :3])
    np.testing.assert_array_equal(service._previous[..., :3], moved[..., :3])


def _diagonal_searches(monkeypatch: pytest.MonkeyPatch, polls: Callable[[], int]) -> list[int]:
    """The polls (``polls()`` at each call) at which the diagonal search runs, from now on."""
    from enkaku.agent import rfbservice as rs

    searched: list[int] = []
    find = rs.find_moved_block

    def spy(*args: object, **kwargs: object) -> object:
        searched.append(polls())
        return find(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rs, "find_moved_block", spy)
    return searched


def test_the_diagonal_search_rests_after_new_pictures_and_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New pictures (a slideshow, video) in a row: after MOTION_MISSES fruitless
    diagonal searches the search rests for 1, 2, 4 ... polls; a move found later is a
    copy again and the count starts over."""
    from enkaku.agent.rfbservice import _clear_x

    searched = _diagonal_searches(monkeypatch, lambda: service.polls)
    rng = np.random.default_rng(3)
    screen = np.zeros((300, 400, 4), dtype=np.uint8)
    capture, service = _damage_step_service(screen)
    whole = [Rect(0, 0, 400, 300)]
    for poll in range(12):
        service.polls = poll
        capture.image = screen.copy()
        capture.image[..., :3] = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
        assert service._grab_damage(whole) == []
    # Misses at polls 0, 1, 2, then rests of 1, 2, 4 polls between searches.
    assert searched == [0, 1, 2, 4, 7]
    # A picture panned both ways, once the rest is over: a copy, and no more rest.
    service.polls = 12
    old = _clear_x(capture.image.copy())
    service._previous = old.copy()
    service._damage = []  # the viewer has the last picture
    panned = screen.copy()
    panned[20:300, 30:400] = old[0:280, 0:370]  # 30 right, 20 down
    panned[:20, :, :3] = 9
    panned[:, :30, :3] = 9
    capture.image = panned
    copies = service._grab_damage(whole)
    assert copies is not None and len(copies) == 1
    assert (copies[0].src_x - copies[0].dest.x, copies[0].src_y - copies[0].dest.y) == (-30, -20)
    assert service._motion_misses == 0 and searched[-1] == 12


@pytest.mark.parametrize(("w", "h", "rests"), [(180, 150, True), (300, 200, False)])
def test_small_moves_found_let_the_diagonal_search_rest(
    w: int, h: int, rests: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block moved diagonally at every poll: one of fewer than MOTION_WORTH pixels
    (a terminal's row that changed places) is sent as a copy when found, but counts as
    a miss, so the search rests as after new pictures; a larger one (a window dragged)
    keeps it searching at every poll."""
    from enkaku.agent import rfbservice as rs

    assert (w * h < rs.MOTION_WORTH) == rests
    searched = _diagonal_searches(monkeypatch, lambda: service.polls)
    rng = np.random.default_rng(14)
    desktop = np.zeros((480, 640, 4), dtype=np.uint8)
    desktop[..., :3] = rng.integers(0, 3, (480, 640, 1)) * 40 + 100  # textured
    block = _text_block(h, w, seed=7)
    x, y = 40, 30
    screen = desktop.copy()
    screen[y : y + h, x : x + w] = block
    capture, service = _damage_step_service(screen)
    copies_found = []
    for poll in range(12):
        service.polls = poll
        service._damage = []
        nx, ny = x + 12, y + 9
        capture.image = desktop.copy()
        capture.image[ny : ny + h, nx : nx + w] = block
        copies = service._grab_damage([Rect(x, y, w + 12, h + 9)])
        assert copies is not None
        copies_found.append(len(copies))
        np.testing.assert_array_equal(service._previous[..., :3], capture.image[..., :3])
        x, y = nx, ny
    assert copies_found[0] == 1  # found and sent, small or not
    assert searched == ([0, 1, 2, 4, 7] if rests else list(range(12)))


def test_a_pan_that_goes_on_is_searched_diagonally_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a diagonal move, the next step of the same area goes straight to the
    diagonal search (a map's grid lines fool the vertical and sideways probes), and is
    a copy again, by another shift."""
    searches: list[str] = []
    vertical = rfbservice_module._find_vertical_copy
    sideways = RFBService._sideways

    def spy_vertical(*args: object, **kwargs: object) -> object:
        searches.append("vertical")
        return vertical(*args, **kwargs)  # type: ignore[arg-type]

    def spy_sideways(*args: object) -> object:
        searches.append("sideways")
        return sideways(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(rfbservice_module, "_find_vertical_copy", spy_vertical)
    monkeypatch.setattr(RFBService, "_sideways", staticmethod(spy_sideways))
    rng = np.random.default_rng(9)
    world = np.full((700, 900, 4), 235, dtype=np.uint8)  # a map: streets on a grid, blocks
    world[::45, :, :3] = 120
    world[:, ::45, :3] = 120
    for _ in range(300):
        bx, by = int(rng.integers(0, 860)), int(rng.integers(0, 680))
        world[by : by + 14, bx : bx + 30, :3] = rng.integers(0, 256, 3, dtype=np.uint8)

    def view(x: int, y: int) -> np.ndarray:
        screen = np.zeros((300, 400, 4), dtype=np.uint8)
        screen[...] = world[y : y + 300, x : x + 400]
        return screen

    capture, service = _damage_step_service(view(100, 100))
    whole = [Rect(0, 0, 400, 300)]
    for (x0, y0), (x, y) in itertools.pairwise([(100, 100), (108, 105), (114, 112)]):
        searches.clear()
        capture.image = view(x, y)
        service._damage = []  # the viewer has the last picture
        copies = service._grab_damage(whole)
        assert copies is not None and len(copies) == 1
        c = copies[0]
        assert (c.src_x - c.dest.x, c.src_y - c.dest.y) == (x - x0, y - y0)
    assert searches == []  # the second step: the diagonal search only


class FakeEventCapture(FakeCapture):
    """An event-driven capture: a pipe turns readable when the test changes the image."""

    def __init__(self, image: np.ndarray) -> None:
        super().__init__(image, regions=True)
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)

    def fileno(self) -> int:
        return self.read_fd

    def events_queued(self) -> bool:
        return False

    def changed_regions(self) -> list[Rect] | None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.read_fd, 4096)
        return super().changed_regions()

    def grab_rects(self, rects: list[Rect]) -> list[np.ndarray]:
        with self.lock:
            return [self.image[r.y : r.y + r.h, r.x : r.x + r.w].copy() for r in rects]

    def set_image(self, image: np.ndarray, region: Rect | None = None) -> None:
        super().set_image(image, region)
        os.write(self.write_fd, b"!")

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def test_an_event_driven_poll_hands_on_a_frame_with_its_x_bytes_clear() -> None:
    """The encoders read an event-driven update's frame as a view of its words
    (``x_clear``), so the whole-screen poll hands on the frame it cleared, also when the
    capture's frame is read-only and the cleared one a copy."""
    from enkaku.agent.rfbservice import UpdateRequest
    from enkaku.protocol.rfb import RFBServer

    image = sample_image(48, 64)
    image[..., 3] = 77  # X bytes the capture leaves as they are
    capture = FakeEventCapture(image)

    def read_only() -> np.ndarray:
        frame = image.copy()
        frame.flags.writeable = False
        return frame

    capture.grab = read_only  # type: ignore[method-assign]
    service = RFBService(capture, RecordingInjector(), _no_read, _no_write, name="t")
    service._server = RFBServer(64, 48, "t")
    service._event_fd = capture.fileno()
    try:
        whole = Rect(0, 0, 64, 48)
        poll = service._poll(UpdateRequest(whole, full=whole))
        assert poll.frame is not None and poll.frame is service._previous
        assert not poll.frame[..., 3].any()
        np.testing.assert_array_equal(poll.frame[..., :3], image[..., :3])
    finally:
        capture.close()


async def _no_read() -> bytes:
    return b""


async def _no_write(_: bytes) -> None:
    return None


async def test_a_scroll_of_jpeg_pixels_is_copied_then_refreshed_losslessly() -> None:
    """A copy made from pixels the viewer has only as JPEG is refreshed like them. (The
    picture is larger than a change the damage step sends as it is, SMALL_DAMAGE_AREA.)"""
    from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request

    rng = np.random.default_rng(5)
    tall = rng.integers(0, 256, (160, 160, 4), dtype=np.uint8)  # noise: Tight sends JPEG
    capture = FakeEventCapture(tall[:120].copy())
    capture.pending = []
    pipe = Pipe()
    service = RFBService(capture, RecordingInjector(), pipe.read, pipe.write, name="mem")
    task = asyncio.create_task(service.run())
    await pipe.handshake()
    dec = Decoder(160, 120, service.server.pixel_format)  # type: ignore[union-attr]
    await pipe.to_server.put(
        set_encodings(Encoding.TIGHT, Encoding.COPYRECT, Encoding.JPEG_QUALITY_LOW + 6)
    )
    await pipe.to_server.put(update_request(False, 0, 0, 160, 120))
    await pipe.receive(dec, lambda: len(dec.updates) == 1)
    assert dec.jpeg_rects >= 1 and not np.array_equal(dec.fb, dec.pf.values(capture.image))
    # Scrolled by 16 rows before the lossless refresh: a copy of the viewer's JPEG pixels
    # plus the new strip.
    await pipe.to_server.put(update_request(True, 0, 0, 160, 120))
    capture.set_image(tall[16:136].copy(), Rect(0, 0, 160, 120))
    await pipe.receive(dec, lambda: len(dec.updates) == 2)
    assert (0, 0, 160, 104, Encoding.COPYRECT) in dec.updates[1].rects
    # Once the screen is still, the copied rows come again losslessly with the rest.
    await pipe.to_server.put(update_request(True, 0, 0, 160, 120))
    await pipe.receive(dec, lambda: len(dec.updates) == 3)
    np.testing.assert_array_equal(dec.fb, dec.pf.values(capture.image))
    await pipe.to_server.put(b"")  # EOF
    await asyncio.wait_for(task, 10)
    capture.close()


async def _zrle_viewer(
    capture: FakeEventCapture, injector: RecordingInjector | None = None
) -> tuple[Pipe, RFBService, asyncio.Task[None], Any]:
    """A ZRLE viewer of ``capture`` through a ``Pipe``: it has had the first whole
    update and has an incremental request pending. Returns (pipe, service, task, decoder)."""
    from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request

    h, w = capture.image.shape[:2]
    pipe, injector = Pipe(), injector or RecordingInjector()
    service = RFBService(capture, injector, pipe.read, pipe.write, name="mem")
    task = asyncio.create_task(service.run())
    await pipe.handshake()
    dec = Decoder(w, h, service.server.pixel_format)  # type: ignore[union-attr]
    await pipe.to_server.put(set_encodings(Encoding.ZRLE))
    await pipe.to_server.put(update_request(False, 0, 0, w, h))
    await pipe.receive(dec, lambda: len(dec.updates) == 1)
    await pipe.to_server.put(update_request(True, 0, 0, w, h))
    return pipe, service, task, dec


async def _hang_up(pipe: Pipe, task: asyncio.Task[None], capture: FakeEventCapture) -> None:
    await pipe.to_server.put(b"")  # EOF
    await asyncio.wait_for(task, 10)
    capture.close()


async def test_a_window_painted_in_steps_goes_out_as_one_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A change on a quiet screen settles for DAMAGE_SETTLE before it is captured, so a
    window and then its widgets (Tk paints in two steps) make one update, not two."""
    from enkaku.agent import rfbservice

    monkeypatch.setattr(rfbservice, "DAMAGE_SETTLE", 0.5)  # far above the 50 ms between steps
    blank = np.full((60, 80, 4), 200, dtype=np.uint8)
    capture = FakeEventCapture(blank.copy())
    capture.pending = []
    pipe, _, task, dec = await _zrle_viewer(capture)
    await asyncio.sleep(0.3)  # quiet
    window = blank.copy()
    window[10:50, 10:70] = 255  # the window, empty
    capture.set_image(window.copy(), Rect(10, 10, 60, 40))
    await asyncio.sleep(0.05)
    window[20:30, 20:60] = 0  # its widgets
    capture.set_image(window.copy(), Rect(20, 20, 40, 10))
    await pipe.receive(dec, lambda: len(dec.updates) == 2)
    np.testing.assert_array_equal(dec.fb, dec.pf.values(window))  # both steps at once
    await _hang_up(pipe, task, capture)


async def test_input_ends_the_settle_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settle runs on the worker thread before its poll; a key from the viewer ends
    it, so what the key drew goes out without waiting for the rest of it."""
    from enkaku.agent import rfbservice

    monkeypatch.setattr(rfbservice, "DAMAGE_SETTLE", 3600.0)  # only input can end it
    blank = np.full((60, 80, 4), 200, dtype=np.uint8)
    capture = FakeEventCapture(blank.copy())
    capture.pending = []
    injector = RecordingInjector()
    pipe, service, task, dec = await _zrle_viewer(capture, injector)
    await asyncio.sleep(0.3)  # quiet
    changed = blank.copy()
    changed[10:20, 10:30] = 0  # drawn by the application: the settle starts
    capture.set_image(changed.copy(), Rect(10, 10, 20, 10))
    polls = service.polls
    await asyncio.sleep(0.3)
    assert service.polls == polls and len(dec.updates) == 1  # still settling
    await pipe.to_server.put(bytes([4, 1, 0, 0]) + (0x61).to_bytes(4, "big"))  # KeyEvent a
    await pipe.receive(dec, lambda: len(dec.updates) == 2)
    np.testing.assert_array_equal(dec.fb, dec.pf.values(changed))
    async with asyncio.timeout(10):  # the key is injected on a worker thread
        while ("key", 0x61, True, None) not in injector.calls:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await _hang_up(pipe, task, capture)


async def test_a_full_screen_change_goes_out_band_by_band_while_the_rest_is_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large update is streamed: the viewer has the first band before the last band
    is encoded (so the link carries a full-screen picture while it is encoded), and the
    whole update decodes exactly."""
    from enkaku.protocol.rfb import messages as m
    from enkaku.protocol.rfb.encodings import zrle

    h, w = 600, 1024  # 614 400 pixels: three bands
    capture = FakeEventCapture(sample_image(h, w))
    capture.pending = []
    pipe, _, task, dec = await _zrle_viewer(capture)
    first_band_seen = threading.Event()
    bands_encoded: list[int] = []
    encode = zrle.ZRLEEncoder.encode

    def held_encode(self, frame, pf, options):  # type: ignore[no-untyped-def]
        if bands_encoded:  # the second band waits until the viewer has the first
            assert first_band_seen.wait(20), "the first band did not go out on its own"
        bands_encoded.append(frame.shape[0])
        return encode(self, frame, pf, options)

    monkeypatch.setattr(zrle.ZRLEEncoder, "encode", held_encode)
    new = sample_image(h, w, seed=9)
    capture.set_image(new.copy(), Rect(0, 0, w, h))
    async with asyncio.timeout(20):
        while len(pipe.received) < 16:  # the update's header and first rectangle's
            pipe.received += await pipe.from_server.get()
    assert bands_encoded == [256]  # the rest waits: what came is the first band alone
    # three rectangles, the first of them the top band
    assert pipe.received[:4] == m.framebuffer_update_header(3)
    assert pipe.received[4:16] == m.rect_header(0, 0, w, 256, Encoding.ZRLE)
    first_band_seen.set()
    await pipe.receive(dec, lambda: len(dec.updates) == 2)
    assert bands_encoded == [256, 256, 88]
    assert dec.updates[1].rects == [
        (0, 0, w, 256, Encoding.ZRLE), (0, 256, w, 256, Encoding.ZRLE),
        (0, 512, w, 88, Encoding.ZRLE),
    ]  # fmt: skip
    np.testing.assert_array_equal(dec.fb, dec.pf.values(new))
    await _hang_up(pipe, task, capture)


async def test_still_screens_hold_no_shared_worker_and_hang_ups_leave_nothing() -> None:
    """While the screen is still, a worker of the connection's own waits for damage:
    more idle viewers than the event loop has shared workers leave them free, and each
    connection's end stops its waiter and closes what it opened."""
    fds_before = set(os.listdir("/proc/self/fd"))

    def waiters() -> int:
        return sum(t.name.startswith("enkaku-rfb-damage") for t in threading.enumerate())

    loop = asyncio.get_running_loop()
    shared = loop._default_executor  # type: ignore[attr-defined]
    limit = shared._max_workers if shared is not None else min(32, (os.cpu_count() or 1) + 4)
    viewers = []
    for _ in range(limit + 2):
        capture = FakeEventCapture(np.full((20, 30, 4), 90, dtype=np.uint8))
        capture.pending = []
        pipe, _, task, dec = await _zrle_viewer(capture)  # then it waits
        viewers.append((capture, pipe, task, dec))
    try:
        await asyncio.sleep(0.2)
        assert waiters() == len(viewers)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 10) == 42
        # Each waiter still sees its screen change.
        capture, pipe, _, dec = viewers[-1]
        changed = capture.image.copy()
        changed[5:10, 5:10] = 0
        capture.set_image(changed, Rect(5, 5, 5, 5))
        await pipe.receive(dec, lambda: len(dec.updates) == 2)
        np.testing.assert_array_equal(dec.fb, dec.pf.values(changed))
    finally:
        for capture, pipe, task, _ in viewers:
            await _hang_up(pipe, task, capture)  # while its worker waits
    async with asyncio.timeout(10):
        while waiters():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert set(os.listdir("/proc/self/fd")) <= fds_before


# -- the damage step's helpers (issue 10: words compared and hashed in place) ---------


def test_clear_x_zeroes_only_the_x_bytes_in_place() -> None:
    from enkaku.agent.rfbservice import _clear_x

    block = _text_block(20, 30, seed=3)
    rgb = block[..., :3].copy()
    assert block[..., 3].any()
    out = _clear_x(block)
    assert out is block
    assert not block[..., 3].any()
    np.testing.assert_array_equal(block[..., :3], rgb)
    frozen = _text_block(20, 30, seed=4)
    frozen.flags.writeable = False
    cleared = _clear_x(frozen)
    assert cleared is not frozen and frozen[..., 3].any() and not cleared[..., 3].any()
    np.testing.assert_array_equal(cleared[..., :3], frozen[..., :3])


def test_diff_box_bounds_the_changes() -> None:
    from enkaku.agent.motion import diff_box as _diff_box

    diff = np.zeros((40, 50), dtype=bool)
    assert _diff_box(diff) is None
    diff[7, 30] = diff[20, 4] = True
    assert _diff_box(diff) == Rect(4, 7, 27, 14)


@pytest.mark.parametrize("seed", range(40))
def test_changed_boxes_cover_every_change_once_and_little_else(seed: int) -> None:
    """Every changed cell is in exactly one box, the boxes stay in the mask and are
    tight (each box's edge rows and columns hold a change), and at most ``SPLIT_MAX``."""
    from enkaku.agent.rfbservice import SPLIT_MAX, changed_boxes

    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 300)), int(rng.integers(1, 400))
    diff = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(0, 40 if seed % 4 else 400))):  # some with very many
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        diff[y : y + int(rng.integers(1, 30)), x : x + int(rng.integers(1, 60))] = True
    boxes = changed_boxes(diff)
    assert len(boxes) <= SPLIT_MAX
    covered = np.zeros((h, w), dtype=np.int32)
    for b in boxes:
        assert b.w > 0 and b.h > 0 and b.x >= 0 and b.y >= 0 and b.x + b.w <= w and b.y + b.h <= h
        inside = diff[b.y : b.y + b.h, b.x : b.x + b.w]
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        covered[b.y : b.y + b.h, b.x : b.x + b.w] += 1
    assert (covered <= 1).all()
    assert (covered[diff] == 1).all()
    assert not boxes if not diff.any() else boxes


def test_changes_far_apart_in_one_damaged_box_go_out_apart() -> None:
    """An application that reports its drawing's bounding box (Chromium: a spinner in
    its header, a progress bar below) is sent what changed, not the box; the kept frame
    is exact."""
    screen = np.full((400, 800, 4), 240, dtype=np.uint8)
    screen[300:312, 20:700, :3] = (200, 180, 160)  # the progress bar's track
    capture, service = _damage_step_service(screen)
    after = screen.copy()
    after[10:38, 30:58, :3] = sample_image(28, 28, 4)[..., :3]  # the spinner's new step
    after[300:312, 400:404, :3] = (90, 120, 60)  # the bar grew by 4 px
    capture.image = after
    assert service._grab_damage([Rect(20, 10, 700, 302)]) == []
    spinner, bar = Rect(30, 10, 28, 28), Rect(400, 300, 4, 12)
    assert sorted(service._damage, key=lambda r: r.y) == [spinner, bar]
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])


def test_a_page_scrolled_beside_its_fixed_sidebar_is_one_copy() -> None:
    """A web page whose content scrolls under a fixed header and beside a fixed sidebar,
    its scroll bar's thumb moving, all in one damaged box (Chromium's): the content is
    one copy from the sidebar's edge on, the rest a strip and the thumb; exact."""
    tall = _text_block(600, 400, seed=8)
    screen = np.full((300, 520, 4), 230, dtype=np.uint8)
    screen[:40, :, :3] = (87, 53, 29)  # the header
    screen[40:, :100, :3] = _text_block(260, 100, seed=9)[..., :3]  # the sidebar's links
    screen[40:, 100:500] = tall[:260]
    screen[40:90, 506:514, :3] = 120  # the scroll bar's thumb
    capture, service = _damage_step_service(screen)
    after = screen.copy()
    after[40:, 100:500] = tall[20:280]  # scrolled by 20 rows
    after[40:300, 506:514, :3] = 230
    after[44:94, 506:514, :3] = 120  # the thumb 4 rows down
    capture.image = after
    copies = service._grab_damage([Rect(0, 0, 520, 300)])
    assert copies is not None and len(copies) == 1
    (copy,) = copies
    assert copy.dest.x == 100 and copy.src_y - copy.dest.y == 20
    assert copy.dest.h >= 230  # the content but the strip the scroll exposed
    assert all(d.x >= 100 for d in service._damage)  # nothing of the sidebar
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])


def test_changes_beside_a_scroll_go_as_what_changed_not_their_box() -> None:
    """A list that scrolls low in one damaged box (Chromium's) while two small numbers
    change far apart above it (a dashboard's cards): the scroll is a copy and the rows
    above it go out as the two numbers and the exposed strip, not as the box around
    them (it was: 1226x534 pixels sent twice a second for 4 % of them changed)."""
    tall = _text_block(500, 480, seed=12)
    screen = np.full((400, 480, 4), 240, dtype=np.uint8)
    screen[160:400, :] = tall[:240]
    capture, service = _damage_step_service(screen)
    after = screen.copy()
    after[160:400, :] = tall[16:256]  # the list scrolled by 16 rows
    after[20:34, 10:40, :3] = (20, 20, 20)  # a number changes at the left...
    after[90:104, 430:470, :3] = (200, 30, 30)  # ...and another at the right
    capture.image = after
    copies = service._grab_damage([Rect(0, 0, 480, 400)])
    assert copies is not None and len(copies) == 1
    (copy,) = copies
    assert copy.src_y - copy.dest.y == 16 and copy.dest.y >= 160
    above = [d for d in service._damage if d.y < 160]
    assert sorted((d.x, d.y, d.w, d.h) for d in above) == [(10, 20, 30, 14), (430, 90, 40, 14)]
    assert sum(d.w * d.h for d in service._damage) < 480 * 40
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])


def test_changes_beside_a_sideways_scroll_go_as_what_changed_not_their_box() -> None:
    """The same beside a sideways scroll: a wide table scrolled right in the lower part of
    the damaged box, two small numbers changed far apart above it: a copy, and above it
    the two numbers, not the box around them."""
    wide = _text_block(240, 720, seed=13)
    screen = np.full((400, 480, 4), 240, dtype=np.uint8)
    screen[:160, :] = _text_block(160, 480, seed=14)  # text that stays
    screen[160:400, :] = wide[:, :480]
    capture, service = _damage_step_service(screen)
    after = screen.copy()
    after[160:400, :] = wide[:, 32:512]  # scrolled right by 32 columns
    after[20:34, 10:40, :3] = (20, 20, 20)
    after[90:104, 430:470, :3] = (200, 30, 30)
    capture.image = after
    copies = service._grab_damage([Rect(0, 0, 480, 400)])
    assert copies is not None and len(copies) == 1
    (copy,) = copies
    assert copy.src_x - copy.dest.x == 32 and copy.src_y == copy.dest.y >= 160
    above = [d for d in service._damage if d.y < 160]
    assert sorted((d.x, d.y, d.w, d.h) for d in above) == [(10, 20, 30, 14), (430, 90, 40, 14)]
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])


def test_short_lines_beside_blank_columns_still_scroll_as_a_copy() -> None:
    """A terminal's short lines (a few glyphs wide, blank to the right): the block is not
    narrowed below what a scroll is searched in, so the scroll is still one copy."""
    from enkaku.agent.rfbservice import SCROLL_MIN_COLS

    tall = _text_block(200, 40, seed=12)
    tall[:, :, 3] = 0
    screen = np.full((160, 240, 4), 255, dtype=np.uint8)
    screen[..., 3] = 0
    screen[:, 4:44] = tall[:160]
    capture, service = _damage_step_service(screen)
    after = screen.copy()
    after[:, 4:44] = tall[12:172]
    capture.image = after
    copies = service._grab_damage([Rect(0, 0, 240, 160)])
    assert copies is not None and len(copies) == 1
    assert copies[0].src_y - copies[0].dest.y == 12
    assert copies[0].dest.w >= SCROLL_MIN_COLS
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])


@pytest.mark.parametrize("seed", range(60))
def test_the_viewer_ends_exact_whatever_scrolls_beside_what(seed: int) -> None:
    """Random pages (a still sidebar at either side or none, a header, text that scrolls
    by a random step or not, a spinner and a bar far apart), damaged as one box: the
    viewer, applying the copies to its own pixels and then the damage, ends on exactly
    the new screen."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(120, 260)), int(rng.integers(160, 420))
    side = int(rng.choice([0, int(rng.integers(20, 140))]))
    left = bool(rng.integers(0, 2))
    top = int(rng.integers(0, 30))
    x0, x1 = (side, w) if left else (0, w - side)
    tall = _text_block(h + 100, x1 - x0, seed=100 + seed)
    tall[..., 3] = 0
    before = np.zeros((h, w, 4), dtype=np.uint8)
    before[..., :3] = 240
    before[:, :, :3][:top] = (29, 53, 87)
    if side:
        sx = 0 if left else w - side
        before[top:, sx : sx + side, :3] = _text_block(h - top, side, seed=seed)[..., :3]
    at = int(rng.integers(40, 60))
    before[top:, x0:x1] = tall[at : at + h - top]
    after = before.copy()
    dy = int(rng.choice([0, int(rng.integers(-40, 41))]))  # the text scrolled by dy rows
    after[top:, x0:x1] = tall[at + dy : at + dy + h - top]
    for _ in range(int(rng.integers(0, 3))):  # small changes anywhere
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        after[y : y + 8, x : x + 8, :3] = rng.integers(0, 256, 3, dtype=np.uint8)
    capture, service = _damage_step_service(before)
    capture.image = after
    box = Rect(0, 0, w, h) if rng.integers(0, 2) else Rect(x0, top, x1 - x0, h - top)
    copies = service._grab_damage([box])
    assert copies is not None
    changed_outside = (before[..., :3] != after[..., :3]).any(axis=2)
    changed_outside[box.y : box.y + box.h, box.x : box.x + box.w] = False
    if changed_outside.any():
        return  # the damage reported only the box (a change outside it is not this test's)
    viewer = before[..., :3].copy()
    for c in copies:  # RFB CopyRect: from the viewer's own pixels, in order
        d = c.dest
        src = viewer[c.src_y : c.src_y + d.h, c.src_x : c.src_x + d.w].copy()
        viewer[d.y : d.y + d.h, d.x : d.x + d.w] = src
    for r in service._damage:
        viewer[r.y : r.y + r.h, r.x : r.x + r.w] = after[r.y : r.y + r.h, r.x : r.x + r.w, :3]
    np.testing.assert_array_equal(viewer, after[..., :3])
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])


@pytest.mark.parametrize("seed", range(30))
def test_changed_columns_are_exact_when_a_side_is_still(seed: int) -> None:
    """Sampled rows give the span, the columns outside are compared whole: the span is
    exact, whichever rows the changes are in."""
    from enkaku.agent.rfbservice import SIDE_MIN_COLS, _changed_columns

    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(24, 120)), int(rng.integers(64, 400))
    old = rng.integers(0, 3, (h, w)).astype(np.uint32)
    new = old.copy()
    x0 = int(rng.integers(0, w))
    x1 = int(rng.integers(x0 + 1, w + 1))
    for _ in range(int(rng.integers(1, 6))):  # a few changed cells, some in one row only
        new[int(rng.integers(0, h)), int(rng.integers(x0, x1))] += 1
    new[0, int(rng.integers(x0, x1))] += 1  # the first row changed (``_changed_span``'s)
    new[int(rng.integers(0, h)), x0] += 1
    new[int(rng.integers(0, h)), x1 - 1] += 1
    cols = np.flatnonzero((old != new).any(axis=0))
    exact = int(cols[0]), int(cols[-1]) + 1
    got = _changed_columns(old, new)
    if exact[0] >= SIDE_MIN_COLS or w - exact[1] >= SIDE_MIN_COLS:
        assert got == exact
    else:
        assert got is None


def test_row_hashes_of_a_view_match_a_copy_and_tell_rows_apart() -> None:
    from enkaku.agent.rfbservice import _clear_x, _row_hashes, _words

    frame = _clear_x(_text_block(60, 90, seed=5))
    view = _words(frame)[10:50, 7:71]  # rows of a sub-block: strided, not copied
    hashes = _row_hashes(view)
    assert hashes == _row_hashes(np.ascontiguousarray(view))
    assert len(hashes) == 40
    assert hashes[2] == hashes[6]  # blank rows (every 4th) hash alike
    assert len({hashes[i] for i in range(40) if (10 + i) % 4}) == 30  # text rows do not


def test_grab_damage_ignores_x_bytes_and_finds_the_scroll() -> None:
    """The damage step on new pixels whose X bytes are garbage: unchanged pixels are no
    damage, a scrolled block is one copy plus the exposed strip, the kept frame exact."""

    tall = _text_block(300, 200, seed=6)
    screen = np.zeros((240, 320, 4), dtype=np.uint8)
    screen[20:220, 60:260] = tall[:200]

    capture, service = _damage_step_service(screen)
    damaged = [Rect(60, 20, 200, 200)]
    capture.image = screen.copy()
    capture.image[..., 3] = 99  # only the X bytes differ
    assert service._grab_damage(damaged) == []
    assert service._damage == []
    scrolled = screen.copy()
    scrolled[20:220, 60:260] = tall[13:213]  # up by 13 rows
    scrolled[..., 3] = 5
    capture.image = scrolled
    copies = service._grab_damage(damaged)
    assert copies is not None
    assert [(c.dest, c.src_x, c.src_y) for c in copies] == [(Rect(60, 20, 200, 187), 60, 33)]
    assert all(d.y >= 207 and d.y + d.h <= 220 for d in service._damage)
    assert service._damage
    np.testing.assert_array_equal(service._previous[..., :3], scrolled[..., :3])
    assert not service._previous[..., 3].any()


def test_grab_damage_searches_no_copy_where_a_window_was_mapped_or_unmapped() -> None:
    """Damage inside a window the capture says appeared or went (``recently_shown``) is
    new pixels: sent as they are, even where they look like a scroll; damage beyond
    that window is searched as usual."""

    tall = _text_block(300, 200, seed=6)
    screen = np.zeros((240, 320, 4), dtype=np.uint8)
    screen[20:220, 60:260] = tall[:200]
    scrolled = screen.copy()
    scrolled[20:220, 60:260] = tall[13:213]  # what a scroll up by 13 rows would show

    capture, service = _damage_step_service(screen)
    capture.image = scrolled
    capture.recently_shown = lambda: [Rect(50, 10, 220, 220)]  # type: ignore[attr-defined]
    assert service._grab_damage([Rect(60, 20, 200, 200)]) == []
    assert service._damage == [Rect(60, 20, 200, 200)]
    np.testing.assert_array_equal(service._previous[..., :3], scrolled[..., :3])

    capture, service = _damage_step_service(screen)
    capture.image = scrolled
    capture.recently_shown = lambda: [Rect(60, 20, 200, 100)]  # type: ignore[attr-defined]
    copies = service._grab_damage([Rect(60, 20, 200, 200)])  # reaches past that window
    assert copies is not None
    assert [(c.dest, c.src_x, c.src_y) for c in copies] == [(Rect(60, 20, 200, 187), 60, 33)]


def _moved_window_screens(
    redrawn: bool = False,
) -> tuple[np.ndarray, np.ndarray, Rect, Rect, list[Rect]]:
    """A 320x240 wallpaper with a 120x100 'terminal' window at (40, 30), and the screen
    after the window moved diagonally to (55, 42) (its content redrawn when
    ``redrawn``); then the window's old and new places and the damage as the X server
    reports it: the union of both places in y-x bands."""
    rng = np.random.default_rng(11)
    wallpaper = np.zeros((240, 320, 4), dtype=np.uint8)
    wallpaper[..., :3] = (
        rng.integers(0, 256, (24, 32, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
    )
    window = _text_block(100, 120, seed=12)
    src, dest = Rect(40, 30, 120, 100), Rect(55, 42, 120, 100)
    before = wallpaper.copy()
    before[30:130, 40:160] = window
    after = wallpaper.copy()
    after[42:142, 55:175] = _text_block(100, 120, seed=13) if redrawn else window
    bands = [Rect(40, 30, 120, 12), Rect(40, 42, 135, 88), Rect(55, 130, 120, 12)]
    return before, after, src, dest, bands


def _changed_pixels_covered(before: np.ndarray, after: np.ndarray, rects: list[Rect]) -> bool:
    changed = (before[..., :3] != after[..., :3]).any(axis=2)
    for r in rects:
        changed[r.y : r.y + r.h, r.x : r.x + r.w] = False
    return not changed.any()


def test_a_moved_window_grabbed_in_bands_is_one_copy_and_its_pixels_are_not_searched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A window the X server says moved, whose new place was grabbed (here in the three
    bands of a diagonal move), is checked against its old pixels before the blocks are
    searched: it goes out as one copy, only what it uncovered as pixels, and the bands
    it covers are not searched for scrolls."""
    before, after, src, dest, bands = _moved_window_screens()
    capture, service = _damage_step_service(before)
    capture.image = after
    capture.take_moves = lambda: [(src, dest)]  # type: ignore[attr-defined]
    searched: list[tuple[int, int]] = []
    probes = rfbservice_module._probes

    def spy(old: np.ndarray, new: np.ndarray) -> object:
        searched.append(old.shape)
        return probes(old, new)

    monkeypatch.setattr(rfbservice_module, "_probes", spy)
    copies = service._grab_damage(bands)
    assert copies is not None
    assert [(c.dest, c.src_x, c.src_y) for c in copies] == [(dest, src.x, src.y)]
    assert not any(d.intersect(dest) for d in service._damage)
    assert _changed_pixels_covered(before, after, [*service._damage, dest])
    assert all(h < 50 for h, _w in searched), searched  # the middle band is the window's
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])
    assert not service._previous[..., 3].any()


def test_a_moved_window_is_no_copy_when_redrawn_or_read_from_unsent_pixels() -> None:
    """The move the X server names is only a hint: a window drawn anew as it moved, or
    one whose old place holds pixels the viewer has not received yet, goes out as
    pixels, and the screen still ends exact."""
    before, after, src, dest, bands = _moved_window_screens(redrawn=True)
    capture, service = _damage_step_service(before)
    capture.image = after
    capture.take_moves = lambda: [(src, dest)]  # type: ignore[attr-defined]
    copies = service._grab_damage(bands)
    assert copies is not None and not any(c.dest == dest for c in copies)
    assert _changed_pixels_covered(before, after, [*service._damage, *(c.dest for c in copies)])
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])

    before, after, src, dest, bands = _moved_window_screens()
    capture, service = _damage_step_service(before)
    service._damage = [Rect(50, 50, 8, 8)]  # inside the old place, not sent yet
    capture.image = after
    capture.take_moves = lambda: [(src, dest)]  # type: ignore[attr-defined]
    copies = service._grab_damage(bands)
    assert copies is not None and not any(c.dest == dest for c in copies)
    assert _changed_pixels_covered(before, after, service._damage)
    np.testing.assert_array_equal(service._previous[..., :3], after[..., :3])


def test_grab_damage_keeps_row_hashes_only_while_they_are_true() -> None:
    """Scrolls of one area reuse the row hashes of the kept frame from the search
    before; they always equal the kept pixels' hashes, and a copy is still found."""
    from enkaku.agent.rfbservice import _row_hashes, _words

    tall = _text_block(400, 200, seed=8)
    screen = np.zeros((240, 320, 4), dtype=np.uint8)
    screen[20:220, 60:260] = tall[:200]

    capture, service = _damage_step_service(screen)

    def kept_hashes_true() -> bool:
        kept = service._kept_hashes
        if kept is None:
            return True
        frame, area, hashes = kept
        block = _words(frame)[area.y : area.y + area.h, area.x : area.x + area.w]
        return frame is service._previous and hashes == _row_hashes(block)

    damaged = [Rect(60, 20, 200, 200)]
    used = []
    hashes_kept = service._hashes_kept

    def spy(frame: np.ndarray, span: Rect) -> list[int] | None:
        found = hashes_kept(frame, span)
        used.append(found is not None)
        return found

    service._hashes_kept = spy  # type: ignore[method-assign]
    # Steps of different sizes (not the last one's, nor twice it: see the next test),
    # so that each is searched.
    top = 0
    for shift in (9, 5, 13, 7):
        top += shift
        capture.image = screen.copy()
        capture.image[20:220, 60:260] = tall[top : top + 200]
        service._damage = []
        copies = service._grab_damage(damaged)
        assert copies is not None and len(copies) == 1
        assert copies[0].src_y - copies[0].dest.y == shift
        assert kept_hashes_true()
    assert used == [False, True, True, True]
    # A small change inside the area (no scroll search): the kept hashes are dropped.
    capture.image[100:104, 100:140, :3] ^= 0xFF
    service._grab_damage([Rect(100, 100, 40, 4)])
    assert service._kept_hashes is None
    np.testing.assert_array_equal(service._previous[..., :3], capture.image[..., :3])


def test_a_scroll_that_goes_on_is_tried_at_its_last_shift_before_any_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block that scrolled by dy is first compared at dy, 2 dy and dy / 2 (one or two
    steps of a scroll in one update) without hashing; another amount is searched as
    before. Every copy is exact."""
    searches: list[int] = []
    vertical = rfbservice_module._find_vertical_copy

    def spy(*args: object, **kwargs: object) -> object:
        searches.append(1)
        return vertical(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rfbservice_module, "_find_vertical_copy", spy)
    tall = _text_block(600, 200, seed=14)
    screen = np.zeros((240, 320, 4), dtype=np.uint8)
    screen[20:220, 60:260] = tall[:200]
    capture, service = _damage_step_service(screen)
    damaged = [Rect(60, 20, 200, 200)]
    top = 0
    for shift, searched in ((9, 1), (9, 0), (18, 0), (9, 0), (5, 1), (5, 0), (-7, 1), (-7, 0)):
        before = service._previous.copy()
        top += shift
        capture.image = screen.copy()
        capture.image[20:220, 60:260] = tall[top : top + 200]
        capture.image[..., 3] = 3
        service._damage = []
        searches.clear()
        copies = service._grab_damage(damaged)
        assert copies is not None and len(copies) == 1
        c = copies[0]
        assert c.src_y - c.dest.y == shift
        assert len(searches) == searched
        viewer = before[..., :3].copy()
        viewer[c.dest.y : c.dest.y + c.dest.h, c.dest.x : c.dest.x + c.dest.w] = before[
            c.src_y : c.src_y + c.dest.h, c.src_x : c.src_x + c.dest.w, :3
        ]
        for d in service._damage:
            viewer[d.y : d.y + d.h, d.x : d.x + d.w] = capture.image[
                d.y : d.y + d.h, d.x : d.x + d.w, :3
            ]
        np.testing.assert_array_equal(viewer, capture.image[..., :3])


def test_grab_damage_sends_a_sideways_scroll_as_a_copy_and_stays_exact() -> None:
    """A block scrolled sideways with a cursor line drawn across it: one horizontal copy
    grown over the cursor's rows, and pixels for the uncovered columns and what the copy
    gets wrong; a viewer applying the copy and then the damage has the new screen."""

    wide = _text_block(200, 600, seed=9)
    screen = np.zeros((240, 480, 4), dtype=np.uint8)
    screen[20:220, 40:440] = wide[:, :400]

    capture, service = _damage_step_service(screen)
    for dx, start in ((36, 36), (-12, 24)):  # right, then back left a little
        before = service._previous.copy()
        moved = screen.copy()
        moved[20:220, 40:440] = wide[:, start : start + 400]
        moved[100:103, 40:440, :3] = (255, 0, 0)  # a cursor line across the block
        moved[..., 3] = 3
        capture.image = moved
        service._damage = []
        copies = service._grab_damage([Rect(40, 20, 400, 200)])
        assert copies is not None and len(copies) == 1
        c = copies[0]
        assert c.src_y == c.dest.y and c.src_x - c.dest.x == dx
        # Every changed row (the block's first is a blank line in both): grown over the
        # cursor's rows.
        assert (c.dest.y, c.dest.y + c.dest.h) == (21, 220)
        assert c.dest.w == 400 - abs(dx)
        viewer = before[..., :3].copy()
        viewer[c.dest.y : c.dest.y + c.dest.h, c.dest.x : c.dest.x + c.dest.w] = before[
            c.src_y : c.src_y + c.dest.h, c.src_x : c.src_x + c.dest.w, :3
        ]
        for d in service._damage:
            viewer[d.y : d.y + d.h, d.x : d.x + d.w] = moved[d.y : d.y + d.h, d.x : d.x + d.w, :3]
        np.testing.assert_array_equal(viewer, moved[..., :3])
        # Pixels: the uncovered columns and the cursor's rows, not the whole block.
        assert sum(d.w * d.h for d in service._damage) <= abs(dx) * 200 + 3 * 400
        np.testing.assert_array_equal(service._previous[..., :3], moved[..., :3])
        screen = moved


def test_changed_span_is_the_first_and_last_changed_rows() -> None:
    """Found from both ends in growing bands, it is exactly the rows a whole
    comparison gives, wherever the changes are (or None when there are none)."""
    from enkaku.agent.rfbservice import _changed_span

    rng = np.random.default_rng(11)
    for _ in range(300):
        h, w = int(rng.integers(1, 400)), int(rng.integers(1, 50))
        old = rng.integers(0, 4, (h, w)).astype(np.uint32)
        new = old.copy()
        for _ in range(int(rng.integers(0, 4))):
            new[rng.integers(0, h), rng.integers(0, w)] += 1
        rows = np.flatnonzero((old != new).any(axis=1))
        want = None if rows.size == 0 else (int(rows[0]), int(rows[-1]) + 1)
        assert _changed_span(old, new) == want


def _unsearchable(rects: list[Rect]) -> bool:
    """A few blocks apart from each other, each too low or too narrow to be searched for
    a scroll: where the short path must give the general path's result exactly."""
    return rfbservice_module._few_apart(rects) and not any(
        rfbservice_module._searchable(r) for r in rects
    )


@pytest.mark.parametrize("seed", range(4))
def test_small_damage_takes_the_short_path_to_the_general_paths_result(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks no search can use (a key's glyph, a caret, a clock) skip the damage step's
    searches: the same damage and kept frame as the general path gives them."""
    rng = np.random.default_rng(seed)
    screen = sample_image(240, 320, seed)
    changed = screen.copy()
    rects = []
    for i in range(int(rng.integers(1, 5))):  # apart: one per 80×60 cell of a 4×4 grid
        h, w = int(rng.integers(1, 24)), int(rng.integers(1, 80))
        x = 80 * (i % 4) + int(rng.integers(0, 81 - w))
        y = 60 * (seed % 4) + int(rng.integers(0, 61 - h))
        rects.append(Rect(x, y, w, h))
        sub = changed[y : y + h, x : x + w]
        mask = rng.random((h, w)) < rng.choice([0.0, 0.05, 0.5])
        sub[mask] = rng.integers(0, 256, (int(mask.sum()), 4), dtype=np.uint8)
    if seed == 3:  # a text row of which a glyph changed, as sway reports a key's echo
        rects, changed = [Rect(0, 200, 320, 14)], screen.copy()
        changed[202:214, 40:52] = 7
    unsearchable = _unsearchable
    assert unsearchable(rects)
    assert not unsearchable([Rect(0, 0, 64, 24)])  # a scroll could be in it
    assert not unsearchable([Rect(0, 0, 10, 10), Rect(5, 5, 10, 10)])  # overlapping
    results = []
    for area in (rfbservice_module.SMALL_DAMAGE_AREA, 0):  # short path, then general
        monkeypatch.setattr(rfbservice_module, "SMALL_DAMAGE_AREA", area)
        capture, service = _damage_step_service(screen)
        capture.image = changed.copy()
        took: list[bool] = []

        def counted(
            *args: Any, took: list[bool] = took, short: Any = service._small_damage
        ) -> bool:
            took.append(short(*args))
            return took[-1]

        monkeypatch.setattr(service, "_small_damage", counted)
        copies = service._grab_damage(rects)
        # With no change at all the short path also holds; at 0 it hands every change over.
        assert took == [bool(area) or not (changed != screen).any()]
        assert service._previous is not None
        results.append((copies, list(service._damage), service._previous.copy()))
    (c1, d1, f1), (c2, d2, f2) = results
    assert c1 == c2 == []
    assert d1 == d2
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(f1[..., :3], changed[..., :3])


def _searches_counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets "probes" each time the damage step looks for a scroll."""
    searched: list[str] = []
    probes = rfbservice_module._probes
    monkeypatch.setattr(
        rfbservice_module, "_probes", lambda *a: searched.append("probes") or probes(*a)
    )
    return searched


@pytest.mark.parametrize("width", [459, 1214])
def test_a_spinner_and_a_bar_in_one_box_take_the_short_path(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged box (as Chromium reports one around all it drew) in which a spinner and
    a progress bar far below it changed: no copy search is made (nothing but the damage
    step's short path runs), the two changes go out as their own boxes, and the kept
    frame is exact. Up to ``SMALL_DAMAGE_BLOCK`` pixels (459×186) the box is compared
    at once; a wider one (1214×186, the bar grown long), up to ``SMALL_DAMAGE_LOOK``,
    after a look at every fourth row found the change scattered. The same box with
    nearly every row changed (a list scrolled up a line) still goes to the general path
    (the wide one after its look), and is sent as a copy."""
    searched = _searches_counted(monkeypatch)
    looked: list[bool] = []
    sample = rfbservice_module._sample_scattered
    monkeypatch.setattr(
        rfbservice_module, "_sample_scattered", lambda *a: looked.append(sample(*a)) or looked[-1]
    )
    wide = width * 186 > rfbservice_module.SMALL_DAMAGE_BLOCK
    assert width * 186 <= rfbservice_module.SMALL_DAMAGE_LOOK
    screen = np.zeros((300, width + 46, 4), dtype=np.uint8)
    screen[..., :3] = 238
    box = Rect(20, 10, width, 186)
    capture, service = _damage_step_service(screen)
    changed = screen.copy()
    changed[12:31, 26:45, :3] = 40  # the spinner
    bar = width - 103
    changed[184:196, 39 : 39 + bar, :3] = np.linspace(60, 200, bar, dtype=np.uint8)[None, :, None]
    capture.image = changed.copy()
    assert service._grab_damage([box]) == []
    assert searched == [] and looked == ([True] if wide else [])
    assert service._damage == [Rect(26, 12, 19, 19), Rect(39, 184, bar, 12)]
    np.testing.assert_array_equal(service._previous[..., :3], changed[..., :3])

    looked.clear()
    # Lines of 20 rows, the last four blank. (Blank rows in every sampled one would hide
    # the scroll from the look: the full compare then still sends it the general way.)
    text = np.zeros((206, width, 4), dtype=np.uint8)
    text[..., :3] = np.random.default_rng(6).integers(0, 2, (206, width, 1)) * 255
    text[np.arange(206) % 20 >= 16, :, :3] = 40
    screen[10:196, 20 : 20 + width] = text[:186]
    capture, service = _damage_step_service(screen)
    scrolled = screen.copy()
    scrolled[10:196, 20 : 20 + width] = text[20:]  # up one line, a new one below
    capture.image = scrolled.copy()
    copies = service._grab_damage([box])
    assert searched and looked == ([False] if wide else [])
    assert copies and copies[0].src_y - copies[0].dest.y == 20
    np.testing.assert_array_equal(service._previous[..., :3], scrolled[..., :3])


def test_small_damage_hands_a_large_change_to_the_general_path() -> None:
    """Unsearchable blocks whose change is large enough for a diagonal search go the
    general way, the short path having changed nothing."""
    screen = sample_image(240, 320, 9)
    capture, service = _damage_step_service(screen)
    changed = screen.copy()
    changed[100:120, :] = sample_image(20, 320, 10)  # a 320×20 strip: 6400 pixels
    changed[10:30, :] = sample_image(20, 320, 11)
    changed[150:170, :] = sample_image(20, 320, 12)
    blocks = [Rect(0, 100, 320, 20), Rect(0, 10, 320, 20), Rect(0, 150, 320, 20)]
    before = service._previous.copy()  # type: ignore[union-attr]
    news = [
        rfbservice_module._clear_x(changed[r.y : r.y + r.h, r.x : r.x + r.w].copy()) for r in blocks
    ]
    assert _unsearchable(blocks)
    assert not service._small_damage(service._previous, blocks, news)  # type: ignore[arg-type]
    np.testing.assert_array_equal(service._previous, before)  # untouched
    assert service._damage == []
    capture.image = changed
    service._grab_damage(blocks)
    assert service._previous is not None
    np.testing.assert_array_equal(service._previous[..., :3], changed[..., :3])
