"""Key-to-screen latency through a VNC port: a minimal RFB 3.8 viewer.

The measure is the bench-peers harness's ("KeyEvent written -> changed pixels fully
received"; benchmarks/README.md, "Columns"), which lives outside this repository, so it is
written again here, small: security None (what `enkaku connect --vnc-listen` offers: the
channel is the security), Raw encoding only (no decoder to time, nothing lossy to refresh
later), one incremental FramebufferUpdateRequest always outstanding. A key is sent only
after the screen has been quiet for a random gap, so the next update with a rectangle is
the echo of that key; the time is taken when that whole update has been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import time
from dataclasses import dataclass

RAW = 0
XK_X = 0x0078
XK_BACKSPACE = 0xFF08


class ProbeError(RuntimeError):
    """The VNC server answered something this viewer does not handle."""


@dataclass
class Update:
    """One FramebufferUpdate: how many rectangles, when it was fully read."""

    rects: int
    at: float


class Viewer:
    """One RFB connection, Raw only, that times keys against updates.

    A reader task reads every server message, so a timeout never cuts a message in two;
    it sends the next incremental request as soon as an update has been read, and queues
    the update with the time it was complete.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.width = self.height = 0
        self.bytes_per_pixel = 4
        self.updates: asyncio.Queue[Update] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 30) -> Viewer:
        """Connect, shake hands, read the first full update, start the reader."""
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        viewer = cls(reader, writer)
        await asyncio.wait_for(viewer._handshake(), timeout)
        viewer._task = asyncio.create_task(viewer._read_loop())
        return viewer

    async def _handshake(self) -> None:
        version = await self.reader.readexactly(12)
        if not version.startswith(b"RFB 003."):
            raise ProbeError(f"not an RFB server: {version!r}")
        self.writer.write(b"RFB 003.008\n")
        (count,) = await self.reader.readexactly(1)
        if count == 0:
            (length,) = struct.unpack("!I", await self.reader.readexactly(4))
            reason = await self.reader.readexactly(length)
            raise ProbeError(f"server refused: {reason.decode(errors='replace')}")
        types = await self.reader.readexactly(count)
        if 1 not in types:
            raise ProbeError(f"no security type None offered ({list(types)})")
        self.writer.write(b"\x01")
        (result,) = struct.unpack("!I", await self.reader.readexactly(4))
        if result != 0:
            raise ProbeError("security handshake failed")
        self.writer.write(b"\x01")  # ClientInit, shared
        head = await self.reader.readexactly(24)
        self.width, self.height = struct.unpack("!HH", head[:4])
        self.bytes_per_pixel = head[4] // 8
        (name_length,) = struct.unpack("!I", head[20:24])
        await self.reader.readexactly(name_length)
        self.writer.write(struct.pack("!BxHi", 2, 1, RAW))  # SetEncodings: Raw only
        self._request(incremental=False)
        await self.writer.drain()
        while (await self._next_update()).rects == 0:
            self._request(incremental=False)
        self._request()
        await self.writer.drain()

    def _request(self, incremental: bool = True) -> None:
        """FramebufferUpdateRequest for the whole screen."""
        self.writer.write(struct.pack("!BBHHHH", 3, incremental, 0, 0, self.width, self.height))

    async def _read_loop(self) -> None:
        try:
            while True:
                update = await self._next_update()
                self._request()
                await self.writer.drain()
                self.updates.put_nowait(update)
        except (asyncio.IncompleteReadError, ConnectionError, ProbeError) as exc:
            self.failure = exc

    async def _next_update(self) -> Update:
        """Read server messages until a whole FramebufferUpdate has been read."""
        read = self.reader.readexactly
        while True:
            (kind,) = await read(1)
            if kind == 0:
                _, rects = struct.unpack("!BH", await read(3))
                shown = 0
                for _ in range(rects):
                    _, _, w, h, encoding = struct.unpack("!HHHHi", await read(12))
                    if encoding != RAW:
                        raise ProbeError(f"encoding {encoding} sent although only Raw was asked")
                    await read(w * h * self.bytes_per_pixel)
                    shown += w * h > 0
                return Update(shown, time.perf_counter())
            if kind == 1:  # SetColourMapEntries
                _, _, n = struct.unpack("!BHH", await read(5))
                await read(6 * n)
            elif kind == 2:  # Bell
                continue
            elif kind == 3:  # ServerCutText
                (length,) = struct.unpack("!xxxI", await read(7))
                await read(length)
            else:
                raise ProbeError(f"server message type {kind} not handled")

    async def _get(self, timeout: float) -> Update:
        """The next update; TimeoutError after ``timeout``; ProbeError if the link broke."""
        if self.failure is not None:
            raise ProbeError(f"the VNC connection failed: {self.failure!r}")
        return await asyncio.wait_for(self.updates.get(), timeout)

    async def point(self, x: int, y: int) -> None:
        """PointerEvent, no button: the xterm under the pointer gets the keys (Xvfb runs
        no window manager; focus follows the pointer)."""
        self.writer.write(struct.pack("!BBHH", 5, 0, x, y))
        await self.writer.drain()

    async def quiet(self, seconds: float, limit: float = 60) -> None:
        """Wait until no update arrived for ``seconds``."""
        deadline = time.monotonic() + limit
        while True:
            try:
                await self._get(seconds)
            except TimeoutError:
                if self.failure is not None:
                    raise ProbeError(f"the VNC connection failed: {self.failure!r}") from None
                return
            if time.monotonic() > deadline:
                raise ProbeError(f"the screen did not stay still for {seconds} s within {limit} s")

    async def key_to_screen(self, keysym: int, timeout: float = 5) -> float | None:
        """Seconds from the KeyEvent written to the changed pixels read; None: no change
        within ``timeout`` (a miss)."""
        sent = time.perf_counter()
        self.writer.write(struct.pack("!BBxxI", 4, 1, keysym) + struct.pack("!BBxxI", 4, 0, keysym))
        await self.writer.drain()
        while True:
            try:
                update = await self._get(max(0.0, sent + timeout - time.perf_counter()))
            except TimeoutError:
                return None
            if update.rects:
                return update.at - sent

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@dataclass
class Sample:
    """One key: its latency (None: missed) and when it was sent (perf_counter)."""

    ms: float | None
    sent: float
    ended: float


async def measure(
    viewer: Viewer,
    keys: int,
    rng: random.Random,
    gap: tuple[float, float] = (0.15, 0.35),
    first: int = 0,
) -> list[Sample]:
    """``keys`` keys, alternately "x" and BackSpace (the xterm's line never grows), each
    after the screen was still for a random gap (the poll phase is not in step)."""
    samples = []
    for i in range(first, first + keys):
        await viewer.quiet(rng.uniform(*gap))
        sent = time.perf_counter()
        seconds = await viewer.key_to_screen(XK_X if i % 2 == 0 else XK_BACKSPACE)
        ms = None if seconds is None else seconds * 1000
        samples.append(Sample(ms, sent, time.perf_counter()))
    return samples


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
