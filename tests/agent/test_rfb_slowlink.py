"""Adaptive quality with real parts: RFBService capturing an Xvfb where a Tk window shows
changing full-screen photos, and a viewer (our own decoder, answering fences as noVNC
and TigerVNC do) behind a proxy that forwards the server's bytes at 200 KB/s.

The JPEG quality must go down while the photos change (the link is the bottleneck), and
once they stop the viewer's framebuffer must equal the screen exactly (the lossless
refresh gets through the same slow link)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from enkaku.agent.capture.x11 import X11Capture
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb.pixelformat import NATIVE
from tests.agent.test_rfbservice import FakeCapture, RecordingInjector, serve, start_viewer
from tests.protocol.rfb.decoders import Decoder, photo_image, rgb_to_values, sample_image
from tests.xdisplay import x_client, xvfb, xwd_root

W, H = 640, 480
LINK = 200_000  # bytes/s, server to viewer
QUALITY_LEVEL = 8  # JPEG quality 92

SLIDESHOW = """
import sys, time, tkinter as tk
from pathlib import Path
fps, seconds, folder = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
root = tk.Tk()
root.withdraw()
root.title("slideshow")
root.overrideredirect(True)
photos = [tk.PhotoImage(file=str(p)) for p in sorted(Path(folder).glob("frame*.ppm"))]
root.geometry(f"{photos[0].width()}x{photos[0].height()}+0+0")
root.deiconify()
label = tk.Label(root, borderwidth=0, highlightthickness=0)
label.pack()
start = time.monotonic()
state = {"i": 0}
def step():
    if time.monotonic() - start > seconds:
        return  # the last photo stays
    label.configure(image=photos[state["i"] % len(photos)])
    state["i"] += 1
    root.after(max(1, int((start + state["i"] / fps - time.monotonic()) * 1000)), step)
