"""The ``rfb`` stream's service: why a screen that cannot be shown is refused, in the
RESET reason the technician's console and ``enkaku connect`` put into words. The same
on a real X server that goes away is in tests/console/test_errors.py and
tests/e2e/test_screen.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from enkaku.agent.capture.base import CaptureError, ScreenCapture, UnsupportedScreen
from enkaku.agent.input.base import InputError, InputInjector
from enkaku.agent.services.screen import serve
from enkaku.transport.errors import SessionEnded
from tests.agent.test_rfbservice import FakeCapture, RecordingInjector
from tests.agent.test_terminal import LIMIT, Audit, context
from tests.channelpair import channels
from tests.protocol.rfb.decoders import update_request

#: What a viewer sends up to its first update request: the version, security type None,
#: a shared ClientInit, then a full update request.
VIEWER = b"RFB 003.008\n" + b"\x01" + b"\x01" + update_request(False, 0, 0, 32, 24)


class Closing(FakeCapture):
    """A capture that says when it is closed, and whose grabs fail once ``broken``."""

    def __init__(self) -> None:
        super().__init__(np.zeros((24, 32, 4), np.uint8))
        self.closed = False
        self.broken = False

    def grab(self) -> np.ndarray:
        if self.broken:
            raise CaptureError("the X server went away")
        return super().grab()

    def close(self) -> None:
        self.closed = True


async def refused(
    capture_factory: Callable[[], ScreenCapture] | None,
    input_factory: Callable[[], InputInjector] | None = RecordingInjector,
) -> tuple[bytes, str | None]:
    """Open an ``rfb`` stream as a viewer would; what the agent sent, and its reset reason."""
    agent, tech = await channels()
    ctx = dataclasses.replace(
        context(Audit(), "screen"), capture_factory=capture_factory, input_factory=input_factory
    )
    stream = await tech.open_stream("rfb", {})
    serving = asyncio.ensure_future(serve(await agent.incoming.get(), ctx))
    try:
        with contextlib.suppress(SessionEnded):  # an early reset stops the writes
            await stream.write(VIEWER)
        received = bytearray()
        while chunk := await asyncio.wait_for(stream.read(), LIMIT):
            received += chunk
        await asyncio.wait_for(serving, LIMIT)
        return bytes(received), stream.reset_reason
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await serving


async def test_an_agent_without_a_screen_says_no_display() -> None:
    assert await refused(None) == (b"", "no_display")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UnsupportedScreen("the X screen uses colour-mapped 4-bit colour"), "screen_format"),
        (CaptureError("cannot open display :9"), "screen_failed"),
        (RuntimeError("a bug in a backend"), "screen_failed"),
    ],
)
async def test_a_screen_that_cannot_be_opened_says_why(error: Exception, reason: str) -> None:
    def factory() -> ScreenCapture:
        raise error

    assert await refused(factory) == (b"", reason)


async def test_no_input_closes_the_screen_it_opened() -> None:
    capture = Closing()

    def no_input() -> InputInjector:
        raise InputError("XTEST is missing")

    assert await refused(lambda: capture, no_input) == (b"", "screen_failed")
    assert capture.closed


async def test_a_screen_that_fails_while_shown_says_screen_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture = Closing()
    capture.broken = True  # the first grab, for the viewer's first update, fails
    received, reason = await refused(lambda: capture)
    assert received.startswith(b"RFB 003.008\n")  # the viewer was served until then
    assert reason == "screen_failed"
    assert capture.closed
    assert "the screen stopped: the X server went away" in caplog.text
