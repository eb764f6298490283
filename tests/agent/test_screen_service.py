"""The ``rfb`` stream's service: why a screen that cannot be shown is refused, in the
RESET reason the technician's console and ``enkaku connect`` put into words. The same
on a real X server that goes away is in tests/console/test_errors.py and
tests/e2e/test_screen.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import struct
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from enkaku.agent.capture.base import CaptureError, ScreenCapture, UnsupportedScreen
from enkaku.agent.input import settle
from enkaku.agent.input.base import InputError, InputInjector
from enkaku.agent.services.screen import serve
from enkaku.transport.errors import SessionEnded
from tests.agent.test_rfbservice import FakeCapture, RecordingInjector
from tests.agent.test_terminal import LIMIT, Audit, context
from tests.channelpair import channels
from tests.e2e.test_type_text import cat_into
from tests.protocol.rfb.decoders import update_request
from tests.xdisplay import keysym_bound, xvfb

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


def key_event(keysym: int, down: bool) -> bytes:
    return struct.pack(">BBxxI", 4, down, keysym)


@pytest.mark.x11
async def test_a_session_that_ends_after_a_key_leaves_it_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The technician types a character the keymap lacks (日, bound to a spare keycode)
    through the viewer and the session ends at once, while the customer's application
    has not read its keys yet (a busy machine: here the xterm is stopped): the keycode
    stays bound for the settle after the last key, so the application still reads the
    character; then the keymap is restored. (Before, the screen's end closed the
    injector at once, which unbinds it: the character was lost.)"""
    from enkaku.agent.input.x11 import X11Input

    class Keys(X11Input):
        """X11Input that records the keys it injected."""

        injected: ClassVar[list[tuple[int, bool]]] = []  # one injector in this test

        def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
            super().key(keysym, down, scancode)
            self.injected.append((keysym, down))

    # Longer than the agent's own second: the xterm, resumed 0.3 s after the session
    # ended, must have read its keys before the unbinding even on a loaded machine.
    monkeypatch.setattr(settle, "SETTLE", 3.0)
    target = tmp_path / "typed.txt"
    with xvfb(640, 480) as display, cat_into(display, target) as xterm:
        agent, tech = await channels()
        ctx = dataclasses.replace(
            context(Audit(), "screen"),
            capture_factory=Closing,
            input_factory=lambda: Keys(display),
            allowed=lambda action: True,
        )
        os.kill(xterm.pid, signal.SIGSTOP)
        try:
            stream = await tech.open_stream("rfb", {})
            serving = asyncio.ensure_future(serve(await agent.incoming.get(), ctx))
            await stream.write(
                VIEWER
                + key_event(0x10065E5, True)  # 日
                + key_event(0x10065E5, False)
                + key_event(0xFF0D, True)  # Return
                + key_event(0xFF0D, False)
            )
            for _ in range(500):  # the agent injected them all, Return last
                if (0xFF0D, False) in Keys.injected:
                    break
                await asyncio.sleep(0.02)
            assert Keys.injected == [
                (0x10065E5, True), (0x10065E5, False), (0xFF0D, True), (0xFF0D, False)
            ]  # fmt: skip
            serving.cancel()  # the session ends
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            await tech.close("technician_ended")
            assert keysym_bound(display, "U65E5")  # still bound for the application
            await asyncio.sleep(0.3)
        finally:
            os.kill(xterm.pid, signal.SIGCONT)
        for _ in range(200):
            if target.read_text(encoding="utf-8") == "日\n":
                break
            await asyncio.sleep(0.05)
        assert target.read_text(encoding="utf-8") == "日\n"
        for _ in range(200):  # then the keymap is the customer's again
            if not keysym_bound(display, "U65E5"):
                break
            await asyncio.sleep(0.05)
        assert not keysym_bound(display, "U65E5")
