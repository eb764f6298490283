"""The customer's monitors as the technician's side learns them, and what `enkaku connect
--monitor N` tells the technician about them.

The agent lists the desktop's monitors in the RFB ExtendedDesktopSize screen list of an
``rfb`` stream (docs/performance.md, "Monitors"). A stream opened with ``monitor=N``
for a monitor that does not exist serves the whole desktop (and the agent only logs
it). So that the technician hears of it, ``probe_layout`` opens one short ``rfb``
stream of its own: the RFB 3.8 handshake (security None: the channel is the
security), ExtendedDesktopSize as the only encoding, one non-incremental request for a
single pixel, and the first size message's screen list; then the stream is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from dataclasses import dataclass
from typing import Any

from enkaku.i18n import register, t
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb import messages as m
from enkaku.transport.channel import SecureChannel, Stream
from enkaku.transport.errors import SessionEnded, TransportError

log = logging.getLogger(__name__)

#: How long the probe may take before the bridge goes on without it.
PROBE_TIMEOUT = 15.0

register(
    {
        "monitor_missing": (
            "The customer's desktop has no monitor {n}: VNC viewers see the whole desktop "
            "({w}×{h}) instead. Its monitors: {monitors}. To show one alone, end this "
            "session and connect again with --monitor and one of these numbers.",
            "お客様のデスクトップにモニター {n} はありません。VNC ビューアーにはデスクトップ全体 "
            "({w}×{h}) を表示します。モニター: {monitors}。1 台だけを表示するには、このセッション"
            "を終了し、--monitor にこれらの番号のいずれかを指定して接続し直してください。",
        ),
        "monitor_missing_single": (
            "The customer's desktop has no monitor {n}: it is a single screen ({w}×{h}), "
            "which VNC viewers see whole. --monitor is not needed for this computer.",
            "お客様のデスクトップにモニター {n} はありません。画面は 1 つ ({w}×{h}) だけで、"
            "VNC ビューアーにはその全体を表示します。このコンピューターには --monitor は不要です。",
        ),
        "monitor_entry": ("{n} ({w}×{h})", "{n} ({w}×{h})"),
    }
)


@dataclass(frozen=True)
class DesktopLayout:
    """The framebuffer's size and its ExtendedDesktopSize screens, as the agent sent them."""

    width: int
    height: int
    screens: tuple[m.Screen, ...]

    @property
    def monitors(self) -> tuple[m.Screen, ...]:
        """The desktop's monitors, numbered from 1 (a screen with id 0 is no monitor:
        the agent's list without RandR monitors)."""
        return tuple(s for s in self.screens if s.id >= 1)

    def shows(self, number: int) -> bool:
        """Whether this framebuffer is monitor ``number`` alone."""
        return len(self.screens) == 1 and (
            self.screens[0].id, self.screens[0].x, self.screens[0].y,
            self.screens[0].w, self.screens[0].h,
        ) == (number, 0, 0, self.width, self.height)  # fmt: skip


class _Reader:
    """Exact reads from a stream's chunks."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = await self.stream.read()
            if not chunk:
                raise EOFError(self.stream.reset_reason or "eof")
            self.buf += chunk
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


async def read_layout(stream: Stream) -> DesktopLayout:
    """Speak RFB 3.8 as a client on ``stream`` up to the first ExtendedDesktopSize."""
    r = _Reader(stream)
    version = await r.read(12)
    if not version.startswith(b"RFB 003.") or version[11:] != b"\n":
        raise ValueError(f"not an RFB server: {version!r}")
    await stream.write(b"RFB 003.008\n")
    (count,) = await r.read(1)
    if count == 0:
        raise ValueError("the server refused the connection")
    if 1 not in await r.read(count):
        raise ValueError("the server offers no security type None")
    await stream.write(bytes([1]))
    (result,) = struct.unpack("!I", await r.read(4))
    if result != 0:
        raise ValueError("the server refused the connection")
    await stream.write(b"\x01")  # ClientInit: shared
    await r.read(4)  # the framebuffer's size: the layout below has it too
    pixel_format = await r.read(16)
    bytes_per_pixel = max(1, pixel_format[0] // 8)
    (name_length,) = struct.unpack("!I", await r.read(4))
    await r.read(name_length)
    ext = Encoding.EXTENDED_DESKTOP_SIZE
    await stream.write(struct.pack("!BxHi", 2, 1, ext))  # SetEncodings: this one only
    await stream.write(struct.pack("!BBHHHH", 3, 0, 0, 0, 1, 1))  # one pixel, in full
    while True:
        (kind,) = await r.read(1)
        if kind == 0:  # FramebufferUpdate
            _, rects = struct.unpack("!BH", await r.read(3))
            for _ in range(rects):
                _, _, w, h, encoding = struct.unpack("!HHHHi", await r.read(12))
                if encoding == ext:
                    (screens,) = await r.read(1)
                    await r.read(3)
                    found = []
                    for _ in range(screens):
                        sid, sx, sy, sw, sh, flags = struct.unpack("!IHHHHI", await r.read(16))
                        found.append(m.Screen(sid, sx, sy, sw, sh, flags))
                    return DesktopLayout(w, h, tuple(found))
                if encoding != Encoding.RAW:
                    raise ValueError(f"unexpected encoding {encoding}")
                await r.read(w * h * bytes_per_pixel)
        elif kind == 1:  # SetColourMapEntries
            _, _, colours = struct.unpack("!BHH", await r.read(5))
            await r.read(6 * colours)
        elif kind == 2:  # Bell
            pass
        elif kind == 3:  # ServerCutText
            _, length = struct.unpack("!3sI", await r.read(7))
            await r.read(length)
        else:
            raise ValueError(f"unexpected server message {kind}")


async def probe_layout(
    channel: SecureChannel, params: dict[str, Any] | None = None, *, timeout: float = PROBE_TIMEOUT
) -> DesktopLayout | None:
    """The screen list an ``rfb`` stream opened with ``params`` starts with; None when the
    agent serves no screen or does not answer in ``timeout`` seconds."""
    stream = None
    try:
        stream = await channel.open_stream("rfb", params)
        return await asyncio.wait_for(read_layout(stream), timeout)
    except (EOFError, ValueError, TimeoutError, SessionEnded, TransportError, OSError) as exc:
        log.info("no screen layout from the agent: %s", str(exc) or type(exc).__name__)
        return None
    finally:
        if stream is not None and channel.mux.is_open(stream.id):
            with contextlib.suppress(Exception):
                await stream.reset("viewer_closed")


def missing_monitor_message(number: int, layout: DesktopLayout) -> str | None:
    """What to tell the technician whose viewers asked for monitor ``number`` and got
    ``layout``; None when they see that monitor."""
    if layout.shows(number):
        return None
    monitors = layout.monitors
    if len(monitors) <= 1 and layout.shows(monitors[0].id if monitors else 0):
        return t("monitor_missing_single", n=number, w=layout.width, h=layout.height)
    listed = ", ".join(t("monitor_entry", n=s.id, w=s.w, h=s.h) for s in monitors)
    return t("monitor_missing", n=number, w=layout.width, h=layout.height, monitors=listed)
