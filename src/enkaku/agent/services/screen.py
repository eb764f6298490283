"""The ``rfb`` stream: the live screen (action ``screen``), with input while ``control``
is in force and clipboard text while ``clipboard`` is (the length of each text crossing
is reported, never the text). Parameter ``monitor``: serve only that monitor (its
number, from 1 left to right), else the whole desktop.

RESET reasons, each told to the technician in words of its own (the console's screen
area, ``enkaku connect``): ``no_display`` (the agent runs without a screen: a server,
``--display none``), ``screen_format`` (the screen is there but in a form the agent
cannot show, see ``capture.xformat``; the agent's log says how to change it),
``screen_failed`` (the screen could not be opened, or stopped while shown: the X server
or the Wayland compositor went away, the desktop refused; the agent's log says what
failed). Nothing of the screen's content is in a reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from enkaku.agent.capture.base import CaptureError, UnsupportedScreen
from enkaku.agent.clipboard import Clipboard, ClipboardError
from enkaku.agent.input.base import InputError
from enkaku.agent.input.settle import close_after_settle
from enkaku.transport.channel import Stream
from enkaku.transport.errors import SessionEnded

from . import ServiceContext, ServiceSpec

log = logging.getLogger(__name__)

#: RESET reason when the agent has no screen to serve (started with --display none).
RESET_NO_DISPLAY = "no_display"
#: The screen's pixels come in a form the agent cannot show (capture.base.UnsupportedScreen).
RESET_SCREEN_FORMAT = "screen_format"
#: The screen could not be opened, or its capture or input failed while it was shown.
RESET_SCREEN_FAILED = "screen_failed"


async def serve(stream: Stream, ctx: ServiceContext) -> None:
    from enkaku.agent.rfbservice import RFBService

    if ctx.capture_factory is None or ctx.input_factory is None:
        await stream.reset(RESET_NO_DISPLAY)
        return
    try:
        capture = await asyncio.to_thread(ctx.capture_factory)
    except Exception as exc:  # the display went away or an extension is missing
        log.warning("cannot serve the screen: %s", exc)
        await stream.reset(_reason(exc))
        return
    try:
        injector = await asyncio.to_thread(ctx.input_factory)
    except Exception as exc:
        log.warning("cannot serve the screen: no input: %s", exc)
        await asyncio.to_thread(capture.close)
        await stream.reset(_reason(exc))
        return
    board = await _open_clipboard(ctx)

    async def on_clipboard(direction: str, n_chars: int) -> None:
        await ctx.report(direction, str(n_chars))  # the length only, never the text

    service: RFBService | None = None
    try:
        service = RFBService(
            capture,
            injector,
            stream.read,
            stream.write,
            name=f"enkaku {ctx.agent_id}",
            control_allowed=lambda: ctx.allowed("control"),
            clipboard=board,
            clipboard_allowed=lambda: ctx.allowed("clipboard"),
            on_clipboard=on_clipboard,
            monitor=_monitor(stream.params.get("monitor")),
        )
        await service.run()
    except (SessionEnded, ConnectionError):
        pass
    except (CaptureError, InputError) as exc:
        log.warning("the screen stopped: %s", exc)
        with contextlib.suppress(Exception):
            await stream.reset(_reason(exc))
    finally:
        await asyncio.to_thread(capture.close)
        if board is not None:
            await asyncio.to_thread(board.close)
        with contextlib.suppress(Exception):
            await stream.write_eof()
        # Keys held are released at once; the injector (X11: the spare keycodes bound
        # for characters the keymap lacks) stays until the customer's applications have
        # read the last keys typed, also when the session ends right after them.
        await close_after_settle(injector, service.last_input if service else None)


def _reason(exc: BaseException) -> str:
    """The RESET reason for a screen that cannot be served because of ``exc``."""
    return RESET_SCREEN_FORMAT if isinstance(exc, UnsupportedScreen) else RESET_SCREEN_FAILED


def _monitor(value: object) -> int | None:
    """The stream's ``monitor`` parameter: a monitor's number (from 1), else None (the
    whole desktop; docs/performance.md, "Monitors")."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


async def _open_clipboard(ctx: ServiceContext) -> Clipboard | None:
    """The customer's clipboard, or None: the screen is served without one (and says so
    in the log) rather than not at all."""
    if ctx.clipboard_factory is None:
        return None
    try:
        return await asyncio.to_thread(ctx.clipboard_factory)
    except ClipboardError as exc:
        log.warning("no clipboard for this screen: %s", exc)
        return None


SPEC = ServiceSpec(kind="rfb", action="screen", serve=serve)