step()
root.mainloop()
"""


class SocketReader:
    """``take``/``unpack`` over a blocking socket (the test decoder's reader interface)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.consumed = 0

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.consumed += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


class Viewer(threading.Thread):
    """Tight + JPEG level 8 + Fence; one incremental request outstanding; answers every
    fence request with the flags it honours (it processes messages in order)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.r = SocketReader(self.sock)
        self.fb: np.ndarray | None = None  # after the last complete update
        self.lock = threading.Lock()
        #: Per update: (bytes, pixels sent as JPEG).
        self.updates: list[tuple[int, int]] = []
        self.fences_answered = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except (OSError, ConnectionError) as exc:
            self.error = exc

    def _run(self) -> None:
        r, sock = self.r, self.sock
        assert r.take(12) == b"RFB 003.008\n"
        sock.sendall(b"RFB 003.008\n")
        assert r.take(2) == b"\x01\x01"
        sock.sendall(b"\x01")
        assert r.unpack("!I") == (0,)
        sock.sendall(b"\x01")
        w, h = r.unpack("!HH")
        r.take(16)
        r.take(r.unpack("!I")[0])
        codes = [Encoding.TIGHT, Encoding.FENCE, Encoding.JPEG_QUALITY_LOW + QUALITY_LEVEL]
        sock.sendall(b"\x00\x00\x00\x00" + bytes(NATIVE))
        sock.sendall(struct.pack(f"!BxH{len(codes)}i", 2, len(codes), *codes))
        sock.sendall(struct.pack("!BBHHHH", 3, 0, 0, 0, w, h))
        dec = Decoder(w, h, NATIVE)
        while True:
            kind = r.take(1)[0]
            if kind == 0:
                start, jpeg = r.consumed, sum(a[2] * a[3] for a in dec.jpeg_areas)
                dec._update(r)  # type: ignore[arg-type]  # the same take/unpack
                with self.lock:
                    self.fb = dec.fb.copy()
                    self.updates.append(
                        (r.consumed - start, sum(a[2] * a[3] for a in dec.jpeg_areas) - jpeg)
                    )
                sock.sendall(struct.pack("!BBHHHH", 3, 1, 0, 0, w, h))
            elif kind == 248:
                flags, n = r.unpack("!3xIB")
                payload = r.take(n)
                if flags & 1 << 31:
                    sock.sendall(struct.pack("!B3xIB", 248, flags & 3, n) + payload)
                    self.fences_answered += 1
            elif kind == 150:
                pass
            else:
                raise AssertionError(f"unexpected server message {kind}")

    def framebuffer(self) -> np.ndarray | None:
        with self.lock:
            return self.fb

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@contextlib.asynccontextmanager
async def throttled_proxy(target: int, rate: float) -> Any:
    """127.0.0.1:<port> -> 127.0.0.1:``target``; the server's bytes at ``rate`` bytes/s."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: float) -> None:
        with contextlib.suppress(ConnectionError):
            due = time.monotonic()
            while data := await src.read(4096 if limit else 65536):
                dst.write(data)
                await dst.drain()
                if limit:
                    due = max(due, time.monotonic() - 0.05) + len(data) / limit
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
        dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        for coro in (pipe(up_reader, writer, rate), pipe(reader, up_writer, 0)):
            task = asyncio.create_task(coro)
            tasks.add(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def screen_values(display: str) -> np.ndarray:
    return rgb_to_values(xwd_root(display), NATIVE)


@pytest.mark.skipif(sys.platform != "linux", reason="Xvfb")
async def test_slow_link_lowers_quality_then_ends_exact(tmp_path: Path) -> None:
    for i in range(6):
        bgrx = photo_image(H, W, seed=40 + i)
        Image.fromarray(np.ascontiguousarray(bgrx[..., 2::-1])).save(tmp_path / f"frame{i}.ppm")
    script = tmp_path / "slideshow.py"
    script.write_text(SLIDESHOW)
    with xvfb(W, H) as display:
        capture = X11Capture(display)
        try:
            async with (
                serve(capture, RecordingInjector()) as served,
                throttled_proxy(served.port, LINK) as port,
            ):
                args = [sys.executable, str(script), "10", "8", str(tmp_path)]
                with x_client(args, display):
                    viewer = Viewer(port)
                    viewer.start()
                    qualities: list[int | None] = []
                    rates: list[float | None] = []
                    async with asyncio.timeout(30):  # the photos change for 8 s
                        while not served.services or served.services[0].server is None:  # noqa: ASYNC110
                            await asyncio.sleep(0.05)
                        server = served.services[0].server
                        for _ in range(int(8 / 0.05)):
                            status = server.link
                            qualities.append(status.quality)
                            rates.append(status.rate)
                            await asyncio.sleep(0.05)
                    # still now: the last photo must arrive exactly
                    still_at = len(viewer.updates)
                    matched = False
                    async with asyncio.timeout(90):
                        while not matched:
                            await asyncio.sleep(0.5)
                            fb = viewer.framebuffer()
                            truth = await asyncio.to_thread(screen_values, display)
                            matched = fb is not None and np.array_equal(fb, truth)
                    viewer.close()
                    viewer.join(10)
                    await served.wait_closed()  # the viewer left: the service ends
        finally:
            capture.close()
    assert viewer.fences_answered > 5
    # The link was measured, within reason, and the quality went down while it was full.
    # Within reason: the loopback under the proxy carries hundreds of MB/s, so a rate
    # that ignored the proxy would be far above this bound. A sample may still exceed the
    # link by itself: the proxy lets 50 ms of bytes through at once after a pause, and an
    # answer read late by the viewer's thread on a loaded machine shortens the span of
    # the next sample (one sample of 2.04x LINK was seen in CI); the estimate is the
    # largest recent sample (congestion.py), so one such sample shows.
    measured = [r for r in rates if r is not None]
    assert measured and 0.3 * LINK <= max(measured) <= 3 * LINK
    asked = [q for q in qualities if q is not None]  # once SetEncodings arrived
    assert asked[0] == 92 and min(asked) < 92
    # the same kind of picture took fewer bytes per JPEG pixel later on
    jpeg = [b / px for b, px in viewer.updates if px > W * H // 2]
    assert len(jpeg) >= 3 and min(jpeg[1:]) < 0.6 * jpeg[0]
    # The lossless refresh went out in parts the link carries in a fraction of a second
    # (RFBServer.refresh_pixels), not as one update a key typed meanwhile waits behind.
    refresh = [b for b, px in viewer.updates[still_at:] if px == 0]
    assert len(refresh) >= 3 and max(refresh) < sum(refresh) / 2


@pytest.mark.skipif(shutil.which("xtigervncviewer") is None, reason="xtigervncviewer")
async def test_tigervnc_viewer_answers_our_pings() -> None:
    """TigerVNC's viewer answers fence requests (flags cleared): the link is measured."""
    image = sample_image(240, 320, seed=3)
    capture = FakeCapture(image)
    with xvfb() as display:
        async with serve(capture, RecordingInjector()) as served:
            proc = await start_viewer(display, served.port)
            try:
                async with asyncio.timeout(30):
                    for seed in itertools.count(4):  # changes until a ping is answered
                        await asyncio.sleep(0.2)
                        server = served.services[0].server if served.services else None
                        if server is not None and server.link.rtt is not None:
                            break
                        capture.set_image(sample_image(240, 320, seed=seed))
            finally:
                proc.terminate()
                await proc.wait()
            await served.wait_closed()
    assert server is not None and server.link.base_rtt is not None
