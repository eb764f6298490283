"""The ``screenshot`` service: one PNG of the whole screen, the consented way to keep a
copy of what the technician saw.

The stream carries the PNG file's bytes, then EOF; nothing is read from the technician.
Capture and encoding run on worker threads (the capture backends block, and a 1080p
PNG takes tens of milliseconds). Only the size is audited, never pixels.

RESET reasons: ``no_display`` (no screen to capture, or capture failed).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from enkaku.transport.errors import SessionEnded

from . import ServiceContext, ServiceSpec

if TYPE_CHECKING:
    from enkaku.agent.capture.base import ScreenCapture
    from enkaku.transport.channel import Stream

log = logging.getLogger(__name__)

RESET_NO_DISPLAY = "no_display"


def encode_png(frame: npt.NDArray[np.uint8]) -> bytes:
    """A B, G, R, X frame (the capture interface's layout) as an RGB PNG."""
    rgb = np.ascontiguousarray(frame[:, :, 2::-1])
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, "PNG")
    return out.getvalue()


def _shoot(factory: Callable[[], ScreenCapture]) -> npt.NDArray[np.uint8]:
    """Open the display, grab the whole screen once, close it (on a worker thread)."""
    capture = factory()
    try:
        return capture.grab()
    finally:
        capture.close()


async def serve(stream: Stream, ctx: ServiceContext) -> None:
    """Serve one ``screenshot`` stream: capture, encode, send, EOF."""
    if ctx.capture_factory is None:
        await stream.reset(RESET_NO_DISPLAY)
        return
    try:
        frame = await asyncio.to_thread(_shoot, ctx.capture_factory)
    except Exception as exc:  # the display went away or an extension is missing
        log.warning("cannot take a screenshot: %s", exc)
        await stream.reset(RESET_NO_DISPLAY)
        return
    height, width = frame.shape[:2]
    png = await asyncio.to_thread(encode_png, frame)
    del frame
    try:
        await stream.write(png)
        await stream.write_eof()
    except SessionEnded:
        log.info("screenshot not delivered: the stream ended")
        return
    log.info("screenshot sent: %dx%d, %d bytes", width, height, len(png))
    ctx.activity("screenshot", {"width": width, "height": height})
    await ctx.report("screenshot_sent", f"{width}x{height}")


SPEC = ServiceSpec(kind="screenshot", action="screenshot", serve=serve)
