"""The ``rfb`` stream: the live screen (action ``screen``), with input while ``control``
is in force and clipboard text while ``clipboard`` is."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from enkaku.transport.channel import Stream
from enkaku.transport.errors import SessionEnded

from . import ServiceContext, ServiceSpec

log = logging.getLogger(__name__)

#: RESET reason when the agent has no screen to serve (started with --display none, or
#: the display went away).
RESET_NO_DISPLAY = "no_display"


async def serve(stream: Stream, ctx: ServiceContext) -> None:
    from enkaku.agent.rfbservice import RFBService

    if ctx.capture_factory is None or ctx.input_factory is None:
        await stream.reset(RESET_NO_DISPLAY)
        return
    try:
        capture = await asyncio.to_thread(ctx.capture_factory)
        injector = await asyncio.to_thread(ctx.input_factory)
    except Exception as exc:  # the display went away or an extension is missing
        log.warning("cannot serve the screen: %s", exc)
        await stream.reset(RESET_NO_DISPLAY)
        return
    try:
        service = RFBService(
            capture,
            injector,
            stream.read,
            stream.write,
            name=f"enkaku {ctx.agent_id}",
            control_allowed=lambda: ctx.allowed("control"),
        )
        await service.run()
    except (SessionEnded, ConnectionError):
        pass
    finally:
        await asyncio.to_thread(injector.close)
        await asyncio.to_thread(capture.close)
        with contextlib.suppress(Exception):
            await stream.write_eof()


SPEC = ServiceSpec(kind="rfb", action="screen", serve=serve)
