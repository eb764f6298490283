"""Serves the remote screen on a local TCP port so any VNC viewer can use it.

Each viewer connection opens one ``rfb`` stream in the E2E channel; bytes are copied
both ways unchanged (the agent speaks RFB 3.8 with security type None: the channel is
the security). Listen on loopback unless you know who can reach the port. With ``monitor``, each
stream asks the agent for that monitor alone (the stream parameter ``monitor``); the
agent serves the whole desktop when it has no such monitor, so ``start`` first asks it
what a viewer will see (``monitors.probe_layout``) and tells the technician, on stderr,
which monitors there are when the number is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys

from enkaku.i18n import t
from enkaku.transport.channel import SecureChannel
from enkaku.transport.errors import SessionEnded

from .monitors import DesktopLayout, missing_monitor_message, probe_layout

log = logging.getLogger(__name__)

#: The agent's RESET reasons for a screen it cannot show, and what the technician reads.
_NO_SCREEN = {
    "no_display": "remote_no_screen",
    "screen_format": "remote_screen_format",
    "screen_failed": "remote_screen_failed",
}


class VNCBridge:
    """A local VNC port in two steps: ``bind()`` before the session is asked for (a busy
    port fails before the customer is involved), ``start(channel)`` after consent."""

    def __init__(self, host: str, port: int, *, monitor: int | None = None) -> None:
        self.host, self.port = host, port
        self.monitor = monitor
        self.channel: SecureChannel | None = None
        #: With ``monitor``: what the agent said a viewer sees, once ``start`` asked.
        self.layout: DesktopLayout | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def bind(self) -> tuple[str, int]:
        """Take the address (bound, not yet accepting); raises OSError if it is in use."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, start_serving=False
        )
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): port 0 resolved to the port the system chose."""
        if self._server is None:
            raise RuntimeError("bind() first")
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def start(self, channel: SecureChannel) -> None:
        """Accept viewers; each one gets its own ``rfb`` stream on ``channel``."""
        if self._server is None:
            raise RuntimeError("bind() first")
        self.channel = channel
        if self.monitor is not None:
            # Before accepting: the technician reads the answer before opening a viewer,
            # and no viewer's screen stream starts alongside the probe's.
            await self._check_monitor(channel, self.monitor)
        await self._server.start_serving()

    async def _check_monitor(self, channel: SecureChannel, number: int) -> None:
        """Tell the technician when the customer's desktop has no monitor ``number``."""
        self.layout = layout = await probe_layout(channel, {"monitor": number})
        if layout is None:
            return  # no screen, or no answer: the viewers will show what there is
        message = missing_monitor_message(number, layout)
        if message is None:
            return
        print(message, file=sys.stderr, flush=True)
        monitors = [
            {"number": s.id, "x": s.x, "y": s.y, "width": s.w, "height": s.h}
            for s in layout.monitors
        ]
        event = {
            "event": "monitor_missing",
            "monitor": number,
            "desktop": {"width": layout.width, "height": layout.height},
            "monitors": monitors,
        }
        print(json.dumps(event), flush=True)

    async def close(self) -> None:
        """Stop accepting, end every viewer connection, release the address (idempotent)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        stream = None
        channel = self.channel
        assert channel is not None  # start() set it before accepting
        try:
            params = {"monitor": self.monitor} if self.monitor is not None else None
            stream = await channel.open_stream("rfb", params)
            log.info("VNC viewer connected (stream %d)", stream.id)

            async def upstream() -> None:
                while data := await reader.read(64 * 1024):
                    await stream.write(data)
                await stream.write_eof()

            async def downstream() -> None:
                while data := await stream.read():
                    writer.write(data)
                    await writer.drain()

            up = asyncio.ensure_future(upstream())
            down = asyncio.ensure_future(downstream())
            try:
                done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
                if up in done and not up.cancelled() and up.exception() is None:
                    # The viewer closed its side; the agent ends the stream after EOF.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(down, 5)
            finally:
                # Also when this handler is cancelled (Ctrl-C, session end): no pump is
                # left running or with an unretrieved exception.
                for pump in (up, down):
                    pump.cancel()
                for pump in (up, down):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump
        except (SessionEnded, ConnectionError) as exc:
            log.info("VNC viewer connection ended: %s", exc)
        except asyncio.CancelledError:
            # close() ends viewer connections by cancelling their handlers. Python 3.11's
            # start_server callback calls task.exception() on a finished handler, which
            # raises (and logs a traceback) for a cancelled task: end normally instead.
            log.debug("VNC viewer connection closed by the bridge")
        finally:
            why = _NO_SCREEN.get(stream.reset_reason or "") if stream is not None else None
            if why is not None:
                # No screen to show, and why (agent/services/screen.py's RESET reasons).
                print(t(why), file=sys.stderr, flush=True)
            if stream is not None and channel.mux.is_open(stream.id):
                with contextlib.suppress(Exception):
                    await stream.reset("viewer_closed")
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)
